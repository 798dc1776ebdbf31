"""Kernel inspection (METHOD §2): what the network did with each frame of one grayscale burst.

Pure functions over arrays: `inspect_burst` runs a KPN through `models.kpn.predict` and keeps its
kernels; `contributions` sums each frame's kernel (how much frame i feeds the merge at pixel p; a
model with a coarse spatial stage then filters that merge, the same for every frame);
`choose_pixels` picks an edge, a flat area and the most misaligned spot from the frames alone
(never from the model's weights, so the kernels shown there are evidence, not a tautology).
Drawing lives in `burstkpn.viz`, files at the CLI's edge (`commands/inspect.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel

MAX_PIXELS = 1_000_000  # kernels cost 4·N·K² bytes per pixel (800 MB per megapixel at N=8, K=5)
WINDOW = 7  # side of the local windows used to choose pixels


@dataclass
class Inspection:
    """One burst through a KPN.

    frames (N, H, W): the frames the network saw (pre-aligned if its config says so), linear;
    kernels (N, K, K, H, W); output, noise_map (H, W) linear; contributions (N, H, W) (Σ over taps;
    with a blend toward the mean, the effective weight (1 − b)·Σ taps + b/n); dominant (H, W) int: the
    frame with the largest contribution; residual (H, W): output − reference; blend (H, W) the weight b
    of the frames' mean in the output (models with ``mean_blend`` or ``agreement_blend``), else None; noise_gain
    (H, W) the factor on the noise map the kernels were told (models with ``noise_gain``), else None; refine (H, W)
    the strength s of the last spatial stage (models with ``refine``: output = merge + s·(k ⊛ merge − merge), so
    the contributions are those of the merge before it), else None.
    """

    frames: np.ndarray
    kernels: np.ndarray
    output: np.ndarray
    noise_map: np.ndarray
    contributions: np.ndarray
    dominant: np.ndarray
    residual: np.ndarray
    blend: np.ndarray | None = None
    noise_gain: np.ndarray | None = None
    refine: np.ndarray | None = None


def flip_inspection(ins: Inspection, axes: tuple[int, ...]) -> Inspection:
    """The same inspection seen through flips of the image (``axes``: -2 rows, -1 columns): every map is
    flipped, and so are the kernels' taps (a tap that reads the pixel to the right reads the one to the left
    in the flipped image). Used to show a joint model's RGGB-frame result on a mosaic of another pattern."""
    if not axes:
        return ins
    taps = tuple({-2: -4, -1: -3}[a] for a in axes)  # kernels (N, K, K, H, W): the tap axes before H, W

    def flip(a):
        return None if a is None else np.ascontiguousarray(np.flip(a, axes))

    kernels = np.ascontiguousarray(np.flip(ins.kernels, axes + taps))
    return Inspection(flip(ins.frames), kernels, flip(ins.output), flip(ins.noise_map), flip(ins.contributions),
                      flip(ins.dominant), flip(ins.residual), flip(ins.blend), flip(ins.noise_gain), flip(ins.refine))


def contributions(kernels: np.ndarray) -> np.ndarray:
    """(N, K, K, H, W) -> (N, H, W): each frame's total weight at each output pixel."""
    if kernels.ndim != 5 or kernels.shape[1] != kernels.shape[2]:
        raise BurstKPNError(f"expected kernels of shape (N, K, K, H, W), got {kernels.shape}")
    return kernels.sum(axis=(1, 2))


def inspect_burst(model, frames: np.ndarray, noise: NoiseLevel, plane: int = 0) -> Inspection:
    """Run a KPN on one grayscale burst (N, H, W) linear and keep everything it predicted.

    A joint colour/raw model (`models.planar`) takes all planes, (C, N, H, W), and the inspection is of
    plane ``plane``: its frames as the network saw them, its kernels, its output (the network sees every
    plane; each plane has its own kernels).
    """
    import torch

    from burstkpn.models.kpn import predict

    if getattr(model.config, "kind", "") == "dpn":
        raise BurstKPNError("inspect needs a kernel prediction network; this model is a DPN (it predicts pixels, not kernels)")
    planes = getattr(model.config, "planes", None)
    want = 3 if planes is None else 4
    if frames.ndim != want or (planes is not None and frames.shape[0] != planes):
        what = "(N, H, W) grayscale burst" if planes is None else f"({planes}, N, H, W) burst of planes"
        raise BurstKPNError(f"expected one {what}, got {frames.shape}")
    if planes is not None and not 0 <= plane < planes:
        raise BurstKPNError(f"plane {plane} is out of range for a {planes}-plane model")
    h, w = frames.shape[-2:]
    if h * w > MAX_PIXELS:
        raise BurstKPNError(f"inspect keeps every pixel's kernels; {w}x{h} is over {MAX_PIXELS} px: pass --crop X,Y,W,H")
    x = torch.from_numpy(np.ascontiguousarray(frames, np.float32))[None]
    with torch.inference_mode():
        if planes is None:
            out = predict(model, x, noise.sigma_read, noise.sigma_shot)
            pick = lambda t: t[0]  # noqa: E731
        else:
            from burstkpn.models.planar import predict_planar

            out = predict_planar(model, x, noise.sigma_read, noise.sigma_shot)
            pick = lambda t: t[0, plane]  # noqa: E731
    seen = pick(out["burst"]).numpy()
    kernels = pick(out["kernels"]).float().numpy()
    output = pick(out["output"]).float().numpy()
    contrib = contributions(kernels)
    blend = None
    for name in ("blend", "agreement"):  # both toward the mean: kept shares multiply, (1 - b)(1 - a)
        if name in out:
            b = pick(out[name]).float().numpy()
            blend = b if blend is None else 1 - (1 - blend) * (1 - b)
    if blend is not None:  # the output is (1 - b)·kernels' merge + b·mean of the valid frames
        valid = out["valid"][0].float().numpy()
        contrib = (1 - blend) * contrib + blend * (valid / max(valid.sum(), 1))[:, None, None]
    if "reference" in out:  # then (1 - r)·that + r·the reference frame
        r = pick(out["reference"]).float().numpy()
        contrib = (1 - r) * contrib
        contrib[0] += r
    noise_map = np.sqrt(noise.sigma_read**2 + noise.sigma_shot * np.clip(seen[0], 0, None))
    gain = pick(out["noise_gain"]).float().numpy() if "noise_gain" in out else None
    refine = pick(out["refine"]).float().numpy() if "refine" in out else None
    return Inspection(seen, kernels, output, noise_map.astype(np.float32), contrib,
                      contrib.argmax(axis=0), output - seen[0], blend, gain, refine)


def misalignment(frames: np.ndarray, noise_map: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """(N, H, W) -> (N, H, W): local mean |frame_i − reference| over the noise std (≈ 0.8 where aligned).

    Row 0 (the reference against itself) is zero.
    """
    from scipy.ndimage import uniform_filter

    diff = np.abs(frames - frames[:1]) / np.maximum(noise_map, 1e-6)
    return uniform_filter(diff, size=(1, window, window), mode="nearest")


def choose_pixels(frames: np.ndarray, noise_map: np.ndarray, margin: int) -> list[tuple[str, tuple[int, int]]]:
    """An edge, a flat area and the most misaligned spot of a burst (N, H, W), as (label, (x, y)).

    Edge: the strongest gradient of the smoothed reference; flat: the lowest local variance;
    misaligned: the largest `misalignment` of any non-reference frame. ``margin`` keeps pixels
    that far from the border (so the kernel's footprint stays inside the image).
    """
    from scipy.ndimage import gaussian_filter, uniform_filter

    h, w = frames.shape[1:]
    if h <= 2 * margin or w <= 2 * margin:
        raise BurstKPNError(f"a {w}x{h} burst is too small to choose pixels {margin} px from its border")
    ref = gaussian_filter(frames[0].astype(np.float64), 1.5)
    gy, gx = np.gradient(ref)
    local_var = uniform_filter(ref**2, WINDOW) - uniform_filter(ref, WINDOW) ** 2
    scores = {
        "edge": np.hypot(gx, gy),
        "flat": -local_var,
    }
    if frames.shape[0] > 1:  # a single-frame model has no alternate frame to be misaligned
        scores["misaligned"] = misalignment(frames, noise_map)[1:].max(axis=0)
    inner = np.zeros((h, w), bool)
    inner[margin : h - margin, margin : w - margin] = True
    chosen = []
    for label, score in scores.items():
        y, x = np.unravel_index(np.where(inner, score, -np.inf).argmax(), score.shape)
        chosen.append((label, (int(x), int(y))))
    return chosen


def parse_pixels(items: list[str], width: int, height: int) -> list[tuple[str, tuple[int, int]]]:
    """``["40,12", ...]`` -> [("x=40 y=12", (40, 12)), ...]; one-line errors for bad or outside pixels."""
    pixels = []
    for item in items:
        try:
            x, y = (int(v) for v in item.split(","))
        except ValueError:
            raise BurstKPNError(f"--pixels takes x,y pairs of integers (e.g. 40,12), got {item!r}") from None
        if not (0 <= x < width and 0 <= y < height):
            raise BurstKPNError(f"--pixels {item}: outside the {width}x{height} image")
        pixels.append((f"x={x} y={y}", (x, y)))
    return pixels


def parse_crop(text: str, width: int, height: int) -> tuple[slice, slice]:
    """``"X,Y,W,H"`` -> (rows, cols) slices inside a ``width`` x ``height`` image."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise BurstKPNError(f"--crop takes X,Y,W,H integers (e.g. 100,80,256,256), got {text!r}") from None
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise BurstKPNError(f"--crop {text}: not inside the {width}x{height} image")
    return slice(y, y + h), slice(x, x + w)


def centre_crop(frames: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W) -> (N, ≤side, ≤side): the central window (for reports on large images)."""
    h, w = frames.shape[-2:]
    top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return frames[..., top : top + side, left : left + side]


def kernels_at(ins: Inspection, pixels: list[tuple[str, tuple[int, int]]]) -> np.ndarray:
    """(P, N, K, K): every frame's kernel at each chosen pixel."""
    return np.stack([ins.kernels[..., y, x] for _, (x, y) in pixels])
