import numpy as np
import pytest
from scipy.stats import poisson

from burstkpn.errors import BurstKPNError
from burstkpn.synth import BurstConfig, downsample_area, sample_shifts, synthesize_burst


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(7).random((400, 400)).astype(np.float32)


def test_downsampling_preserves_mean_and_averages_blocks(rng):
    x = rng.random((3, 64, 96)).astype(np.float32)
    y = downsample_area(x, 4)
    assert y.shape == (3, 16, 24)
    assert y.mean() == pytest.approx(x.mean(), rel=1e-6)
    assert y[1, 2, 3] == pytest.approx(x[1, 8:12, 12:16].mean(), rel=1e-6)


def test_shift_ranges_and_large_shift_frequency(rng):
    cfg = BurstConfig()
    shifts = np.stack([sample_shifts(rng, cfg) for _ in range(4000)]) / cfg.downsample
    assert np.all(shifts[:, 0] == 0)
    others = shifts[:, 1:]
    assert np.abs(others).max() <= cfg.large_shift
    assert np.abs(others).max() > cfg.large_shift - 1  # large shifts do reach the edge
    beyond_small = (np.abs(others) > cfg.small_shift).any(-1).mean()
    # P(frame is large) = E[min(Poisson(1.5)/8, 1)]; a large draw stays within ±2 px with prob (17/129)^2.
    k = np.arange(0, 60)
    p_large = np.sum(poisson.pmf(k, 1.5) * np.minimum(k / 8, 1))
    expected = p_large * (1 - (17 / 129) ** 2)
    assert beyond_small == pytest.approx(expected, abs=0.015)
    small = others[~(np.abs(others) > cfg.small_shift).any(-1)]
    assert np.allclose(small * 4, np.round(small * 4))  # integer high-res pixels = quarter output pixels


def test_frames_show_the_reference_at_their_shift(image):
    cfg = BurstConfig(size=32)
    checked = 0
    for seed in range(200):
        burst = synthesize_burst(image, np.random.default_rng(seed), cfg)
        for frame, (dy, dx) in zip(burst.frames[1:], burst.shifts[1:]):
            if dy != int(dy) or dx != int(dx):
                continue
            dy, dx, s = int(dy), int(dx), cfg.size
            # frame(p) = reference(p + shift) where both are inside the crop
            f = frame[max(0, -dy): s - max(0, dy), max(0, -dx): s - max(0, dx)]
            r = burst.frames[0][max(0, dy): s + min(0, dy), max(0, dx): s + min(0, dx)]
            assert np.allclose(f, r)
            checked += 1
    assert checked > 20


def test_same_seed_same_burst_different_seed_different(image):
    cfg = BurstConfig(size=32)
    a = synthesize_burst(image, np.random.default_rng(3), cfg)
    b = synthesize_burst(image, np.random.default_rng(3), cfg)
    c = synthesize_burst(image, np.random.default_rng(4), cfg)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.shifts, b.shifts)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (8, 32, 32) and a.frames.dtype == np.float32


def test_too_small_image_is_a_clear_error(image):
    with pytest.raises(BurstKPNError, match="too small for 128-px bursts.*640 px"):
        synthesize_burst(image, np.random.default_rng(0), BurstConfig())
    with pytest.raises(BurstKPNError):
        BurstConfig(frames=0)


def test_local_motion_keeps_the_reference_and_defeats_global_alignment():
    import torch

    from burstkpn.align import align_global
    from burstkpn.synth import LocalMotion

    img = np.random.default_rng(11).random((800, 800)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(img, 6)  # smooth texture, so bilinear warps are accurate
    residual = {}
    for motion in (None, LocalMotion()):
        errs = []
        for seed in range(4):
            b = synthesize_burst(img, np.random.default_rng(seed), BurstConfig(size=64), motion)
            x = torch.from_numpy(b.frames)[None]
            aligned, _ = align_global(x)
            errs.append(float((aligned[0, 1:] - aligned[0, :1])[:, 8:-8, 8:-8].abs().mean()))
        residual[motion is None] = np.mean(errs)
    assert residual[False] > 2 * residual[True]  # local motion leaves misalignment global alignment can't fix
    g = synthesize_burst(img, np.random.default_rng(0), BurstConfig(size=64, small_shift=0, large_rate=0))
    loc = synthesize_burst(img, np.random.default_rng(0), BurstConfig(size=64, small_shift=0, large_rate=0), LocalMotion())
    assert g.frames.shape == loc.frames.shape == (8, 64, 64)
    assert np.abs(loc.frames[1:] - loc.frames[:1]).max() > 1e-3  # alternate frames do move


def test_intruders_show_other_content_in_a_region_of_alternate_frames_only():
    from scipy.ndimage import gaussian_filter

    from burstkpn.synth import LocalMotion

    img = gaussian_filter(np.random.default_rng(5).random((600, 600)), 4).astype(np.float32)
    still = dict(max_rotation_deg=0.0, max_scale=0.0, object_shift=0)
    cfg = BurstConfig(size=64, small_shift=0, large_rate=0)
    plain = synthesize_burst(img, np.random.default_rng(0), cfg, LocalMotion(**still))
    np.testing.assert_allclose(plain.frames[1:], np.broadcast_to(plain.frames[:1], (7, 64, 64)), atol=1e-5)
    b = synthesize_burst(img, np.random.default_rng(0), cfg, LocalMotion(**still, intruder_rate=1.0))
    np.testing.assert_array_equal(b.frames[0], plain.frames[0])
    changed = np.abs(b.frames[1:] - b.frames[:1]) > 1e-4
    share = changed.mean(axis=(1, 2))
    # an ellipse with semi-axes 15-35 % of the side covers 7-38 % of the frame (less where content matches)
    assert np.all(share > 0.03) and np.all(share < 0.4), share
    assert len({tuple(np.argwhere(c).mean(0).round()) for c in changed}) > 3  # at different places per frame
    with pytest.raises(BurstKPNError, match="intruder_rate"):
        LocalMotion(intruder_rate=1.5)
