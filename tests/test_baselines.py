"""Classical baselines: each improves on the noisy reference, HDR+ alignment finds known shifts, the
VST is stabilising and unbiased, and the registry fails in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from burstkpn import baselines
from burstkpn.align import align_tiles, aligned_stack
from burstkpn.baselines.hdrplus import hdrplus
from burstkpn.baselines.vst import anscombe, inverse_anscombe
from burstkpn.commands.demo import bundled_photo
from burstkpn.errors import BurstKPNError
from burstkpn.metrics import psnr
from burstkpn.noise import add_noise, noise_level_for_gain

WHITE = 0.5


@pytest.fixture(scope="module")
def photo():
    return bundled_photo("camera")  # (512, 512) linear


def shifted_burst(photo: np.ndarray, shifts, size: int, origin=(180, 150)) -> np.ndarray:
    """Clean (N, size, size) frames: frame i at p shows the reference at p + shifts[i] (integer px)."""
    y, x = origin
    return np.stack([photo[y + dy : y + dy + size, x + dx : x + dx + size] for dy, dx in shifts]) * WHITE


@pytest.fixture(scope="module")
def static_burst(photo):
    clean = shifted_burst(photo, [(0, 0)] * 8, 40)
    noisy = add_noise(clean, noise_level_for_gain(1), np.random.default_rng(0))
    return clean[0], noisy


@pytest.mark.parametrize("name", [n for n in baselines.REGISTRY if n != "reference"])
def test_each_baseline_beats_the_reference_at_gain_1(name, static_burst):
    if baselines.missing(name):
        pytest.skip(f"{name}: {baselines.missing(name)}")
    clean, noisy = static_burst
    level = noise_level_for_gain(1)
    base = psnr(baselines.load("reference")(noisy, level), clean, WHITE)
    out = baselines.load(name)(noisy, level)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert psnr(out, clean, WHITE) > base + 2.0


def test_hdrplus_alignment_finds_known_integer_shifts():
    # textured content: in flat tiles every displacement fits the noise equally well
    shifts = [(0, 0), (3, -5), (-12, 9), (16, -16), (1, 1)]
    clean = shifted_burst(bundled_photo("gravel"), shifts, 96)
    noisy = add_noise(clean, noise_level_for_gain(1), np.random.default_rng(1))
    disp = align_tiles(torch.from_numpy(noisy))  # (N, Ty, Tx, 2) on 16-px tiles, stride 8
    inner = disp[:, 2:-2, 2:-2].reshape(len(shifts), -1, 2)  # tiles whose match lies inside the frame
    for i, (dy, dx) in enumerate(shifts):
        exact = (inner[i] == torch.tensor([-dy, -dx])).all(-1).float().mean()
        assert exact >= 0.95, f"frame {i}: {exact:.0%} of tiles at the true displacement"


def test_aligned_stack_shares_one_alignment_across_channels():
    shifts = [(0, 0), (3, -5), (-6, 4), (2, 2)]
    clean = shifted_burst(bundled_photo("gravel"), shifts, 64)
    noisy = add_noise(clean, noise_level_for_gain(1), np.random.default_rng(3)).astype(np.float32)
    channels = np.stack([noisy, 2 * noisy])  # (C, N, H, W): same geometry, different scale
    aligned = aligned_stack(channels)
    assert aligned.shape == channels.shape
    # the guide (the channels' mean) is a scaled copy of channel 0: same displacements, same warp
    np.testing.assert_allclose(aligned[0], aligned_stack(noisy), rtol=0, atol=1e-6)
    np.testing.assert_allclose(aligned[1], 2 * aligned[0], rtol=1e-6, atol=1e-6)
    # and alignment works: aligned frames match the reference far better than the raw frames
    inner = (slice(None), slice(8, -8), slice(8, -8))
    before = np.abs(noisy[1:] - noisy[:1])[inner].mean()
    after = np.abs(aligned[0, 1:] - aligned[0, :1])[inner].mean()
    assert after < 0.6 * before


def test_hdrplus_beats_average_widely_on_large_misalignment(photo):
    rng = np.random.default_rng(2)
    shifts = [(0, 0)] + [tuple(rng.integers(-14, 15, 2)) for _ in range(7)]
    clean = shifted_burst(photo, shifts, 64)
    level = noise_level_for_gain(1)
    noisy = add_noise(clean, level, rng)
    mean = psnr(baselines.load("average")(noisy, level), clean[0], WHITE)
    assert psnr(hdrplus(noisy, level), clean[0], WHITE) > mean + 6.0


@pytest.mark.parametrize("gain", [1, 8])
def test_anscombe_stabilises_and_its_inverse_is_unbiased(gain):
    level = noise_level_for_gain(gain)
    y = np.array([0.0, 0.002, 0.02, 0.2, 0.9])
    z = add_noise(np.repeat(y[:, None], 20000, axis=1), level, np.random.default_rng(3))
    f = anscombe(z, level)
    assert np.all(np.abs(f[1:].std(axis=1) - 1) < 0.12)  # unit σ away from the darkest level
    back = inverse_anscombe(f.mean(axis=1), level)
    std = np.sqrt(level.sigma_read**2 + level.sigma_shot * y)
    assert np.all(np.abs(back - y) < 0.05 * std), (back, y)


def test_registry_unknown_and_missing_methods(monkeypatch):
    with pytest.raises(BurstKPNError, match="unknown method 'vbm4d'"):
        baselines.load("vbm4d")
    monkeypatch.setitem(baselines.REGISTRY, "needs-extra", baselines.Entry("average:average", ("no_such_package_x",), "no-such"))
    assert baselines.missing("needs-extra") == "not installed (pip install no-such)"
    with pytest.raises(BurstKPNError, match="not installed"):
        baselines.load("needs-extra")
