"""An HDR+-style align-and-merge (Hasinoff et al., SIGGRAPH Asia 2016; described step by step by
Monod, Delon & Veit, "An Analysis and Implementation of the HDR+ Burst Denoising Method", IPOL 2021).

1. `burstkpn.align.tiles.align_tiles`: coarse-to-fine tile alignment on a Gaussian pyramid (the
   alignment's one home, shared with the network's real-burst path).
2. `merge`: pairwise Wiener merge in the 2-D DFT domain of overlapping tiles (half overlap,
   raised-cosine window whose shifted copies sum to one), ``A = |D|² / (|D|² + c σ²)`` per
   frequency, then an optional spatial Wiener shrinkage of the merged spectrum, then overlap-add.

Simplified against the paper: grayscale frames instead of Bayer quads, integer alignment only (no
sub-pixel fit), the nearest coarse tile as the only upsampling candidate (HDR+ tries three), the
noise variance from the known noise model at each reference tile's mean, and a spatial shrinkage
with one strength for all frequencies. Everything is vectorised over tiles (and search offsets);
Python loops run only over pyramid levels and frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from burstkpn.align.tiles import DEFAULT as ALIGNMENT
from burstkpn.align.tiles import (
    align_tiles,
    gather_tiles,
    overlap_add,
    pad_for_tiles,
    raised_cosine,
)
from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel, noise_variance


@dataclass(frozen=True)
class HDRPlusParams:
    """``tile`` and ``levels``: the tile alignment's (`burstkpn.align.tiles.TileAlignParams`). The strengths had the best mean PSNR over gains 1-8 on 48
    training bursts (sun_hays80 + wallpapers24) among merge 2-64 x spatial 0-16."""

    tile: int = ALIGNMENT.tile
    levels: tuple[tuple[int, int, int], ...] = ALIGNMENT.levels
    merge_strength: float = 32.0
    spatial_strength: float = 8.0


DEFAULT = HDRPlusParams()


def hdrplus(burst: np.ndarray, noise: NoiseLevel, params: HDRPlusParams = DEFAULT) -> np.ndarray:
    """HDR+-style align and merge: (N, H, W) linear burst -> (H, W) estimate of the reference."""
    image, _ = merge(burst, noise, params)
    return image


def hdrplus_merge_only(burst: np.ndarray, noise: NoiseLevel) -> tuple[np.ndarray, float]:
    """The temporal merge without spatial shrinkage, and its noise-variance factor (for BM3D after it)."""
    return merge(burst, noise, replace(DEFAULT, spatial_strength=0.0))


def merge(burst: np.ndarray, noise: NoiseLevel, params: HDRPlusParams = DEFAULT) -> tuple[np.ndarray, float]:
    """Align, then Wiener-merge: (N, H, W) -> ((H, W) estimate, noise-variance factor of the merge).

    The factor is the mean over tiles and frequencies of ``Σ_z w_z²``, the merge's per-frequency frame
    weights: the merged image's noise variance is about ``factor * (σ_r² + σ_s y)`` (1/N when every
    frame is averaged, 1 when only the reference is kept), before any spatial shrinkage.
    """
    burst = np.asarray(burst, np.float32)
    if burst.ndim != 3:
        raise BurstKPNError(f"expected a burst of shape (N, H, W), got {burst.shape}")
    frames = torch.from_numpy(burst)
    _, h, w = frames.shape
    padded, (top, left) = pad_for_tiles(frames, params.tile)
    out, factor = wiener_merge(padded, align_tiles(padded, params), noise, params)
    return out[top : top + h, left : left + w].numpy(), factor


def wiener_merge(padded: torch.Tensor, disp: torch.Tensor, noise: NoiseLevel,
                 params: HDRPlusParams = DEFAULT) -> tuple[torch.Tensor, float]:
    """The merge step of `merge` on frames already padded for tiles (`align.tiles.pad_for_tiles`) and their
    tile displacements (`align.tiles.align_tiles`): (N, Hp, Wp) -> ((Hp, Wp) estimate, noise-variance
    factor). Separate so that several planes of one burst can share one alignment."""
    n = padded.shape[0]
    t = params.tile
    window = raised_cosine(t)
    tiles = gather_tiles(padded, t, disp)  # (N, Ty, Tx, t, t)
    spectra = torch.fft.fft2(tiles.double() * window)
    # noise variance of one DFT coefficient of a windowed tile: σ²(tile mean) * Σ w²
    level = tiles[0].double().mean((-2, -1)).clamp(min=0)
    var = noise_variance(level, noise.sigma_read, noise.sigma_shot)[..., None, None] * window.square().sum()
    ref = spectra[:1]
    diff2 = (ref - spectra[1:]).abs().square()
    a = diff2 / (diff2 + params.merge_strength * 2 * var + 1e-30)  # (N-1, Ty, Tx, t, t)
    merged = (ref[0] + (spectra[1:] + a * (ref - spectra[1:])).sum(0)) / n
    factor = ((1 + a.sum(0)).square() + (1 - a).square().sum(0)) / n**2
    if params.spatial_strength > 0:
        m2 = merged.abs().square()
        merged = merged * m2 / (m2 + params.spatial_strength * factor * var + 1e-30)
    out = overlap_add(torch.fft.ifft2(merged).real.float()[None], tuple(padded.shape[1:]))[0]
    return out, float(factor.mean())
