"""Run an image function over overlapping tiles with smooth (raised-cosine) blending.

Large bursts do not fit a network's activations in memory at once; a spatially local function
(a KPN sees a bounded neighbourhood) gives almost the same result tile by tile, and a
raised-cosine cross-fade across each overlap hides the seams.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from burstkpn.errors import BurstKPNError

# Peak memory of a base-width KPN per pixel of a tile, all frames and intermediate activations
# included (bytes, float32, inference): a conservative planning figure for `choose_tile`.
DEFAULT_BYTES_PER_PIXEL = 16_384
TILE_MULTIPLE = 32  # U-Nets pad to a multiple of 2**depth; keep tiles on that grid
# The part of a tile's peak memory that does not grow with its pixels (malloc arenas, one per thread
# that allocated, thread and convolution workspaces): 30-90 MB measured for the shipped KPN
# (docs/speed-pipeline.md). `choose_tile` keeps it back from the budget (at most half of a small budget).
TILE_FIXED_BYTES = 96 * 2**20
# Tiling is cheapest per pixel at moderate sides: the network's time per pixel grows past ~500 px (the maps
# fall out of cache; 2 AVX2 cores, 2 threads: kpn 4.4 / 5.1 / 5.6 s/MP at 384² / 544² / 1024² tiles,
# kpn-bayer-preview 8.7 / 9.1 / 9.4 at 384² / 512² / 608², docs/speed-pipeline.md), and memory grows with
# the side. So a burst that must be tiled gets tiles of at most this side (a 1024² burst: 2 x 2 of 544²).
TILE_MAX_SIDE = 544


def choose_tile(height: int, width: int, budget_bytes: float, bytes_per_pixel: float = DEFAULT_BYTES_PER_PIXEL,
                overlap: int = 32, fixed_bytes: float = TILE_FIXED_BYTES, max_side: int = TILE_MAX_SIDE) -> int:
    """Tile side for `run_tiled` (a multiple of 32, at least 2 * overlap): the fewest tiles whose cost,
    ``fixed_bytes`` (at most half the budget) plus ``bytes_per_pixel`` per pixel, fits ``budget_bytes``,
    each as small as that count allows.

    Returns ``max(height, width)`` (one tile) when the whole image fits. Otherwise the largest side that
    fits, at most ``max_side``, gives the number of tiles along each axis; the side is then shrunk to the smallest one (on the
    32-px grid) that still covers the image with that many tiles, so that the tiles overlap by little
    more than ``overlap`` instead of re-processing much of the image (a 1024² image under a 896-px limit:
    2 x 2 tiles of 544², not of 896²).
    """
    if budget_bytes <= 0 or bytes_per_pixel <= 0:
        raise BurstKPNError(f"memory budget must be positive, got {budget_bytes} bytes")
    budget = budget_bytes - min(fixed_bytes, budget_bytes / 2)
    if height * width * bytes_per_pixel <= budget:
        return max(height, width)
    floor = max(2 * overlap, TILE_MULTIPLE)
    side = max(min(int(np.sqrt(budget / bytes_per_pixel)), max_side) // TILE_MULTIPLE * TILE_MULTIPLE, floor)
    need = 0
    for length in (height, width):
        count = len(tile_starts(length, side, min(overlap, side // 2)))
        need = max(need, -(-(length + (count - 1) * overlap) // count))  # `count` tiles of this side cover it
    return max(min(side, -(-need // TILE_MULTIPLE) * TILE_MULTIPLE), floor)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by >= ``overlap``."""
    if tile >= length:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(length: int, overlap_before: int, overlap_after: int) -> np.ndarray:
    """1-D weight: raised cosine rising over the first/last overlaps, 1 elsewhere; strictly > 0."""
    w = np.ones(length, dtype=np.float64)
    for n, sl in ((overlap_before, slice(None)), (overlap_after, slice(None, None, -1))):
        if n > 0:
            x = (np.arange(n) + 0.5) / n
            w[sl][:n] = np.minimum(w[sl][:n], 0.5 - 0.5 * np.cos(np.pi * x))
    return w


def run_tiled(fn: Callable[[np.ndarray], np.ndarray], burst: np.ndarray, tile: int, overlap: int = 32,
              progress: bool = False) -> np.ndarray:
    """Apply ``fn`` tile by tile: burst (..., H, W) -> fn's output (..., H, W), blended.

    ``fn`` maps an (..., h, w) array to an (..., h, w) array (its leading axes may differ from the
    input's, e.g. a burst (N, h, w) -> an image (h, w)). Each tile is weighted by a raised-cosine
    ramp across the overlaps with its neighbours (not at the image border) and the weights are
    normalised, so the tiles cross-fade smoothly.
    """
    height, width = burst.shape[-2:]
    if tile < 1 or overlap < 0:
        raise BurstKPNError(f"tile must be positive and overlap non-negative, got tile={tile}, overlap={overlap}")
    overlap = min(overlap, tile // 2)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    th, tw = min(tile, height), min(tile, width)
    out = weight = None
    from tqdm import tqdm

    with tqdm(total=len(ys) * len(xs), desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
        for iy, y in enumerate(ys):
            wy = _ramp(th, _overlap(ys, iy, th), _overlap(ys, iy + 1, th))
            for ix, x in enumerate(xs):
                wx = _ramp(tw, _overlap(xs, ix, tw), _overlap(xs, ix + 1, tw))
                result = np.asarray(fn(burst[..., y : y + th, x : x + tw]))
                if result.shape[-2:] != (th, tw):
                    raise ValueError(f"tile function returned {result.shape}, expected (..., {th}, {tw})")
                if out is None:
                    out = np.zeros((*result.shape[:-2], height, width), dtype=np.float64)
                    weight = np.zeros((height, width), dtype=np.float64)
                w2 = wy[:, None] * wx[None, :]
                out[..., y : y + th, x : x + tw] += result * w2
                weight[y : y + th, x : x + tw] += w2
                bar.update()
    return (out / weight).astype(np.float32)


def _overlap(starts: list[int], i: int, size: int) -> int:
    """Overlap between tile ``i - 1`` and tile ``i`` (0 at the image border)."""
    if i <= 0 or i >= len(starts):
        return 0
    return starts[i - 1] + size - starts[i]
