import numpy as np
import pytest
import torch

from burstkpn.align import align_global, warp_frames
from burstkpn.errors import BurstKPNError
from burstkpn.noise import add_noise, noise_level_for_gain
from burstkpn.synth import BurstConfig, synthesize_burst


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return (data.camera().astype(np.float32) / 255) ** 2.2


@pytest.mark.parametrize("gain,tol", [(1, 0.15), (4, 0.3)])
def test_recovers_synthetic_subpixel_shifts(photo, gain, tol):
    errors = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        burst = synthesize_burst(photo, rng, BurstConfig(size=64))
        noisy = add_noise(burst.frames * 0.5, noise_level_for_gain(gain), rng)
        _, shifts = align_global(torch.from_numpy(noisy)[None])
        errors.append(np.abs(shifts[0].numpy() - burst.shifts))
    assert np.median(np.concatenate(errors)) < tol
    assert np.percentile(np.concatenate(errors), 95) < 3 * tol


def test_alignment_makes_frames_match_the_reference(photo):
    burst = synthesize_burst(photo, np.random.default_rng(1), BurstConfig(size=64))
    x = torch.from_numpy(burst.frames)[None]
    aligned, _ = align_global(x)
    inner = (slice(None), slice(None), slice(20, -20), slice(20, -20))
    before = (x - x[:, :1])[inner].abs().mean()
    after = (aligned - aligned[:, :1])[inner].abs().mean()
    assert after < 0.25 * before
    assert torch.equal(aligned[:, 0], x[:, 0])


def test_integer_warp_is_exact():
    x = torch.rand(1, 2, 16, 16)
    out = warp_frames(x, torch.tensor([[[0.0, 0.0], [2.0, -3.0]]]))
    assert torch.allclose(out[0, 1, 2:, :13], x[0, 1, :14, 3:])


def test_bad_shape_is_a_clear_error():
    with pytest.raises(BurstKPNError, match=r"\(B, N, H, W\)"):
        align_global(torch.rand(8, 16, 16))


def test_a_subject_moving_at_the_centre_does_not_drag_the_global_shift():
    """Phase correlation's window weighs the centre most: a subject moving there gives the highest peak,
    but the chosen shift is the one that explains most of the frame (the still background)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    scene = gaussian_filter(rng.random((160, 160)), 1.5).astype(np.float32)
    background = [(0, 0), (1, -1), (0, 2), (-1, 0)]
    frames = np.stack([scene[20 - dy : 116 - dy, 20 - dx : 116 - dx] for dy, dx in background])
    frames[2, 24:72, 24:72] = scene[20 + 12 : 116 + 12, 20 - 12 : 116 - 12][24:72, 24:72]  # the subject moved
    noisy = frames + rng.normal(0, 0.01, frames.shape).astype(np.float32)
    _, shifts = align_global(torch.from_numpy(noisy)[None])
    np.testing.assert_allclose(shifts[0].numpy(), -np.array(background, np.float32), atol=0.3)  # frame i at p shows the reference at p + shift
