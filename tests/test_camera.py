import json

import numpy as np
import pytest
import torch

from burstkpn import camera, raw_synth
from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import bayer_planes, mosaic_from_planes


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


# --- full unprocessing / processing (Brooks et al. 2019) ---

def moderate_colours(rng, shape, dtype=np.float64):
    """Display images that survive unprocessing unclipped: greys in [0.2, 0.7] with +-0.08 of colour."""
    grey = rng.uniform(0.2, 0.7, (*shape, 1))
    return (grey + rng.uniform(-0.08, 0.08, (*shape, 3))).astype(dtype)


def smooth_image(side=64):
    yy, xx = np.mgrid[0:side, 0:side] / side
    return np.stack([0.3 + 0.2 * np.sin(2 * yy + xx), 0.4 + 0.2 * np.cos(3 * xx), 0.5 + 0.1 * yy], axis=-1)


def test_tone_curve_pair_is_the_smoothstep_and_its_inverse():
    x = np.random.default_rng(0).random(10_000)
    assert np.allclose(camera.tone_curve(x), 3 * x**2 - 2 * x**3, atol=0)
    assert np.allclose(camera.inverse_tone_curve(camera.tone_curve(x)), x, atol=1e-9)
    assert np.allclose(camera.tone_curve(camera.inverse_tone_curve(x)), x, atol=1e-12)
    assert np.allclose(camera.tone_curve(np.array([0.0, 0.5, 1.0])), [0.0, 0.5, 1.0])


def test_safe_gamma_pair_is_brooks_clamped_power_law():
    x = np.random.default_rng(1).uniform(1e-3, 1.0, 10_000)
    assert np.array_equal(camera.safe_gamma_expand(x), np.maximum(x, 1e-8) ** 2.2)
    assert np.allclose(camera.safe_gamma_compress(camera.safe_gamma_expand(x)), x, atol=1e-12)
    assert np.allclose(camera.safe_gamma_expand(camera.safe_gamma_compress(x)), x, atol=1e-12)
    assert camera.safe_gamma_expand(np.array([-1.0, 0.0]))[0] == 1e-8**2.2  # clamped, never NaN
    assert camera.safe_gamma_expand(np.float32(0.5)).dtype == np.float32


def test_sampled_colour_matrices_are_normalised_convex_mixtures_and_invert():
    rng = np.random.default_rng(2)
    singles = [camera.rgb_to_camera_matrix(m) for m in camera.XYZ_TO_CAMS.values()]
    for _ in range(20):
        rgb2cam = camera.sample_rgb2cam(rng)
        assert rgb2cam.shape == (3, 3) and np.allclose(rgb2cam.sum(axis=1), 1.0)  # white stays white
        lo, hi = np.min(singles, axis=0), np.max(singles, axis=0)
        assert np.all(rgb2cam >= lo - 0.1) and np.all(rgb2cam <= hi + 0.1)  # near the four cameras' range
        image = rng.random((5, 7, 3))
        cam = camera.inverse_colour_correction(image, rgb2cam)
        assert np.allclose(cam, np.einsum("ij,hwj->hwi", rgb2cam, image))
        assert np.allclose(camera.colour_correction(cam, rgb2cam), image, atol=1e-12)
    assert np.array_equal(camera.sample_rgb2cam(np.random.default_rng(5)), camera.sample_rgb2cam(np.random.default_rng(5)))


def test_white_balance_pair_is_exact_below_the_inflection_and_spares_highlights():
    rng = np.random.default_rng(3)
    gains = camera.sample_gains(rng)
    cam = rng.uniform(0.0, 0.9, (32, 32, 3))
    assert np.allclose(camera.white_balance(camera.inverse_white_balance(cam, *gains), *gains), cam, atol=1e-12)
    assert np.allclose(camera.inverse_white_balance(camera.white_balance(cam, *gains), *gains, inflection=1.0), cam, atol=1e-12)
    # saturated white stays white (not dimmed into a grey that would never clip); near white, gains fade to 1
    assert np.allclose(camera.inverse_white_balance(np.ones(3), 1.25, 2.0, 1.7), 1.0)
    plain = camera.inverse_white_balance(np.full(3, 0.95), 1.25, 2.0, 1.7, inflection=1.0)
    safe = camera.inverse_white_balance(np.full(3, 0.95), 1.25, 2.0, 1.7)
    assert np.all(plain < safe) and np.all(safe < 0.95)
    # on a mosaic, each pixel gets its colour's gain: the same as balancing the image, then mosaicking
    for pattern in camera.BAYER_PATTERNS:
        balanced = camera.white_balance(camera.mosaic(cam, pattern), *gains, pattern=pattern)
        assert np.allclose(balanced, camera.mosaic(camera.white_balance(cam, *gains), pattern))


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_mosaic_planes_round_trip_for_every_pattern(pattern):
    rgb = np.random.default_rng(4).random((2, 6, 8, 3)).astype(np.float32)
    m = camera.mosaic(rgb, pattern)
    assert m.shape == (2, 6, 8) and m.dtype == np.float32
    assert np.array_equal(mosaic_from_planes(bayer_planes(m)), m)
    planes = bayer_planes(m)  # position order TL, TR, BL, BR: pattern[k] names plane k's colour
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        assert np.array_equal(planes[:, k], rgb[:, i::2, j::2, "RGB".index(pattern[k])])
    assert np.array_equal(m[0], raw_synth.mosaic(rgb[0], pattern))  # the raw writer's direct sampling agrees
    with pytest.raises(ValueError):
        camera.mosaic(rgb[:, :5], pattern)


def test_unprocess_then_process_is_the_identity_without_mosaic():
    rng = np.random.default_rng(6)
    for dtype, atol in ((np.float64, 1e-9), (np.float32, 2e-5)):
        for _ in range(5):
            image = moderate_colours(rng, (24, 24), dtype)
            raw, params = camera.unprocess(image, rng, mosaicked=False)
            assert raw.dtype == dtype and raw.shape == image.shape
            assert 0 < raw.min() and raw.mean(axis=-1).max() < camera.WB_INFLECTION  # nothing clipped or masked
            back = camera.process(raw, params, mosaicked=False)
            assert back.dtype == dtype and np.abs(back - image).max() < atol
    # the same generator state gives the same camera and the same raw image
    image = moderate_colours(np.random.default_rng(0), (8, 8))
    a, pa = camera.unprocess(image, np.random.default_rng(7))
    b, pb = camera.unprocess(image, np.random.default_rng(7))
    assert pa == pb and np.array_equal(a, b) and a.shape == (8, 8)
    with pytest.raises(ValueError):
        camera.unprocess(image)  # no rng, no params: no hidden global randomness


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_unprocess_then_process_with_mosaic_on_a_smooth_image(pattern):
    pytest.importorskip("colour_demosaicing")
    image = smooth_image()
    raw, params = camera.unprocess(image, np.random.default_rng(8), pattern=pattern)
    assert raw.shape == (64, 64) and params.pattern == pattern
    error = np.abs(camera.process(raw, params) - image)
    # measured: interior 4.5e-4, border 1.1e-2 (Malvar-He-Cutler on a mosaic reflected by 2 px)
    assert error[4:-4, 4:-4].max() < 2e-3 and error.max() < 0.03
    demosaiced = camera.demosaic(camera.mosaic(image.astype(np.float32), pattern), pattern)
    assert demosaiced.dtype == np.float32 and np.abs(demosaiced - image).max() < 0.03


def test_demosaic_without_the_extra_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "colour_demosaicing", None)
    with pytest.raises(BurstKPNError, match=r"burstkpn\[colour\]"):
        camera.demosaic(np.zeros((4, 4)))


def test_camera_params_serialise_to_plain_lists_and_validate():
    params = camera.sample_camera_params(np.random.default_rng(9), "GBRG")
    d = json.loads(json.dumps(params.to_dict()))
    assert camera.CameraParams.from_dict(d) == params and hash(camera.CameraParams.from_dict(d)) == hash(params)
    assert np.allclose(params.cam2rgb @ params.matrix, np.eye(3))
    assert 1.9 <= params.red_gain <= 2.4 and 1.5 <= params.blue_gain <= 1.9 and params.pattern == "GBRG"
    with pytest.raises(ValueError):
        camera.CameraParams(((1, 0, 0), (0, 1, 0), (0, 0, 0)), 1.0, 2.0, 1.5)  # singular
    with pytest.raises(ValueError):
        camera.CameraParams(params.rgb2cam, 1.0, -2.0, 1.5)
    with pytest.raises(ValueError):
        camera.CameraParams(params.rgb2cam, 1.0, 2.0, 1.5, "RGBG")
