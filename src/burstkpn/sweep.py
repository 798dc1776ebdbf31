"""A sweep over what users bring: motion x content scale x noise level (and exposure), one table.

Each cell is a seeded test set from `testset.build_testset` (the same photos and seed in every cell,
so a cell differs from another only by the option it sweeps); every method runs on every burst of
every cell. Scores: PSNR in sRGB-curve space (`metrics.psnr`, the paper's protocol) and, beside it,
PSNR on linear values (white level divided out, clipped to [0, 1], the same 8-px border).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.metrics import BORDER, psnr
from burstkpn.noise import NoiseLevel

DEFAULT_MOTIONS = ("static", "integer", "global")
DEFAULT_SCALES = (1, 4)
DEFAULT_GAINS = ("base", "1", "4")


@dataclass(frozen=True)
class Cell:
    """One column of the sweep: a motion model, a content scale, a noise level (gain), an exposure range."""

    motion: str
    downsample: int
    gain: str
    white_level: tuple[float, float] = (1.0, 1.0)

    @property
    def label(self) -> str:
        exposure = "" if self.white_level == (1.0, 1.0) else f" wl{self.white_level[0]:g}-{self.white_level[1]:g}"
        return f"{self.motion} s{self.downsample} g{self.gain}{exposure}"


def grid(motions=DEFAULT_MOTIONS, scales=DEFAULT_SCALES, gains=DEFAULT_GAINS,
         white_level: tuple[float, float] = (1.0, 1.0)) -> list[Cell]:
    """Every combination, motion-major."""
    return [Cell(m, int(s), str(g), white_level) for m in motions for s in scales for g in gains]


def linear_psnr(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> float:
    """PSNR (dB) on linear values: white level divided out, clipped to [0, 1], border cropped, data range 1."""
    a = np.clip(np.asarray(estimate, np.float64) / white_level, 0, 1)
    b = np.clip(np.asarray(clean, np.float64) / white_level, 0, 1)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def run_sweep(images, cells: list[Cell], methods, size: int = 64, per_image: int = 1, seed: int = 0,
              progress: bool = True) -> dict:
    """Run ``methods`` (`evaluate.Method`s) on every cell. Returns {"cells": [labels], "rows": {method:
    {label: (gamma PSNR, linear PSNR, bursts)}}, "seconds": wall time, "scenes": per cell}."""
    from tqdm import tqdm

    from burstkpn.testset import build_testset

    if not cells:
        raise BurstKPNError("the sweep has no cells")
    start = time.perf_counter()
    rows: dict[str, dict[str, tuple[float, float, int]]] = {m.name: {} for m in methods}
    scenes = {}
    for cell in tqdm(cells, desc="sweep", unit="cell", disable=not progress):
        ts = build_testset(images, gains=[cell.gain], size=size, per_image=per_image, seed=seed, motion=cell.motion,
                           progress=False, downsample=cell.downsample, white_level=cell.white_level)
        order = np.random.default_rng(seed).permutation(len(ts))
        scenes[cell.label] = len(ts)
        for m in methods:
            if m.denoise is None:
                continue
            picked = order[: m.max_scenes] if m.max_scenes else order
            gamma, linear = [], []
            for i in sorted(int(k) for k in picked):
                noise = NoiseLevel(float(ts.sigma_read[i]), float(ts.sigma_shot[i]))
                estimate = np.asarray(m.denoise(np.ascontiguousarray(ts.noisy[i]), noise), np.float32)
                white = float(ts.white_level[i])
                gamma.append(psnr(estimate, ts.clean[i], white))
                linear.append(linear_psnr(estimate, ts.clean[i], white))
            rows[m.name][cell.label] = (float(np.mean(gamma)), float(np.mean(linear)), len(gamma))
    return {"cells": [c.label for c in cells], "rows": rows, "seconds": time.perf_counter() - start, "scenes": scenes}


def markdown(sweep: dict, reference_row: str | None = None) -> str:
    """The sweep as one Markdown table: methods as rows, cells as columns, "gamma / linear" PSNR per cell,
    and a last column with the mean gamma PSNR over the cells the method ran on."""
    labels = sweep["cells"]
    lines = ["| method | " + " | ".join(labels) + " | mean (gamma) |", "|---|" + "---|" * (len(labels) + 1)]
    for name, cells in sweep["rows"].items():
        if not cells:
            continue
        values = [f"{cells[c][0]:.2f} / {cells[c][1]:.2f}" + (f" ({cells[c][2]})" if c in cells and cells[c][2] < sweep["scenes"][c] else "")
                  if c in cells else "–" for c in labels]
        mean = np.mean([cells[c][0] for c in labels if c in cells])
        lines.append(f"| {name} | " + " | ".join(values) + f" | {mean:.2f} |")
    return "\n".join(lines) + "\n"
