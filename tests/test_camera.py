import numpy as np
import pytest
import torch

from burstkpn import camera


def test_srgb8_round_trip_is_exact_for_every_code():
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(camera.linear_to_srgb8(camera.srgb8_to_linear(codes)), codes)


def test_srgb8_to_linear_is_the_authors_power_law():
    assert camera.srgb8_to_linear(np.array([128], np.uint8))[0] == pytest.approx((128 / 255) ** 2.2, rel=1e-6)


@pytest.mark.parametrize("forward,inverse", [
    (camera.gamma_compress, camera.gamma_expand),
    (camera.srgb_curve, camera.srgb_curve_inverse),
])
def test_curves_are_inverse_pairs(forward, inverse):
    x = np.linspace(0, 1, 1001)
    assert np.allclose(inverse(forward(x)), x, atol=1e-9)
    assert np.allclose(forward(inverse(x)), x, atol=1e-9)


def test_srgb_curve_matches_standard_values_and_torch():
    x = np.array([0.0, 0.002, 0.0031308, 0.18, 1.0])
    expected = np.array([0.0, 0.02584, 0.04045, 0.46135, 1.0])
    assert np.allclose(camera.srgb_curve(x), expected, atol=1e-4)
    assert np.allclose(camera.srgb_curve(torch.from_numpy(x)).numpy(), camera.srgb_curve(x))


def test_white_level_is_log_uniform_in_range(rng):
    levels = np.array([camera.sample_white_level(rng) for _ in range(4000)])
    assert levels.min() >= 0.1 and levels.max() <= 1.0
    logs = np.log10(levels)
    assert logs.mean() == pytest.approx(-0.5, abs=0.02)  # uniform on [-1, 0]
    assert np.histogram(logs, bins=4, range=(-1, 0))[0].min() > 850


def test_white_level_pair_and_grayscale():
    x = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    assert np.allclose(camera.remove_white_level(camera.apply_white_level(x, 0.3), 0.3), x)
    assert np.allclose(camera.to_grayscale(x), x.mean(-1))
    with pytest.raises(ValueError):
        camera.to_grayscale(np.zeros((2, 2, 4)))
