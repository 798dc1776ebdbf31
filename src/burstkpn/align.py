"""Global burst alignment: sub-pixel phase correlation against the reference, then a bilinear warp.

Shared by the `aligned-average` baseline, the KPN's optional pre-alignment stage and the
real-burst path. Shift convention (the same as `burstkpn.synth`): frame i at pixel p shows the
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
    """Per-frame translation to the reference by phase correlation.

    burst: (B, N, H, W) linear. Returns (B, N, 2) float32 (dy, dx) in pixels; frame 0 is zero.
    The normalised cross-power spectrum is weighted by a Gaussian low-pass (``lowpass`` is its
    σ as a fraction of the Nyquist frequency), which smooths the correlation surface so that noisy
    high frequencies do not decide the peak; a parabola through the peak gives the sub-pixel part.
    """
    _check_burst(burst)
    b, n, h, w = burst.shape
    x = burst.float()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False)).to(x)
    spectrum = torch.fft.rfft2(x * window)
    cross = spectrum[:, :1] * spectrum.conj()  # reference against every frame
    cross = cross / (cross.abs() + 1e-12)
    fy = torch.fft.fftfreq(h, device=x.device)[:, None] * 2
    fx = torch.fft.rfftfreq(w, device=x.device)[None, :] * 2
    cross = cross * torch.exp(-(fy**2 + fx**2) / (2 * lowpass**2))
    corr = torch.fft.irfft2(cross, s=(h, w))  # (B, N, H, W), peak at +shift
    flat = corr.flatten(-2).argmax(-1)
    py, px = flat // w, flat % w

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


def align_global(burst: torch.Tensor, integer: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """burst (B, N, H, W) linear -> (aligned (B, N, H, W), shifts (B, N, 2) (dy, dx) pixels).

    Frame i of ``aligned`` is frame i resampled onto the reference; frame 0 is returned unchanged.
    ``integer``: round the shifts to whole pixels, so frames are moved, not interpolated (a bilinear
    warp low-passes each frame; the ≤ 0.5-px residual is left to whatever follows, e.g. a KPN's kernels).
    """
    with torch.no_grad():
        shifts = estimate_global_shifts(burst)
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
