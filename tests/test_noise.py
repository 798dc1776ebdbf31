import numpy as np
import pytest
import torch

from burstkpn.errors import BurstKPNError
from burstkpn.noise import (
    GAIN_LOG10,
    NoiseLevel,
    NoiseRange,
    add_noise,
    clipped_mean,
    declip,
    impute_black,
    mean_below,
    noise_level_for_gain,
    noise_std_map,
    sample_noise_level,
)


@pytest.mark.parametrize("gain", [1, 4, 8])
def test_empirical_variance_matches_model(gain, rng):
    level = noise_level_for_gain(gain)
    for y in (0.0, 0.05, 0.3, 0.9):
        clean = np.full(200_000, y, dtype=np.float32)
        noisy = add_noise(clean, level, rng)
        expected = level.sigma_read**2 + level.sigma_shot * y
        assert noisy.mean() == pytest.approx(y, abs=4 * np.sqrt(expected / clean.size))
        assert noisy.var() == pytest.approx(expected, rel=0.02)


def test_noise_is_signal_dependent_and_independent_per_pixel(rng):
    level = NoiseLevel(0.01, 0.01)
    clean = np.tile(np.array([0.1, 0.8], np.float32), (100_000, 1))
    residual = add_noise(clean, level, rng) - clean
    assert residual[:, 1].var() / residual[:, 0].var() == pytest.approx((1e-4 + 8e-3) / (1e-4 + 1e-3), rel=0.05)
    assert abs(np.corrcoef(residual[:, 0], residual[:, 1])[0, 1]) < 0.02


def test_gain_presets_are_the_papers():
    assert noise_level_for_gain(1).sigma_read == pytest.approx(10**-2.2)
    assert noise_level_for_gain("8").sigma_shot == pytest.approx(10**-1.5)
    assert set(GAIN_LOG10) == {1, 2, 4, 8}
    for bad in (3, "x", 1.5, None):
        with pytest.raises(BurstKPNError, match="unknown gain"):
            noise_level_for_gain(bad)


def test_training_sampler_is_log_uniform_in_the_papers_range(rng):
    levels = [sample_noise_level(rng) for _ in range(3000)]
    reads = np.log10([lv.sigma_read for lv in levels])
    shots = np.log10([lv.sigma_shot for lv in levels])
    assert reads.min() >= -3 and reads.max() <= -1.5 and shots.min() >= -4 and shots.max() <= -2
    assert reads.mean() == pytest.approx(-2.25, abs=0.03) and shots.mean() == pytest.approx(-3.0, abs=0.04)
    narrow = sample_noise_level(rng, NoiseRange((-2, -2), (-3, -3)))
    assert narrow.sigma_read == pytest.approx(0.01) and narrow.sigma_shot == pytest.approx(0.001)


def test_noise_estimate_numpy_and_torch_agree():
    ref = np.array([[-0.1, 0.0, 0.25, 1.0]], np.float32)
    expected = np.sqrt(0.02**2 + 0.01 * np.clip(ref, 0, None))
    assert np.allclose(noise_std_map(ref, 0.02, 0.01), expected)
    sr = torch.tensor([0.02]).view(1, 1)
    assert np.allclose(noise_std_map(torch.from_numpy(ref), sr, 0.01).numpy(), expected)


def test_invalid_levels_are_rejected():
    with pytest.raises(BurstKPNError):
        NoiseLevel(-1.0, 0.0)
    with pytest.raises(BurstKPNError):
        NoiseLevel(float("nan"), 0.0)


def test_all_eight_table_1_constants_are_the_papers():
    """Table 1 of the paper: (log10 sigma_read, log10 sigma_shot) per gain, and the levels built from them."""
    table = {1: (-2.2, -2.6), 2: (-1.8, -2.2), 4: (-1.44, -1.8), 8: (-1.07, -1.5)}
    assert GAIN_LOG10 == table
    for gain, (log_read, log_shot) in table.items():
        level = noise_level_for_gain(gain)
        assert level.sigma_read == pytest.approx(10**log_read, rel=1e-12)
        assert level.sigma_shot == pytest.approx(10**log_shot, rel=1e-12)


def test_unknown_gain_message_lists_the_known_ones():
    with pytest.raises(BurstKPNError) as info:
        noise_level_for_gain(3)
    assert str(info.value) == "unknown gain 3: known gains are 1, 2, 4, 8 and base"


def test_zero_noise_is_a_level_and_bad_levels_say_why():
    assert NoiseLevel(0.0, 0.0) == NoiseLevel(0.0, 0.0)  # a noiseless level is valid (e.g. a clean render)
    NoiseLevel(0.0, 0.01)
    NoiseLevel(0.01, 0.0)
    with pytest.raises(BurstKPNError, match=r"noise level must be finite, got NoiseLevel\(sigma_read=inf"):
        NoiseLevel(float("inf"), 0.0)
    with pytest.raises(BurstKPNError, match=r"noise level must be non-negative, got NoiseLevel\(sigma_read=0.0, sigma_shot=-0.1\)"):
        NoiseLevel(0.0, -0.1)


def test_add_noise_is_the_clean_image_plus_std_times_one_normal_draw():
    """Exactly y + sqrt(var)·z with z the generator's standard normals in order (so a seeded test set is
    reproducible byte for byte), float32, for float32 and float64 input."""
    level = NoiseLevel(0.02, 0.01)
    for dtype in (np.float32, np.float64):
        clean = np.linspace(-0.1, 1.0, 24, dtype=dtype).reshape(2, 3, 4)
        noisy = add_noise(clean, level, np.random.default_rng(7))
        z = np.random.default_rng(7).standard_normal(clean.shape)
        std = np.sqrt(0.02**2 + 0.01 * np.clip(clean.astype(np.float64), 0, None))
        assert noisy.dtype == np.float32 and noisy.shape == clean.shape
        np.testing.assert_array_equal(noisy, (clean + std * z).astype(np.float32))


@pytest.mark.parametrize("low,high", [(0.0, 1.0), (0.0, None), (None, 1.0)])
def test_clipped_mean_is_the_mean_of_clipped_noisy_draws(low, high, rng):
    level = NoiseLevel(0.02, 0.01)  # about the paper's gain 4
    signal = np.array([0.0, 0.005, 0.02, 0.1, 0.5, 0.9, 0.98, 1.0])
    std = np.sqrt(level.sigma_read**2 + level.sigma_shot * signal)
    draws = np.clip(signal[:, None] + std[:, None] * rng.standard_normal((len(signal), 400_000)), low, high)
    # a mean of 4e5 draws is off by less than 5 of its std errors (std / sqrt(4e5): 3e-5 to 1.6e-4 here)
    error = np.abs(clipped_mean(signal, level, low, high) - draws.mean(axis=1))
    assert (error < 5 * std / np.sqrt(draws.shape[1])).all(), error
    # the clip lifts the mean near black and lowers it near white, and leaves mid-grey alone
    m = clipped_mean(signal, level, low, high)
    if low is not None:
        assert m[0] > 0.35 * level.sigma_read
    if high is not None:
        assert m[-1] < 1 - 0.35 * std[-1]
    assert abs(m[4] - 0.5) < 1e-9


def test_mean_below_is_the_mean_of_the_draws_the_cut_takes(rng):
    """`mean_below`: E[v | v <= black] for v ~ N(scene, var(scene)), against the mean of the draws at or below
    the black point out of 10⁶ per scene; far above black (the lower tail) it stays finite and below black."""
    level = NoiseLevel(0.02, 0.01)
    for scene, black in ((0.0, 0.0), (0.01, 0.0), (0.05, 0.0), (0.03, 0.02)):
        std = np.sqrt(level.sigma_read**2 + level.sigma_shot * scene)
        draws = scene + std * rng.standard_normal(1_000_000)
        below = draws[draws <= black]
        assert abs(float(mean_below(np.array([scene]), level, black)[0]) - below.mean()) < 4 * below.std() / np.sqrt(below.size)
    far = mean_below(np.array([0.9]), level)
    assert np.isfinite(far).all() and far[0] <= 0.0


@pytest.mark.parametrize("scene", [0.0, 0.005, 0.01, 0.03])
def test_impute_black_restores_the_mean_and_noise_the_cut_took_away(scene, rng):
    """Frames of a flat shadow cut at 0 (black-subtracted raw): their mean reads too bright and their spread too
    low; filling the cut values with E[v | v <= 0] brings the mean back to the scene's, and no uncut value moves."""
    level = NoiseLevel(0.02, 0.01)  # about the paper's gain 4: at 0.01 of white a third of the values are cut
    noisy = add_noise(np.full((8, 64, 64), scene, np.float32), level, rng)
    cut = np.maximum(noisy, 0)
    filled = impute_black(cut, level)
    assert abs(float(cut.mean()) - scene) > 0.0009  # the bias the cut leaves (0.0011 at 0.03 of white)
    assert abs(float(filled.mean()) - scene) < 0.0004
    np.testing.assert_array_equal(filled[cut > 1e-4], cut[cut > 1e-4])
    assert (filled[cut == 0] < 0).all()  # what was cut lay below the black point
    # told the wrong noise level, the fill misses: the level is what sizes it
    assert abs(float(impute_black(cut, NoiseLevel(0.04, 0.02)).mean()) - scene) > 0.002
    # a strided view (e.g. Bayer planes taken from a mosaic) is filled like the same values in C order
    planes = cut.reshape(2, 4, 64, 64).transpose(1, 0, 2, 3)  # (4, 2, H, W) whose leading axes do not merge
    np.testing.assert_array_equal(impute_black(planes, level), filled.reshape(2, 4, 64, 64).transpose(1, 0, 2, 3))
    inplace = cut.copy()
    assert impute_black(inplace, level, inplace=True) is inplace
    np.testing.assert_array_equal(inplace, filled)
    off_point = np.abs(noisy) > 1e-4  # values below the black point were not cut: never touched
    np.testing.assert_array_equal(impute_black(noisy, level)[off_point], noisy[off_point])


def test_declip_inverts_the_clipped_mean_and_stays_in_range():
    level = NoiseLevel(0.02, 0.01)
    scene = np.linspace(0, 1, 201)
    np.testing.assert_allclose(declip(clipped_mean(scene, level), level), scene, atol=1e-6)
    # residual noise can push an estimate past what any scene in [0, 1] gives: the clip point, not beyond
    out = declip(np.array([-0.01, 0.0, 1.0, 1.02]), level)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1.0, 1.0])
    # far from both clip points (more than 6 std) the estimate is returned as it is, bit for bit
    mid = np.array([0.3, 0.5, 0.7], np.float32)
    np.testing.assert_array_equal(declip(mid, NoiseLevel(0.005, 0.001)), mid)  # std <= 0.03 here
    # a side left unclipped is not corrected: a dark value keeps its (positive) bias without a black clip
    assert declip(np.array([0.015]), level, low=None)[0] == np.float32(0.015)
    assert declip(np.array([0.015]), level)[0] < 0.012
