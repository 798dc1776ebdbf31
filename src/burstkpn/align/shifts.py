"""Global burst alignment: sub-pixel phase correlation against the reference, then a bilinear warp.

Shared by the `aligned-average` baseline, the KPN's pre-alignment stage (`models.kpn.predict`) and
the tile alignment's snap (`burstkpn.align.tiles`). Shift convention (the same as `burstkpn.synth`): frame i at pixel p shows the
reference scene at ``p + shift_i``; aligning resamples frame i at ``p - shift_i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from burstkpn.errors import BurstKPNError


def _check_burst(burst: torch.Tensor) -> None:
    if not isinstance(burst, torch.Tensor) or burst.ndim != 4:
        shape = tuple(burst.shape) if hasattr(burst, "shape") else type(burst).__name__
        raise BurstKPNError(f"expected a burst tensor of shape (B, N, H, W), got {shape}")


def estimate_global_shifts(burst: torch.Tensor, lowpass: float = 0.25) -> torch.Tensor:
    """Per-frame translation to the reference by (partially whitened) phase correlation.

    burst: (B, N, H, W) linear. Returns (B, N, 2) float32 (dy, dx) in pixels; frame 0 is zero.
    The cross-power spectrum is divided by its magnitude to the power ``WHITENING`` (1 would be plain phase
    correlation, which gives every frequency the same weight, noise-dominated ones included) and weighted
    by a Gaussian low-pass (``lowpass`` is its σ as a fraction of the Nyquist frequency), which smooths the
    correlation surface so that noisy high frequencies do not decide the peak; a parabola through the peak
    gives the sub-pixel part. A twin surface leaves out the lowest frequencies (under ``LOW_CUT`` cycles per
    frame), whose broad hump at the zero shift buries a large shift's peak on bright, smooth frames; it adds
    ``LOW_CUT_PEAKS`` candidates. The frames are tapered by a Tukey window (flat over the middle half): a Hann
    window weighs the centre so much that a subject moving there outvotes a still background. Among the
    strongest peaks and the zero shift, the one that leaves the smallest difference between 4x4 block means
    wins (`_robust_peak`).
    """
    _check_burst(burst)
    b, n, h, w = burst.shape
    x = burst.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    window = torch.outer(tukey_window(h), tukey_window(w)).to(x)
    spectrum = torch.fft.rfft2(x * window)
    cross = spectrum[:, :1] * spectrum.conj()  # reference against every frame
    cross = cross / (cross.abs() ** WHITENING + 1e-12)
    fy = torch.fft.fftfreq(h, device=x.device)[:, None] * 2
    fx = torch.fft.rfftfreq(w, device=x.device)[None, :] * 2
    freq2 = fy**2 + fx**2  # squared frequency, as a fraction of the Nyquist frequency
    cross = cross * torch.exp(-freq2 / (2 * lowpass**2))
    cut = 2 * LOW_CUT / min(h, w)  # LOW_CUT cycles per frame, as a fraction of the Nyquist frequency
    corrs = torch.fft.irfft2(torch.stack([cross, cross * (1 - torch.exp(-freq2 / (2 * cut**2)))]), s=(h, w))
    py, px, surface = _robust_peak(burst.float(), corrs)  # corrs: (2, B, N, H, W), peaks at +shift
    corr = torch.where((surface == 1)[..., None, None], corrs[1], corrs[0])  # the winner's surface, for the parabola

    def parabola(axis_len: int, along_y: bool) -> torch.Tensor:
        idx = py if along_y else px
        vals = []
        for d in (-1, 0, 1):
            qy = (py + d) % h if along_y else py
            qx = px if along_y else (px + d) % w
            vals.append(corr.flatten(-2).gather(-1, (qy * w + qx)[..., None])[..., 0])
        left, mid, right = vals
        denom = left - 2 * mid + right
        offset = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / denom, torch.zeros_like(denom))
        pos = idx.float() + offset.clamp(-0.5, 0.5)
        return torch.where(pos > axis_len / 2, pos - axis_len, pos)

    shifts = torch.stack([parabola(h, True), parabola(w, False)], dim=-1)
    shifts[:, 0] = 0
    return shifts


def warp_frames(burst: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Resample every frame onto the reference: out[b, i](p) = burst[b, i](p - shifts[b, i]).

    burst: (B, N, H, W); shifts: (B, N, 2) (dy, dx) pixels. Bilinear, edges replicated.
    """
    _check_burst(burst)
    b, n, h, w = burst.shape
    ys = torch.arange(h, dtype=torch.float32, device=burst.device)
    xs = torch.arange(w, dtype=torch.float32, device=burst.device)
    src_y = ys[None, None, :, None] - shifts[..., 0, None, None].float()  # (B, N, H, 1)
    src_x = xs[None, None, None, :] - shifts[..., 1, None, None].float()  # (B, N, 1, W)
    grid = torch.stack(
        [(2 * src_x + 1) / w - 1 + 0 * src_y, (2 * src_y + 1) / h - 1 + 0 * src_x], dim=-1
    )  # (B, N, H, W, 2), align_corners=False coordinates
    out = F.grid_sample(
        burst.float().reshape(b * n, 1, h, w), grid.reshape(b * n, h, w, 2),
        mode="bilinear", padding_mode="border", align_corners=False,
    )
    return out.reshape(b, n, h, w).to(burst.dtype)


def tukey_window(length: int, taper: float = 0.5) -> torch.Tensor:
    """(length,) 1 over the middle, raised-cosine tapers over ``taper``/2 of the length at each end."""
    x = torch.linspace(0, 1, length, dtype=torch.float64)
    edge = torch.minimum(x, 1 - x) / (taper / 2)  # < 1 inside the tapers
    return torch.where(edge < 1, 0.5 * (1 - torch.cos(torch.pi * edge)), torch.ones_like(x)).float()


WHITENING = 0.5  # |cross-power|**-0.5: between phase correlation (1) and plain correlation (0); on 128-px test
# bursts at the paper's gain 8 it halves the frames found more than 2 px off (docs/experiments/alignment.md)
PEAKS = 16  # candidate shifts per frame (the correlation's highest local maxima), the zero shift besides
LOW_CUT = 6.0  # cycles per frame: the second surface's low cut (a bright, smooth 64-px burst at base ISO put
# 10 % of its frames more than 2 px off without it, 1 % with it; docs/experiments/alignment.md)
LOW_CUT_PEAKS = 8  # candidates the low-cut surface adds
LOW_CUT_MARGIN = 0.5  # ... each chosen only with a block difference under this share of every other's
PEAK_FLOOR = 0.1  # a candidate's correlation, at least this fraction of the highest (a still background
# behind a subject moving at the centre measured 0.16)
PEAK_MARGIN = 0.9  # another candidate replaces the highest only with a block difference this much smaller
SPREAD_PENALTY = 2.0  # a candidate's score is raised by this many of its chance spreads (fewer blocks, more)
SCORE_BLOCK = 4  # candidates are scored on the means of 4x4 blocks: the noise falls 4x, a misalignment stays


def max_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) -> the same, each pixel the maximum of its size x size neighbourhood (odd size, -inf outside).
    Separable running maxima over shifted views: equal to ``F.max_pool2d(x, size, 1, size // 2)`` bit for bit,
    and 4-8x faster on one-channel maps (measured on 8 x 450² phase-correlation surfaces, 1 thread)."""
    r = size // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (r, r, r, r), value=-torch.inf)
    rows = padded[..., :, :w]
    for d in range(1, size):
        rows = torch.maximum(rows, padded[..., :, d : d + w])
    out = rows[..., :h, :]
    for d in range(1, size):
        out = torch.maximum(out, rows[..., d : d + h, :])
    return out


def _robust_peak(burst: torch.Tensor, corrs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """burst (B, N, H, W), corrs (2, B, N, H, W): the correlation surface and its low-cut twin ->
    (py, px, surface) (B, N) long: the chosen peak and the surface it came from.

    The candidates are the ``PEAKS`` highest local maxima (5x5) of the first surface, the ``LOW_CUT_PEAKS``
    highest of the second, each kept if its correlation is within ``PEAK_FLOOR`` of its surface's highest and
    the frames overlap by more than a quarter, and the zero shift (always).
    Each is scored by the mean squared difference between the reference and the moved frame over the
    ``SCORE_BLOCK``-px blocks both cover, compared as block means: at high noise a per-pixel difference is all
    noise for every candidate, block means keep the misalignment and lose most of the noise. The score is
    raised by ``SPREAD_PENALTY`` times its chance spread, sqrt(2 / blocks). The first surface's highest peak
    stays unless another candidate scores below ``PEAK_MARGIN`` of its score.
    """
    b, n, h, w = corrs.shape[1:]
    tops, flats, surfaces = [], [], []
    for surface, count in enumerate((PEAKS, LOW_CUT_PEAKS)):
        corr = corrs[surface]
        local_max = corr == max_filter(corr, 5)
        scores = torch.where(local_max, corr, torch.full_like(corr, -torch.inf)).flatten(-2)
        top, flat = scores.topk(min(count, h * w), dim=-1)  # (B, N, P)
        # the floor is relative to each surface's own highest peak; a surface without a positive peak (a constant
        # frame: every pixel ties) offers no candidate
        highest = top[..., :1]
        relative = torch.where(highest > 0, top / highest.clamp(min=1e-30), torch.zeros_like(top))
        tops.append(torch.where(torch.isfinite(top), relative, -torch.inf))
        flats.append(flat)
        surfaces.append(torch.full_like(flat, surface))
    # the zero shift: still bursts are common
    top = torch.cat(tops + [torch.ones_like(tops[0][..., :1])], dim=-1)
    flat = torch.cat(flats + [torch.zeros_like(flats[0][..., :1])], dim=-1)
    surface = torch.cat(surfaces + [torch.zeros_like(surfaces[0][..., :1])], dim=-1)
    py, px = flat // w, flat % w
    dy = torch.where(py > h // 2, py - h, py)  # signed shifts
    dx = torch.where(px > w // 2, px - w, px)
    k = min(SCORE_BLOCK, h, w)
    # block means at every offset (avg_pool at stride 1), so that a block of the moved frame is one gather
    means = F.avg_pool2d(burst.float().reshape(b * n, 1, h, w), k, stride=1).reshape(b, n, h - k + 1, w - k + 1)
    hm, wm = means.shape[-2:]
    ys = torch.arange(0, hm, k, device=burst.device)[:, None]  # the reference's blocks
    xs = torch.arange(0, wm, k, device=burst.device)[None, :]
    ref = means[:, :1, ::k, ::k]
    flat_means = means.flatten(-2)
    costs, counts = [], []  # each candidate's score and how many blocks it averages
    for c in range(top.shape[-1]):
        sy, sx = ys - dy[..., c, None, None], xs - dx[..., c, None, None]  # (B, N, hb, wb) source blocks
        inside = (sy >= 0) & (sy < hm) & (sx >= 0) & (sx < wm)
        index = sy.clamp(0, hm - 1) * wm + sx.clamp(0, wm - 1)
        moved = flat_means.gather(-1, index.flatten(-2)).reshape(index.shape)
        sq = torch.where(inside, (moved - ref).square(), torch.zeros_like(moved))
        cost = sq.flatten(-2).sum(-1) / inside.flatten(-2).sum(-1).clamp(min=1)
        overlap = (h - dy[..., c].abs()).clamp(min=0) * (w - dx[..., c].abs()).clamp(min=0)  # pixels both frames cover
        usable = (top[..., c] >= PEAK_FLOOR) & torch.isfinite(top[..., c]) & (overlap > h * w // 4)
        if c == top.shape[-1] - 1:
            usable = torch.ones_like(usable)  # the zero shift is a prior, not a peak: always a candidate
        costs.append(torch.where(usable, cost, torch.full_like(cost, torch.inf)))
        counts.append(inside.flatten(-2).sum(-1).clamp(min=1))
    costs, counts = torch.stack(costs, dim=-1), torch.stack(counts, dim=-1)  # (B, N, P + 1)
    # a score over m block means spreads by about sqrt(2 / m) of itself by chance, and the least of many
    # candidates is low by chance: a candidate that overlaps little averages fewer blocks, so it is charged
    # for it (measured: docs/experiments/alignment.md)
    costs = costs * (1 + SPREAD_PENALTY * (2 / counts.float()).sqrt())
    # the low-cut surface's candidates must beat every other candidate by a wide margin: at high noise they
    # are more chances for a spurious low score
    first = surface == 0
    plain = torch.where(first, costs, torch.full_like(costs, torch.inf)).amin(dim=-1, keepdim=True)
    costs = torch.where(first | (costs < LOW_CUT_MARGIN * plain), costs, torch.full_like(costs, torch.inf))
    best = costs.argmin(dim=-1)
    # keep the highest peak unless another explains clearly more of the frame
    best = torch.where(costs.gather(-1, best[..., None])[..., 0] < PEAK_MARGIN * costs[..., 0], best, torch.zeros_like(best))
    pick = best[..., None]
    return py.gather(-1, pick)[..., 0], px.gather(-1, pick)[..., 0], surface.gather(-1, pick)[..., 0]


def align_global(burst: torch.Tensor, integer: bool = False,
                 shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """burst (B, N, H, W) linear -> (aligned (B, N, H, W), shifts (B, N, 2) (dy, dx) pixels).

    Frame i of ``aligned`` is frame i resampled onto the reference; frame 0 is returned unchanged.
    ``integer``: round the shifts to whole pixels, so frames are moved, not interpolated (a bilinear
    warp low-passes each frame; the ≤ 0.5-px residual is left to whatever follows, e.g. a KPN's kernels).
    ``shifts``: known (B, N, 2) shifts to use instead of estimating them.
    """
    with torch.no_grad():
        shifts = estimate_global_shifts(burst) if shifts is None else shifts.to(burst.device).float()
        if integer:
            shifts = shifts.round()
        aligned = warp_frames(burst, shifts)
        aligned[:, 0] = burst[:, 0]
    return aligned, shifts


def select_frames(burst: torch.Tensor, count: int) -> torch.Tensor:
    """The reference and the ``count - 1`` alternate frames that align best to it.

    burst: (B, N, H, W) linear with N >= count. Returns (B, count) int64 frame indices in burst
    order, 0 first. Quality = mean squared difference to the reference after global alignment,
    low-passed (3x3 box) so that it measures misalignment more than noise, which all frames share.
    """
    _check_burst(burst)
    b, n = burst.shape[:2]
    if count >= n:
        return torch.arange(n, device=burst.device).expand(b, n)
    aligned, _ = align_global(burst)
    smooth = F.avg_pool2d(aligned.float().reshape(b * n, 1, *aligned.shape[-2:]), 3, stride=1)
    smooth = smooth.reshape(b, n, *smooth.shape[-2:])
    error = (smooth - smooth[:, :1]).square().mean(dim=(-2, -1))  # (B, N); 0 for the reference
    error[:, 0] = -1.0
    best = error.argsort(dim=1)[:, :count]
    return best.sort(dim=1).values
