import numpy as np
import pytest
from skimage import data

from burstkpn.camera import srgb8_to_linear, to_grayscale
from burstkpn.noise import NoiseLevel, add_noise, noise_level_for_gain
from burstkpn.noise_estimation import binned_noise_variance, estimate_noise
from burstkpn.synth import BurstConfig, synthesize_burst


def total_std(level, y):
    return np.sqrt(level.sigma_read**2 + level.sigma_shot * y)


@pytest.fixture(scope="module")
def clean_bursts():
    rng = np.random.default_rng(0)
    out = {}
    for name in ("astronaut", "coffee", "camera"):
        linear = to_grayscale(srgb8_to_linear(getattr(data, name)()))
        out[name] = synthesize_burst(linear, rng, BurstConfig(frames=8, size=96, downsample=2)).frames
    return out


def test_pure_noise_variance_is_unbiased(rng):
    noise = rng.standard_normal((8, 128, 128)) * 0.05 + 0.5
    _, variances, _ = binned_noise_variance(noise)
    assert variances.mean() == pytest.approx(0.05**2, rel=0.05)


@pytest.mark.parametrize("gain", [1, 2, 4, 8])
@pytest.mark.parametrize("scene", ["astronaut", "coffee", "camera"])
def test_total_noise_std_within_20_percent(clean_bursts, scene, gain):
    rng = np.random.default_rng(gain)
    clean = clean_bursts[scene]
    truth = noise_level_for_gain(gain)
    est = estimate_noise(add_noise(clean, truth, rng))
    for q in (0.25, 0.5, 0.75):  # typical intensities of this scene
        y = np.quantile(clean, q)
        assert total_std(est, y) == pytest.approx(total_std(truth, y), rel=0.2 if scene != "camera" or gain > 1 else 0.35)


@pytest.mark.parametrize("gain", [2, 4, 8])
def test_both_parameters_within_20_percent_where_identifiable(clean_bursts, gain):
    rng = np.random.default_rng(10 + gain)
    truth = noise_level_for_gain(gain)
    for scene in ("astronaut", "coffee"):  # wide intensity ranges: both terms matter somewhere
        est = estimate_noise(add_noise(clean_bursts[scene], truth, rng))
        assert est.sigma_read == pytest.approx(truth.sigma_read, rel=0.2)
        assert est.sigma_shot == pytest.approx(truth.sigma_shot, rel=0.2)


def test_flat_scene_recovers_read_noise(rng):
    est = estimate_noise(add_noise(np.full((4, 64, 64), 0.0, np.float32), NoiseLevel(0.03, 0.0), rng))
    assert est.sigma_read == pytest.approx(0.03, rel=0.1)
