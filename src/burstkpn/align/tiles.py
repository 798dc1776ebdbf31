"""HDR+ tile alignment (Hasinoff et al., SIGGRAPH Asia 2016; step by step in Monod, Delon & Veit,
IPOL 2021), used by the HDR+ merge baseline, the other aligned baselines and the real-burst path.

`align_tiles`: coarse-to-fine on a Gaussian pyramid; at each level every tile of the reference searches
a small window around the displacement inherited from the coarser level (L2 on coarse levels, L1 on the
finest, integer displacements). `snap_to_prior` keeps globally moving content on one shift per frame;
`aligned_stack` / `tile_align` resample every frame onto the reference by windowed overlap-add.
Everything is vectorised over tiles (and search offsets); Python loops run over levels, frames and,
in the search, bands of tile rows. No per-pixel index tensors: tiles are strided views or gathers of
whole row runs (`_window_starts`), and each search step reuses one cache-sized difference buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from burstkpn.align.shifts import estimate_global_shifts
from burstkpn.errors import BurstKPNError


@dataclass(frozen=True)
class TileAlignParams:
    """``levels`` runs fine -> coarse: (downsampling factor relative to the previous level, tile size,
    search radius), the IPOL defaults; ``tile``: the finest level's tile, half-overlapping."""

    tile: int = 16
    levels: tuple[tuple[int, int, int], ...] = ((1, 16, 1), (2, 16, 4), (4, 16, 4), (4, 8, 4))


DEFAULT = TileAlignParams()


# --- tiles -----------------------------------------------------------------------------------


def tile_origins(length: int, tile: int) -> torch.Tensor:
    """Tile origins with half overlap: 0, tile/2, ... while a whole tile fits."""
    return torch.arange(0, max(length - tile, 0) + 1, tile // 2)


def grid_tiles(frame: torch.Tensor, tile: int) -> torch.Tensor:
    """The tiles of one (H, W) frame on the half-overlap grid, undisplaced: an (Ty, Tx, tile, tile)
    strided view (no copy)."""
    frame = frame.contiguous()
    (h, w), (sy, sx), half = frame.shape, frame.stride(), tile // 2
    ty, tx = len(tile_origins(h, tile)), len(tile_origins(w, tile))
    return frame.as_strided((ty, tx, tile, tile), (half * sy, half * sx, sy, sx))


def _window_starts(frame: torch.Tensor, tile: int, disp: torch.Tensor, radius: int):
    """Where each tile's search window lies in one (H, W) frame, as runs of ``tile`` pixels.

    Returns (runs, starts): ``runs`` a (M, tile) overlapping view of the frame's rows with the columns
    edge-extended (``runs[m] = flat[m : m + tile]``), and ``starts`` (Ty, Tx, k, S) indices into it,
    k = 2 radius + 1, S = tile + 2 radius: run ``starts[ty, tx, j, u]`` is row u - radius of the tile's
    window at displacement ``disp`` (Ty, Tx, 2), shifted j - radius columns. Rows outside the frame
    are clamped (the edge repeats). The candidate tile at offset (i, j) is then the run block
    ``starts[ty, tx, j, i : i + tile]``, one gather of whole runs (`index_select`), not one index per
    pixel and offset.
    """
    h, w = frame.shape
    k = 2 * radius + 1
    pad = int(disp[..., 1].abs().max()) + radius if disp.numel() else radius
    wide = F.pad(frame[None], (pad, pad), mode="replicate")[0] if pad else frame.contiguous()  # (H, W + 2 pad)
    runs = wide.reshape(-1).as_strided((wide.numel() - tile + 1, tile), (1, 1))
    ys = (tile_origins(h, tile)[:, None, None] + disp[..., 0, None] + torch.arange(-radius, tile + radius)).clamp_(0, h - 1)
    x0 = tile_origins(w, tile)[None, :] + disp[..., 1] + (pad - radius)  # (Ty, Tx): window's first column in ``wide``
    starts = ys[:, :, None, :] * wide.shape[1] + (x0[..., None] + torch.arange(k))[..., None]  # (Ty, Tx, k, S)
    return runs, starts


def _windows(frame: torch.Tensor, tile: int, disp: torch.Tensor) -> torch.Tensor:
    """(Ty, Tx, tile, tile): each grid tile of one (H, W) frame at its own displacement ``disp``
    (Ty, Tx, 2), edges repeated."""
    runs, starts = _window_starts(frame, tile, disp, 0)
    return runs.index_select(0, starts.reshape(-1)).view(*disp.shape[:2], tile, tile)


def gather_tiles(frames: torch.Tensor, tile: int, disp: torch.Tensor) -> torch.Tensor:
    """Tiles of each frame on the half-overlap grid, each displaced by an integer vector.

    frames: (N, H, W); disp: (N, Ty, Tx, ..., 2) int (dy, dx). Returns (N, Ty, Tx, ..., tile, tile);
    pixels outside the frame repeat the edge.
    """
    if disp.ndim == 4:  # one displacement per tile: a window gather per frame
        return torch.stack([_windows(frames[i], tile, disp[i]) for i in range(frames.shape[0])])
    n, h, w = frames.shape
    oy, ox = tile_origins(h, tile), tile_origins(w, tile)
    extra = disp.ndim - 4  # search-offset dimensions between the grid and (dy, dx)
    ones = (1,) * extra
    r = torch.arange(tile)
    ys = oy.view(len(oy), 1, *ones, 1, 1) + r.view(tile, 1) + disp[..., 0, None, None]
    xs = ox.view(1, len(ox), *ones, 1, 1) + r.view(1, tile) + disp[..., 1, None, None]
    ys, xs = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
    idx = torch.arange(n).view(n, *(1,) * (ys.ndim - 1))
    return frames[idx, ys, xs]


def shifted(frame: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """One (H, W) frame displaced as a whole by an integer (dy, dx): out[p] = frame[p + disp], edges repeated."""
    h, w = frame.shape
    ys = (torch.arange(h) + int(disp[0])).clamp_(0, h - 1)
    xs = (torch.arange(w) + int(disp[1])).clamp_(0, w - 1)
    return frame[ys[:, None], xs[None, :]]


def _gaussian_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W) -> Gaussian blur (σ = factor / 2) then every ``factor``-th pixel."""
    if factor == 1:
        return x
    sigma = factor / 2
    radius = int(np.ceil(2 * sigma))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(x[:, None], (radius, radius, radius, radius), mode="replicate")
    # strided: only the kept rows and columns are computed (the same sums as blurring everything first)
    y = F.conv2d(F.conv2d(y, k.view(1, 1, -1, 1), stride=(factor, 1)), k.view(1, 1, 1, -1), stride=(1, factor))
    return y[:, 0]


SEARCH_CHUNK_BYTES = 2**21  # one search step's difference buffer (a band of tile rows x offsets): cache-sized
FRAME_WORKERS = 8  # frames aligned at once at most (each with its own search buffers)


def _map_frames(fn: Callable[[int], torch.Tensor | None], frames: Iterable[int]) -> list:
    """``[fn(i) for i in frames]``, the frames spread over as many Python threads as torch has intra-op
    threads (at most `FRAME_WORKERS`), each running its torch ops on one thread.

    The per-frame work is many small, memory-bound ops: one OpenMP team per op costs a barrier each,
    and on shared cores a barrier waits for a descheduled thread (measured: a 544² tile's search 17x
    slower with 2 threads than with 1 on a loaded 2-core machine). Whole frames per thread need none.
    """
    frames = list(frames)
    threads = torch.get_num_threads()
    workers = min(threads, FRAME_WORKERS, len(frames))
    torch.set_num_threads(1)  # new threads take this too (torch initialises a thread's count lazily)
    try:
        if workers <= 1:
            return [fn(i) for i in frames]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, frames))
    finally:
        torch.set_num_threads(threads)


def _search(level: torch.Tensor, tile: int, radius: int, init: torch.Tensor, norm: int) -> torch.Tensor:
    """Best integer displacement per tile within ``radius`` of ``init`` (N, Ty, Tx, 2) on one level.

    Per frame and band of tile rows: one gather of the rows of every tile's search window, one copy per
    horizontal offset (`_window_starts`), into a reused buffer; every offset's candidate tile is then a
    contiguous block of it, differenced with the reference tile into a second reused buffer. Each
    (tile, offset) distance is the same float reduction over a contiguous (tile, tile) block as
    differencing gathered tiles, so the distances and their argmin (the first minimum in row-major
    offset order) are bitwise those of the straightforward version (tests/test_align.py keeps it).
    """
    k, side = 2 * radius + 1, tile + 2 * radius
    d = torch.arange(-radius, radius + 1)
    offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)  # (O, 2), O = k²
    ref = grid_tiles(level[0], tile).contiguous()[:, :, None, None]  # (Ty, Tx, 1, 1, t, t)
    ty, tx = ref.shape[:2]
    band = max(1, min(ty, SEARCH_CHUNK_BYTES // (4 * tx * k * k * tile * tile)))  # tile rows per step

    def frame(i: int) -> torch.Tensor:
        win = torch.empty(band * tx * k * side, tile)
        buf = torch.empty(band, tx, k, k, tile, tile)
        dist = torch.empty(ty, tx, k, k)
        runs, starts = _window_starts(level[i], tile, init[i], radius)  # starts: (Ty, Tx, k, S)
        for a in range(0, ty, band):
            rows = min(band, ty - a)
            part = torch.index_select(runs, 0, starts[a : a + rows].reshape(-1), out=win[: rows * tx * k * side])
            part = part.view(rows, tx, k, side, tile)
            s0, s1, s2, s3, s4 = part.stride()
            # cand[.., i, j] = part[.., j, i : i + tile]: each (tile, tile) block is contiguous
            cand = part.as_strided((rows, tx, k, k, tile, tile), (s0, s1, s3, s2, s3, s4))
            diff = torch.sub(cand, ref[a : a + rows], out=buf[:rows])
            diff.abs_() if norm == 1 else diff.square_()
            torch.sum(diff, (-2, -1), out=dist[a : a + rows])
        return init[i] + offsets[dist.view(ty, tx, k * k).argmin(-1)]

    return torch.stack([init[0], *_map_frames(frame, range(1, level.shape[0]))])


def _upsample_disp(disp: torch.Tensor, coarse_tile: int, factor: int, shape: tuple[int, int], tile: int) -> torch.Tensor:
    """Displacements of a coarse tile grid -> the finer grid of ``shape``: nearest coarse tile, x factor."""
    out = []
    for axis, length in enumerate(shape):
        centres = (tile_origins(length, tile) + tile / 2) / factor
        idx = torch.round((centres - coarse_tile / 2) / (coarse_tile // 2)).long()
        out.append(idx.clamp(0, disp.shape[1 + axis] - 1))
    return disp[:, out[0][:, None], out[1][None, :]] * factor


def align_tiles(frames: torch.Tensor, params: TileAlignParams = DEFAULT) -> torch.Tensor:
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
        grid = (len(tile_origins(level.shape[1], tile)), len(tile_origins(level.shape[2], tile)))
        if disp is None:
            disp = torch.zeros(level.shape[0], *grid, 2, dtype=torch.long)
        else:
            disp = _upsample_disp(disp, levels[k + 1][0], factors[k + 1], tuple(level.shape[1:]), tile)
        disp = _search(level, tile, radius, disp, norm=1 if k == 0 else 2)
    return disp


def raised_cosine(tile: int) -> torch.Tensor:
    """(tile, tile) window; copies shifted by tile/2 sum to one."""
    x = torch.arange(tile, dtype=torch.float32)
    w = 0.5 - 0.5 * torch.cos(2 * torch.pi * (x + 0.5) / tile)
    return w[:, None] * w[None, :]


def pad_for_tiles(frames: torch.Tensor, tile: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, H, W) so that half-overlap tiles cover every pixel twice; returns the top-left pad."""
    _, h, w = frames.shape
    half = tile // 2
    hp, wp = -(-(h + tile) // half) * half, -(-(w + tile) // half) * half
    pads = (half, wp - w - half, half, hp - h - half)
    mode = "reflect" if max(pads) < min(h, w) else "replicate"
    return F.pad(frames[None], pads, mode=mode)[0], (half, half)


def overlap_add(tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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
    ref = grid_tiles(frames[0], tile)
    out = disp.clone()

    def frame(i: int) -> None:  # frame by frame: memory stays bounded
        own = (_windows(frames[i], tile, disp[i]) - ref).abs_().sum((-2, -1))
        at_prior = (grid_tiles(shifted(frames[i], prior[i]), tile) - ref).abs_().sum((-2, -1))  # one shift: a view
        out[i] = torch.where((at_prior <= (1 + margin) * own)[..., None], prior[i].expand_as(disp[i]), disp[i])

    _map_frames(frame, range(1, frames.shape[0]))
    return out


def tile_displacements(frames: torch.Tensor, params: TileAlignParams = DEFAULT, snap_margin: float | None = None):
    """(N, H, W) -> (frames padded for tiles, their top-left pad, (N, Ty, Tx, 2) tile displacements).

    ``snap_margin``: if given, tiles whose match is within this relative margin of the frame's rounded
    global shift (`burstkpn.align.shifts.estimate_global_shifts`) take that shift (`snap_to_prior`).
    """
    padded, origin = pad_for_tiles(frames, params.tile)
    disp = align_tiles(padded, params)
    if snap_margin is not None and frames.shape[0] > 1:
        # disp = -shift in the project's convention (see `align_tiles`)
        prior = -estimate_global_shifts(frames[None])[0].round().long()
        disp = snap_to_prior(padded, disp, prior, params.tile, snap_margin)
    return padded, origin, disp


def aligned_stack(burst: np.ndarray, params: TileAlignParams = DEFAULT, snap_margin: float | None = None) -> np.ndarray:
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
        padded = guide if channels.shape[0] == 1 else pad_for_tiles(channels[c], params.tile)[0]

        def frame(i: int) -> None:  # frame by frame: less memory
            tiles = _windows(padded[i], params.tile, disp[i]).mul_(window)
            out[c, i] = overlap_add(tiles[None], tuple(padded.shape[1:]))[0, top : top + h, left : left + w]

        _map_frames(frame, range(padded.shape[0]))
    return (out if stack.ndim == 4 else out[0]).numpy()


TILE_SNAP_MARGIN = 0.1  # see `tile_align`; chosen on train-built bursts (scripts/experiments/tune_tile_snap.py, docs/denoising.md)


def tile_align(frames: np.ndarray, snap_margin: float | None = TILE_SNAP_MARGIN) -> np.ndarray:
    """(n, H, W) or (C, n, H, W) -> the same, every frame resampled onto frame 0 by HDR+ tile alignment
    (`aligned_stack`; for C channels of one burst, one alignment found on their
    mean serves all). Frame 0 is returned unchanged. Local motion that one global shift cannot undo is
    followed tile by tile: the real-burst path (`burstkpn denoise`) runs it before the model.

    ``snap_margin``: a tile keeps its frame's rounded global shift unless its own match is better by more
    than this relative margin (`snap_to_prior`), so that globally moving content is shifted
    whole, leaving a uniform sub-pixel residual for the model's own global alignment; ``None`` is plain
    HDR+ tile alignment (each tile its own integer displacement).
    """
    aligned = aligned_stack(frames, snap_margin=snap_margin)
    aligned[..., 0, :, :] = frames[..., 0, :, :]
    return aligned.astype(np.float32, copy=False)
