"""An HDR+-style align-and-merge (Hasinoff et al., SIGGRAPH Asia 2016; described step by step by
Monod, Delon & Veit, "An Analysis and Implementation of the HDR+ Burst Denoising Method", IPOL 2021).

1. `align_tiles`: coarse-to-fine tile alignment on a Gaussian pyramid. At each level every tile of
   the reference searches a small window around the displacement inherited from the coarser level
   (L2 distance on coarse levels, L1 on the finest, integer displacements).
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
import torch.nn.functional as F

from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel, noise_variance


@dataclass(frozen=True)
class HDRPlusParams:
    """``levels`` runs fine -> coarse: (downsampling factor relative to the previous level, tile size,
    search radius), the IPOL defaults. The strengths had the best mean PSNR over gains 1-8 on 48
    training bursts (sun_hays80 + wallpapers24) among merge 2-64 x spatial 0-16."""

    tile: int = 16
    levels: tuple[tuple[int, int, int], ...] = ((1, 16, 1), (2, 16, 4), (4, 16, 4), (4, 8, 4))
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


# --- tiles -----------------------------------------------------------------------------------


def _origins(length: int, tile: int) -> torch.Tensor:
    """Tile origins with half overlap: 0, tile/2, ... while a whole tile fits."""
    return torch.arange(0, max(length - tile, 0) + 1, tile // 2)


def gather_tiles(frames: torch.Tensor, tile: int, disp: torch.Tensor) -> torch.Tensor:
    """Tiles of each frame on the half-overlap grid, each displaced by an integer vector.

    frames: (N, H, W); disp: (N, Ty, Tx, ..., 2) int (dy, dx). Returns (N, Ty, Tx, ..., tile, tile);
    pixels outside the frame repeat the edge.
    """
    n, h, w = frames.shape
    oy, ox = _origins(h, tile), _origins(w, tile)
    extra = disp.ndim - 4  # search-offset dimensions between the grid and (dy, dx)
    ones = (1,) * extra
    r = torch.arange(tile)
    ys = oy.view(len(oy), 1, *ones, 1, 1) + r.view(tile, 1) + disp[..., 0, None, None]
    xs = ox.view(1, len(ox), *ones, 1, 1) + r.view(1, tile) + disp[..., 1, None, None]
    ys, xs = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
    idx = torch.arange(n).view(n, *(1,) * (ys.ndim - 1))
    return frames[idx, ys, xs]


# --- alignment -------------------------------------------------------------------------------


def _gaussian_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W) -> Gaussian blur (σ = factor / 2) then every ``factor``-th pixel."""
    if factor == 1:
        return x
    sigma = factor / 2
    radius = int(np.ceil(2 * sigma))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(x[:, None], (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    return y[:, 0, ::factor, ::factor]


SEARCH_CHUNK_BYTES = 2**26  # cap on one search step's temporaries (tiles, differences, int64 indices)


def _search(level: torch.Tensor, tile: int, radius: int, init: torch.Tensor, norm: int) -> torch.Tensor:
    """Best integer displacement per tile within ``radius`` of ``init`` (N, Ty, Tx, 2) on one level."""
    d = torch.arange(-radius, radius + 1)
    offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)  # (O, 2)
    zero = torch.zeros(1, init.shape[1], init.shape[2], 2, dtype=torch.long)
    ref = gather_tiles(level[:1], tile, zero)[0]  # (Ty, Tx, t, t)
    step = max(1, SEARCH_CHUNK_BYTES // (24 * ref.numel()))  # offsets per chunk: ~24 bytes per tile pixel and offset
    best = [init[0]]
    for i in range(1, level.shape[0]):  # frames one at a time, offsets in chunks: memory stays bounded
        cand = init[i, :, :, None, :] + offsets  # (Ty, Tx, O, 2)
        dist = []
        for s in range(0, len(offsets), step):
            diff = gather_tiles(level[i : i + 1], tile, cand[None, :, :, s : s + step])[0] - ref[:, :, None]
            dist.append(diff.abs().sum((-2, -1)) if norm == 1 else diff.square().sum((-2, -1)))
        pick = torch.cat(dist, -1).argmin(-1)  # (Ty, Tx)
        best.append(torch.gather(cand, 2, pick[..., None, None].expand(-1, -1, 1, 2))[:, :, 0])
    return torch.stack(best)


def _upsample_disp(disp: torch.Tensor, coarse_tile: int, factor: int, shape: tuple[int, int], tile: int) -> torch.Tensor:
    """Displacements of a coarse tile grid -> the finer grid of ``shape``: nearest coarse tile, x factor."""
    out = []
    for axis, length in enumerate(shape):
        centres = (_origins(length, tile) + tile / 2) / factor
        idx = torch.round((centres - coarse_tile / 2) / (coarse_tile // 2)).long()
        out.append(idx.clamp(0, disp.shape[1 + axis] - 1))
    return disp[:, out[0][:, None], out[1][None, :]] * factor


def align_tiles(frames: torch.Tensor, params: HDRPlusParams = DEFAULT) -> torch.Tensor:
    """Coarse-to-fine tile alignment of every frame to frame 0.

    frames: (N, H, W) linear. Returns (N, Ty, Tx, 2) int64 (dy, dx): the tile of the reference at
    grid origin o (half-overlap grid of ``params.levels[0]`` tiles) is found in frame i at o + disp.
    With the project's shift convention (frame i at p shows the reference at p + shift_i), a
    translated frame gives disp = -shift. Frame 0's displacements are zero.
    """
    if frames.ndim != 3:
        raise BurstKPNError(f"expected frames of shape (N, H, W), got {tuple(frames.shape)}")
    pyramid, factors, levels = [frames.float()], [], []
    for factor, tile, radius in params.levels:
        level = _gaussian_downsample(pyramid[-1], factor) if levels else pyramid[0]
        tile = min(tile, min(level.shape[-2:]) // 2 * 2)  # a small image's coarsest level: one tile
        if levels and tile < 8:
            break  # too small to align: start from the previous level
        if levels:
            pyramid.append(level)
        factors.append(factor)
        levels.append((tile, radius))
    disp = None
    for k in range(len(levels) - 1, -1, -1):
        level, (tile, radius) = pyramid[k], levels[k]
        grid = (len(_origins(level.shape[1], tile)), len(_origins(level.shape[2], tile)))
        if disp is None:
            disp = torch.zeros(level.shape[0], *grid, 2, dtype=torch.long)
        else:
            disp = _upsample_disp(disp, levels[k + 1][0], factors[k + 1], tuple(level.shape[1:]), tile)
        disp = _search(level, tile, radius, disp, norm=1 if k == 0 else 2)
    return disp


# --- merge -----------------------------------------------------------------------------------


def raised_cosine(tile: int) -> torch.Tensor:
    """(tile, tile) window; copies shifted by tile/2 sum to one."""
    x = torch.arange(tile, dtype=torch.float32)
    w = 0.5 - 0.5 * torch.cos(2 * torch.pi * (x + 0.5) / tile)
    return w[:, None] * w[None, :]


def _pad_for_tiles(frames: torch.Tensor, tile: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, H, W) so that half-overlap tiles cover every pixel twice; returns the top-left pad."""
    _, h, w = frames.shape
    half = tile // 2
    hp, wp = -(-(h + tile) // half) * half, -(-(w + tile) // half) * half
    pads = (half, wp - w - half, half, hp - h - half)
    mode = "reflect" if max(pads) < min(h, w) else "replicate"
    return F.pad(frames[None], pads, mode=mode)[0], (half, half)


def _overlap_add(tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, Ty, Tx, t, t) windowed tiles -> (B, H, W) summed at their half-overlap grid positions."""
    b, ty, tx, t, _ = tiles.shape
    cols = tiles.reshape(b, ty * tx, t * t).transpose(1, 2)
    return F.fold(cols, output_size=size, kernel_size=t, stride=t // 2)[:, 0]


def snap_to_prior(frames: torch.Tensor, disp: torch.Tensor, prior: torch.Tensor, tile: int, margin: float) -> torch.Tensor:
    """Keep each tile's ``prior`` displacement unless its own match is clearly better.

    frames: (N, H, W) padded; disp: (N, Ty, Tx, 2) from `align_tiles`; prior: (N, 2) int, one
    displacement per frame (e.g. the rounded global shift). A tile keeps the prior where its L1
    distance to the reference there is at most ``(1 + margin)`` times the distance at its own best
    displacement. Under a global translation every tile then shares one integer displacement, so the
    overlap-add is an exact shift rather than a blend of neighbouring tiles' different roundings
    (which blurs and ghosts); tiles on independently moving content still follow it.
    """
    zero = torch.zeros(1, *disp.shape[1:], dtype=torch.long)
    ref = gather_tiles(frames[:1], tile, zero)[0]
    out = disp.clone()
    for i in range(1, frames.shape[0]):  # frame by frame: memory stays bounded
        own = (gather_tiles(frames[i : i + 1], tile, disp[i : i + 1])[0] - ref).abs().sum((-2, -1))
        keep = prior[i].expand_as(disp[i])
        at_prior = (gather_tiles(frames[i : i + 1], tile, keep[None])[0] - ref).abs().sum((-2, -1))
        out[i] = torch.where((at_prior <= (1 + margin) * own)[..., None], keep, disp[i])
    return out


def tile_displacements(frames: torch.Tensor, params: HDRPlusParams = DEFAULT, snap_margin: float | None = None):
    """(N, H, W) -> (frames padded for tiles, their top-left pad, (N, Ty, Tx, 2) tile displacements).

    ``snap_margin``: if given, tiles whose match is within this relative margin of the frame's rounded
    global shift (`burstkpn.align.estimate_global_shifts`) take that shift (`snap_to_prior`).
    """
    padded, origin = _pad_for_tiles(frames, params.tile)
    disp = align_tiles(padded, params)
    if snap_margin is not None and frames.shape[0] > 1:
        from burstkpn.align import estimate_global_shifts

        # disp = -shift in the project's convention (see `align_tiles`)
        prior = -estimate_global_shifts(frames[None])[0].round().long()
        disp = snap_to_prior(padded, disp, prior, params.tile, snap_margin)
    return padded, origin, disp


def aligned_stack(burst: np.ndarray, params: HDRPlusParams = DEFAULT, snap_margin: float | None = None) -> np.ndarray:
    """Every frame resampled onto the reference by tile alignment: (N, H, W) -> (N, H, W).

    For a (C, N, H, W) stack of channels (colour, CFA planes) of one burst, the displacements are
    found once on the channels' mean and applied to every channel. Displaced tiles are windowed and
    overlap-added, so each output pixel blends the (at most four) tile displacements that cover it.
    ``snap_margin``: see `tile_displacements`.
    """
    stack = torch.from_numpy(np.asarray(burst, np.float32))
    channels = stack if stack.ndim == 4 else stack[None]
    guide, (top, left), disp = tile_displacements(channels.mean(0), params, snap_margin)
    window = raised_cosine(params.tile)
    out = torch.empty_like(channels)
    h, w = channels.shape[-2:]
    for c in range(channels.shape[0]):
        padded = guide if channels.shape[0] == 1 else _pad_for_tiles(channels[c], params.tile)[0]
        for i in range(padded.shape[0]):  # frame by frame: less memory
            tiles = gather_tiles(padded[i : i + 1], params.tile, disp[i : i + 1]) * window
            out[c, i] = _overlap_add(tiles, tuple(padded.shape[1:]))[0, top : top + h, left : left + w]
    return (out if stack.ndim == 4 else out[0]).numpy()


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
    n, h, w = frames.shape
    t = params.tile
    padded, (top, left) = _pad_for_tiles(frames, t)
    disp = align_tiles(padded, params)
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
    out = _overlap_add(torch.fft.ifft2(merged).real.float()[None], tuple(padded.shape[1:]))[0]
    return out[top : top + h, left : left + w].numpy(), float(factor.mean())
