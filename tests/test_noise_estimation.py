import warnings
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from burstkpn.camera import srgb8_to_linear, to_grayscale
from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import bayer_planes
from burstkpn.noise import NoiseLevel, add_noise, noise_level_for_gain
from burstkpn.noise_estimation import (
    BurstNoiseEstimate,
    NoiseEstimateWarning,
    binned_noise_variance,
    clip_points,
    estimate_burst_noise,
    estimate_noise,
    estimate_noise_temporal,
    integer_aligned,
)
from burstkpn.synth import BurstConfig, synthesize_burst

REAL_CROP = Path(__file__).parent / "data" / "hdrplus_window_crop.npz"


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


# --- clipping, hot pixels, temporal estimate (issue 27) -------------------------------------------------------------

RAMP_TRUTH = NoiseLevel(0.01, 0.005)


def ramp(low, high, frames=8, size=256):
    """A horizontal ramp burst (frames, size, size), static."""
    return np.broadcast_to(np.linspace(low, high, size, dtype=np.float32), (frames, size, size))


def clipped_ramp(low, high, seed, level=RAMP_TRUTH):
    clean = ramp(low, high)
    noisy = np.clip(add_noise(clean, level, np.random.default_rng(seed)), 0.0, 1.0)
    return clean, noisy


def median_unclipped(clean):
    return float(np.median(clean[(clean > 0) & (clean < 1)]))


def test_issue_example_no_longer_collapses_to_zero():
    # 0.02 -> 1.3 clipped at 1 (23 % saturated) gave (2e-10, 0) before: MAD-0 bins weighted 1e12
    clean, noisy = clipped_ramp(0.02, 1.3, seed=27)
    assert (noisy >= 1).mean() == pytest.approx(0.23, abs=0.02)
    for est in (estimate_noise(noisy), estimate_noise_temporal(noisy)):
        assert est.sigma_read == pytest.approx(0.01, rel=0.25)
        assert est.sigma_shot == pytest.approx(0.005, rel=0.1)


def test_clipped_bins_are_degenerate_and_masked():
    _, noisy = clipped_ramp(0.02, 1.3, seed=27)
    _, variances, _ = binned_noise_variance(noisy, mask_clipped=False)
    assert variances.min() < 1e-9  # what used to pin the fit: bins inside the clipped region
    _, variances, _ = binned_noise_variance(noisy)
    assert variances.min() > 0.5 * 0.01**2


@pytest.mark.parametrize("saturated", [0.0, 0.05, 0.25, 0.6])
@pytest.mark.parametrize("low", [0.02, -0.25])  # -0.25: the shadows are black-clipped too (~19 % at 0 at most)
def test_clipped_ramp_within_15_percent(saturated, low):
    high = (1 - saturated * low) / (1 - saturated)  # the clean ramp is above 1 over `saturated` of its width
    clean, noisy = clipped_ramp(low, high, seed=int(100 * saturated) + (low < 0))
    assert (noisy >= 1).mean() == pytest.approx(saturated, abs=0.03 if saturated else 0.04)
    if low < 0:
        assert (noisy <= 0).mean() > 0.07
    y = median_unclipped(clean)
    for est in (estimate_noise(noisy), estimate_noise_temporal(noisy)):
        assert total_std(est, y) == pytest.approx(total_std(RAMP_TRUTH, y), rel=0.15)
        for q in (0.25, 0.75):  # across the unclipped range too
            yq = float(np.quantile(clean[(clean > 0) & (clean < 1)], q))
            assert total_std(est, yq) == pytest.approx(total_std(RAMP_TRUTH, yq), rel=0.15)


def test_white_level_below_one_and_saturation_pileup():
    clean = ramp(0.02, 1.0)
    noisy = np.clip(add_noise(clean, RAMP_TRUTH, np.random.default_rng(5)), 0.0, 0.8)  # sensor saturates at 0.8
    assert clip_points(noisy) == (0.0, pytest.approx(0.8))  # found from the pile-up at the maximum
    y = median_unclipped(clean / 0.8)
    for est in (estimate_noise(noisy), estimate_noise(noisy, white=0.8), estimate_noise_temporal(noisy)):
        assert total_std(est, 0.8 * y) == pytest.approx(total_std(RAMP_TRUTH, 0.8 * y), rel=0.15)


def test_unclipped_data_is_not_masked(rng):
    # Values around 0 and 1 that were never clipped (negative / above 1) are not clip points.
    noise = rng.standard_normal((4, 64, 64)) * 0.03
    assert clip_points(noise) == (None, None)
    assert clip_points(noise + 1.0) == (None, None)


def test_hot_pixels_do_not_inflate(rng):
    clean = ramp(0.02, 1.0)
    noisy = np.clip(add_noise(clean, RAMP_TRUTH, np.random.default_rng(11)), 0.0, 1.0)
    hot = np.random.default_rng(12).random(noisy.shape[1:]) < 0.001  # 0.1 %, stuck in every frame
    noisy[:, hot] = np.random.default_rng(13).uniform(0.3, 1.0, hot.sum())
    y = median_unclipped(clean)
    truth = total_std(RAMP_TRUTH, y)
    for est in (estimate_noise(noisy), estimate_noise_temporal(noisy)):
        assert total_std(est, y) == pytest.approx(truth, rel=0.15)
        assert total_std(est, y) < 1.15 * truth


@pytest.fixture(scope="module")
def camera_clean():
    linear = to_grayscale(srgb8_to_linear(data.camera()))
    return synthesize_burst(linear, np.random.default_rng(0), BurstConfig(frames=8, size=128, downsample=2)).frames


@pytest.mark.parametrize("gain", [1, 4])
def test_temporal_on_static_burst_within_15_percent_and_not_fooled_by_texture(camera_clean, gain):
    static = np.repeat(camera_clean[:1], 8, axis=0)
    truth = noise_level_for_gain(gain)
    noisy = add_noise(static, truth, np.random.default_rng(gain))
    y = float(np.median(static))
    est = estimate_noise_temporal(noisy)
    assert total_std(est, y) == pytest.approx(total_std(truth, y), rel=0.05 if gain == 1 else 0.15)
    both = estimate_burst_noise(noisy)
    assert isinstance(both, BurstNoiseEstimate)
    if gain == 1:  # fine texture: the spatial estimate is ~+30 % here, the temporal one wins
        assert total_std(both.spatial, y) > 1.15 * total_std(truth, y)
        assert both.chosen == "temporal" and both.noise == both.temporal
    assert total_std(both.noise, y) == pytest.approx(total_std(truth, y), rel=0.15)
    assert both.reliable and not both.disagree


def moving_block_burst(seed):
    """A static ramp with a striped 100x100 block moving 10 px per frame (about 20 % of the area)."""
    clean = np.array(ramp(0.02, 0.9))
    stripes = 0.8 - 0.5 * (np.arange(100) % 7 < 3)
    for i in range(clean.shape[0]):
        clean[i, 60:160, 40 + 10 * i : 140 + 10 * i] = stripes
    return clean, np.clip(add_noise(clean, RAMP_TRUTH, np.random.default_rng(seed)), 0.0, 1.0)


def test_temporal_ignores_moving_region():
    clean, noisy = moving_block_burst(seed=3)
    y = median_unclipped(ramp(0.02, 0.9))
    truth = total_std(RAMP_TRUTH, y)
    naive = np.sqrt(np.mean(noisy.var(axis=0, ddof=1)))  # every pixel's temporal variance, motion included
    assert naive > 1.5 * truth  # so the moving region matters
    est = estimate_noise_temporal(noisy)
    assert total_std(est, y) == pytest.approx(truth, rel=0.15)
    both = estimate_burst_noise(noisy)  # aligns by itself: the frames as given compete with the global shift
    assert total_std(both.temporal, y) == pytest.approx(truth, rel=0.15)
    assert total_std(both.noise, y) == pytest.approx(truth, rel=0.15)


def test_integer_aligned_moves_whole_pixels():
    base = np.random.default_rng(0).random((140, 140)).astype(np.float32)
    shifts = [(0, 0), (3, -2), (-4, 1), (2, 5)]  # frame i at p shows the reference at p + shift
    frames = np.stack([base[10 + dy : 110 + dy, 10 + dx : 110 + dx] for dy, dx in shifts])
    aligned = integer_aligned(frames)
    assert aligned.shape == (4, 93, 93)
    assert all(np.array_equal(aligned[i], aligned[0]) for i in range(4))  # exact copies, nothing interpolated
    assert integer_aligned(np.stack([frames, 2 * frames])).shape == (2, 4, 93, 93)


def test_too_few_usable_pixels_warns_not_zero():
    # A ramp clipped almost everywhere: a few hundred usable pixels, all near the white level.
    clean = ramp(0.9, 1.5, size=128)
    noisy = np.clip(add_noise(clean, RAMP_TRUTH, np.random.default_rng(8)), 0.0, 1.0)
    with pytest.warns(NoiseEstimateWarning, match="--noise"):
        est = estimate_noise(noisy)
    # a flagged, rough fallback (biased low by the truncation so close to the white level), not zero
    assert total_std(est, 0.95) > 0.3 * total_std(RAMP_TRUTH, 0.95)
    with pytest.warns(NoiseEstimateWarning, match="--noise"):
        both = estimate_burst_noise(noisy)
    assert not both.reliable and "--noise" in both.description
    assert total_std(both.noise, 0.95) > 0.3 * total_std(RAMP_TRUTH, 0.95)


@pytest.mark.parametrize("burst", [
    pytest.param(np.full((4, 32, 32), 0.5), id="constant"),
    pytest.param(np.clip(ramp(0.5, 8.0, size=16) + 0.01, 0, 1), id="clipped-tiny"),
])
def test_degenerate_raises_naming_noise_flag(burst):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning-and-zero on the way
        for estimate in (estimate_noise, estimate_noise_temporal, estimate_burst_noise):
            with pytest.raises(BurstKPNError, match="--noise"):
                estimate(burst)


def test_temporal_needs_three_frames():
    _, noisy = clipped_ramp(0.02, 0.9, seed=1)
    with pytest.raises(BurstKPNError, match="--noise"):
        estimate_noise_temporal(noisy[:2])
    both = estimate_burst_noise(noisy[:2])
    assert both.chosen == "spatial" and both.temporal is None and both.reliable


# --- the real phone burst (tests/data/README.md) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_planes():
    with np.load(REAL_CROP) as npz:
        mosaic = npz["frames"].astype(np.float32) / 65535  # (8, 192, 192), pre-aligned by whole pixels
    return bayer_planes(mosaic).transpose(1, 0, 2, 3)  # (4 CFA planes, 8 frames, 96, 96)


def test_real_crop_fixture(real_planes):
    assert REAL_CROP.stat().st_size < 600_000
    assert real_planes.shape == (4, 8, 96, 96)
    assert (real_planes == 1).mean() > 0.03 and (real_planes == 0).mean() > 0.01  # clipped both ways
    assert clip_points(real_planes) == (0.0, 1.0)


def test_real_burst_spatial_and_temporal_agree_within_30_percent(real_planes):
    spatial = estimate_noise(real_planes.reshape(-1, 96, 96))  # as `burstkpn denoise` pools the planes
    temporal = estimate_noise_temporal(real_planes)
    both = estimate_burst_noise(real_planes, aligned=real_planes)
    y = both.intensity
    assert 0.001 < y < 0.05  # the median unclipped intensity: mostly the dark frame
    ratio = total_std(temporal, y) / total_std(spatial, y)
    assert 1 / 1.3 < ratio < 1.3
    assert both.ratio == pytest.approx(ratio)
    assert both.spatial == spatial and both.temporal == temporal
    assert both.reliable and not both.disagree
    assert total_std(both.noise, y) == pytest.approx(min(total_std(spatial, y), total_std(temporal, y)))
    assert total_std(spatial, y) > 1e-3  # the old estimator gave ~0 on this burst


# ------------------------------------------------------------------------ dark, black-clipped bursts


def dark_clipped_burst(seed: int, truth=NoiseLevel(0.036, 0.016)):
    """A dark static scene (0-0.15, gain-4-like noise): most of it within 3 noise std of 0, ~25 % at 0."""
    rng = np.random.default_rng(seed)
    linear = to_grayscale(srgb8_to_linear(data.camera()[::2, ::2]))
    clean = np.repeat(0.15 * linear[None, :160, :160], 8, axis=0)
    return clean[0], np.clip(add_noise(clean, truth, rng), 0.0, None), truth


def test_censored_bins_unbiased_down_to_the_black_point():
    from burstkpn.noise_estimation import _censored_bins

    truth = NoiseLevel(0.036, 0.016)
    x = np.tile(np.linspace(0.0, 0.15, 256), (256, 1))
    noisy = np.clip(add_noise(np.repeat(x[None], 8, axis=0), truth, np.random.default_rng(3)), 0.0, None)
    assert (noisy == 0).mean() > 0.1
    ys, vs, _ = _censored_bins(noisy[None], clip_points(noisy), 16, 200)
    # from the black point (a censored fit with a mean per pixel, >= 0, takes every pixel, those with most of
    # their values at 0 too) to the ramp's far end (binned by neighbours: one-sided)
    inner = ys < 0.13
    assert inner.sum() >= 8 and ys.min() < 0.5 * total_std(truth, 0.0)
    ratio = np.sqrt(vs[inner]) / total_std(truth, ys[inner])
    assert np.all(np.abs(ratio - 1) < 0.08), ratio


@pytest.mark.parametrize("seed", [0, 1])
def test_dark_black_clipped_burst_uses_the_censored_temporal_estimate(seed):
    clean, noisy, truth = dark_clipped_burst(seed)
    assert (noisy == 0).mean() > 0.15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseEstimateWarning)
        est = estimate_burst_noise(noisy)
    y = float(np.median(clean))
    assert est.chosen == "temporal" and "censored" in est.description
    assert total_std(est.noise, y) == pytest.approx(total_std(truth, y), rel=0.15)
    # the spatial estimate alone is the truncated sample the censored bins replace: clearly low
    assert total_std(est.spatial, y) < 0.85 * total_std(truth, y)


def test_large_bursts_are_estimated_on_aligned_tiles():
    """A 512² burst with whole-pixel shake, subsampled (2**16 px per frame): the temporal estimate on the
    tiles moved by the shifts matches the truth and the full estimate; tiles cut without the shifts would
    see the texture move (mutation: the temporal estimate more than doubles)."""
    from burstkpn.noise_estimation import subsample_tiles

    rng = np.random.default_rng(4)
    linear = to_grayscale(srgb8_to_linear(data.astronaut()))[:, :]  # 512², textured
    shifts = [(0, 0), (3, -2), (-4, 1), (2, 5), (-1, -3), (5, 0)]
    clean = np.stack([np.roll(linear, s, axis=(0, 1)) for s in shifts]).astype(np.float32)
    truth = NoiseLevel(0.01, 0.004)
    noisy = add_noise(clean, truth, rng).astype(np.float32)
    unaligned, aligned = subsample_tiles(noisy[None], max_pixels=2**16)
    assert aligned.shape == (4, 6, 128, 128)
    # the aligned tiles of frame i are frame 0's tile content, moved back: the clean parts coincide
    clean_tiles = subsample_tiles(clean[None], max_pixels=2**16)[1]
    assert np.array_equal(clean_tiles[:, 3], clean_tiles[:, 0])
    y = float(np.median(clean))
    sub = estimate_burst_noise(noisy, max_pixels=2**16)
    full = estimate_burst_noise(noisy, max_pixels=None)
    assert total_std(sub.temporal, y) == pytest.approx(total_std(truth, y), rel=0.1)
    assert total_std(sub.noise, y) == pytest.approx(total_std(full.noise, y), rel=0.05)
    assert subsample_tiles(noisy[None], max_pixels=512**2) is None  # small enough: every pixel


def test_temporal_bins_judge_motion_by_the_pixels_whose_neighbourhood_is_known():
    """A channel whose pixels in a bin mostly have no unclipped neighbour (local variance inf: dark, black-
    clipped colour photos) used to take a quartile of infs (nan, with numpy's invalid-value warnings in the
    command's output); the quartile is of the known ones, and an unknown pixel is never static."""
    from burstkpn.noise_estimation import _temporal_bins

    rng = np.random.default_rng(0)
    n = 400
    mean = rng.uniform(0.1, 0.2, n)
    s2 = np.full(n, 1e-4)
    local = np.full(n, 1e-4)
    channel = np.zeros(n, np.int16)
    channel[-4:] = 1  # four pixels of another channel, three without a known neighbourhood
    local[-4:-1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            ys, vs, ns, static = _temporal_bins(mean, s2, local, np.zeros(n), channel, np.array([0.0, 1.0]), 200, 7)
    assert static.tolist() == [n - 3] and ns[0] > 0 and np.isfinite(vs).all()
