"""Figures as PNG bytes (matplotlib, Agg backend, imported lazily); `save_figure` writes one atomically.

Every function takes arrays and returns the PNG's bytes, so the same picture can be written as a
file (`burstkpn inspect`) or embedded in an HTML report (`burstkpn.report`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from burstkpn.io.images import atomic_output
from burstkpn.metrics import to_display

DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def image_png(linear: np.ndarray, white_level: float = 1.0) -> bytes:
    """(H, W) or (H, W, 3) linear -> 8-bit PNG bytes in the metrics' display space (sRGB curve)."""
    import imageio.v3 as iio

    display = np.round(to_display(linear, white_level, border=0) * 255).astype(np.uint8)
    return iio.imwrite("<bytes>", display, extension=".png")


def kernel_grid(reference: np.ndarray, kernels: np.ndarray, pixels, white_level: float = 1.0, zoom: int = 16) -> bytes:
    """Rows: chosen pixels; first column: the reference around the pixel; then each frame's K×K kernel.

    reference (H, W) linear; kernels (P, N, K, K); pixels: [(label, (x, y))]. One symmetric colour
    scale for all kernels (weights may be negative: blue < 0 < red).
    """
    plt = pyplot()
    p, n, k, _ = kernels.shape
    limit = float(np.abs(kernels).max()) or 1.0
    display = to_display(reference, white_level, border=0)
    fig, axes = plt.subplots(p, n + 1, figsize=(1.25 * (n + 1) + 0.8, 1.7 * p), squeeze=False)
    for row, (label, (x, y)) in enumerate(pixels):
        ax = axes[row, 0]
        h, w = display.shape
        top, left = min(max(y - zoom, 0), max(h - 2 * zoom, 0)), min(max(x - zoom, 0), max(w - 2 * zoom, 0))
        ax.imshow(display[top : top + 2 * zoom, left : left + 2 * zoom], cmap="gray", vmin=0, vmax=1)
        ax.add_patch(plt.Rectangle((x - left - k / 2, y - top - k / 2), k, k, fill=False, color="yellow", lw=1))
        ax.set_title(f"{label} ({x}, {y})", fontsize=7)
        for i in range(n):
            im = axes[row, i + 1].imshow(kernels[row, i], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[row, i + 1].set_title(f"frame {i}\nΣ={kernels[row, i].sum():.2f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, 1:], shrink=0.8, label="kernel weight")
    return figure_png(fig)


def contribution_maps(contrib: np.ndarray) -> bytes:
    """(N, H, W) per-frame contribution maps on one colour scale, with each frame's mean."""
    plt = pyplot()
    n = contrib.shape[0]
    cols = min(n, 4)
    rows = -(-n // cols)
    lo, hi = np.percentile(contrib, [1, 99])
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.8, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            im = ax.imshow(contrib[i], cmap="viridis", vmin=lo, vmax=hi)
            ax.set_title(f"frame {i}{' (ref)' if i == 0 else ''}: mean {contrib[i].mean():.3f}", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="Σ kernel weights (contribution)")
    return figure_png(fig)


def dominant_map(dominant: np.ndarray, frames: int) -> bytes:
    """(H, W) index of the frame with the largest contribution at each pixel."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(dominant, cmap=plt.get_cmap("tab10", frames), vmin=-0.5, vmax=frames - 0.5, interpolation="nearest")
    fig.colorbar(im, ax=ax, ticks=range(frames), label="dominant frame")
    shares = np.bincount(dominant.ravel(), minlength=frames) / dominant.size
    ax.set_title("dominant frame; share: " + " ".join(f"{s:.0%}" for s in shares), fontsize=7)
    ax.axis("off")
    return figure_png(fig)


def scalar_map(image: np.ndarray, title: str, label: str, symmetric: bool = False) -> bytes:
    """One map with a colour bar; ``symmetric``: a diverging scale around 0 (99th percentile of |x|)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    if symmetric:
        limit = float(np.percentile(np.abs(image), 99)) or 1.0
        im = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        im = ax.imshow(image, cmap="magma")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return figure_png(fig)


def inspection_figures(ins, pixels, white_level: float = 1.0) -> dict[str, bytes]:
    """All of `burstkpn inspect`'s pictures of an `inspect.Inspection`, by file name."""
    from burstkpn.inspect import kernels_at

    figures = {
        "kernels.png": kernel_grid(ins.frames[0], kernels_at(ins, pixels), pixels, white_level),
        "contributions.png": contribution_maps(ins.contributions),
        "dominant.png": dominant_map(ins.dominant, ins.frames.shape[0]),
        "noise.png": scalar_map(ins.noise_map / white_level, "noise estimate (std, white level divided out)", "σ"),
        "residual.png": scalar_map(ins.residual / white_level, "output − reference frame (linear)", "difference", True),
        "reference.png": image_png(ins.frames[0], white_level),
        "output.png": image_png(ins.output, white_level),
    }
    if ins.blend is not None:  # models that blend toward the frames' mean: where they do
        figures["blend.png"] = scalar_map(ins.blend, "weight of the frames' mean in the output", "b")
    if getattr(ins, "noise_gain", None) is not None:  # models with a noise gain: how much more noise the kernels were told
        figures["noise_gain.png"] = scalar_map(ins.noise_gain, "factor on the noise map the kernels were told", "g")
    if getattr(ins, "refine", None) is not None:  # models with a last spatial stage: how strongly it filtered
        figures["refine.png"] = scalar_map(ins.refine, "strength of the last spatial stage", "s")
    return figures
