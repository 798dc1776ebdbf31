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
         white_level: tuple[float, float] = (1.0, 1.0), exposures=None) -> list[Cell]:
    """Every combination, exposure-major, then motion. ``exposures``: white-level ranges (LOW, HIGH), one
    axis of the grid (a dark scene: e.g. (0.1, 0.3)); default just ``white_level``."""
    ranges = [tuple(float(v) for v in r) for r in (exposures or [white_level])]
    for low, high in ranges:
        if not 0 < low <= high:
            raise BurstKPNError(f"a white-level range needs 0 < LOW <= HIGH, got {low:g},{high:g}")
    if len(set(ranges)) < len(ranges):  # their cells would share labels and overwrite each other's scores
        raise BurstKPNError(f"white-level ranges repeat: {' '.join(f'{lo:g},{hi:g}' for lo, hi in ranges)}")
    return [Cell(m, int(s), str(g), r) for r in ranges for m in motions for s in scales for g in gains]


def cell_testset(images, cell: Cell, size: int = 64, per_image: int = 1, seed: int = 0):
    """The seeded test set (`testset.TestSet`) of one sweep cell: the same photos and seed in every cell."""
    from burstkpn.testset import build_testset

    return build_testset(images, gains=[cell.gain], size=size, per_image=per_image, seed=seed, motion=cell.motion,
                         progress=False, downsample=cell.downsample, white_level=cell.white_level)


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

    if not cells:
        raise BurstKPNError("the sweep has no cells")
    start = time.perf_counter()
    rows: dict[str, dict[str, tuple[float, float, int]]] = {m.name: {} for m in methods}
    scenes = {}
    for cell in tqdm(cells, desc="sweep", unit="cell", disable=not progress):
        ts = cell_testset(images, cell, size, per_image, seed)
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


def run_clipped(images, methods, gains=("1", "2", "4"), clip: str = "white", white_level=(1.5, 4.0), size: int = 64,
                per_image: int = 1, seed: int = 0, motion: str = "integer", downsample: int = 2,
                declip: bool = False, impute: bool = False, progress: bool = True) -> dict:
    """Methods on clipped bursts and on the same bursts unclipped (one seed: the same scenes, shifts and noise
    draws; only the sensor's clip differs). Per method and gain: PSNR over the pixels that are not clipped in
    the truth, on the clipped and on the unclipped twin; the highlight bias over truly saturated pixels
    (`metrics.highlight_bias`, fraction of white); PSNR in the 4-px halo band around blown regions.
    ``clip``: "white" (exposure ``white_level`` > 1, saturated at 1) or "black" (clipped at 0 after the noise).
    ``declip``: each method's output on the clipped bursts also through `pipeline.declip_output` (what
    `denoise_burst` does after the network), as the row "NAME declip" (the same outputs, no second run).
    ``impute``: each method also run on the clipped bursts with their cut black values filled in first
    (`pipeline.impute_input`) and declipped at white only: what `denoise_burst` does with a network, as the row
    "NAME imputed" (a second run where the bursts hit the black point; the declipped output where they do not).
    All figures in the paper's display space with data range 1 (the sensor's white level)."""
    from tqdm import tqdm

    from burstkpn.metrics import halo_band, highlight_bias, masked_psnr, saturated_mask
    from burstkpn.pipeline import declip_output, impute_input
    from burstkpn.testset import build_testset

    if clip not in ("white", "black"):
        raise BurstKPNError(f"clip must be white or black, got {clip!r}")
    common = dict(gains=list(gains), size=size, per_image=per_image, seed=seed, motion=motion, progress=False,
                  downsample=downsample, white_level=tuple(white_level))
    clipped = build_testset(images, clip_white=clip == "white", clip_black=clip == "black", **common)
    twin = build_testset(images, **common)
    start = time.perf_counter()
    rows: dict[str, dict[int, dict[str, float]]] = {}
    saturated_share = []
    for m in tqdm([m for m in methods if m.denoise], desc="clipped", unit="method", disable=not progress):
        per_gain: dict[int, list] = {}
        declipped: dict[int, list] = {}
        imputed: dict[int, list] = {}
        for i in range(len(clipped)):
            noise = NoiseLevel(float(clipped.sigma_read[i]), float(clipped.sigma_shot[i]))
            truth = np.clip(twin.clean[i], 0, 1)  # the scene as a perfect sensor records it
            unclipped = ~saturated_mask(truth) & (truth[BORDER:-BORDER, BORDER:-BORDER] > 0)
            a = np.asarray(m.denoise(np.ascontiguousarray(clipped.noisy[i]), noise), np.float32)
            b = np.asarray(m.denoise(np.ascontiguousarray(twin.noisy[i]), noise), np.float32)
            sat = saturated_mask(truth)
            band = halo_band(sat)
            if m is methods[0]:
                saturated_share.append(float(sat.mean()))
            outputs = [(per_gain, a)]
            if declip:
                outputs.append((declipped, declip_output(a[None], clipped.noisy[i][None], noise)[0][0]))
            if impute:
                filled, black = impute_input(clipped.noisy[i][None], noise)
                c = a if black is None else np.asarray(m.denoise(np.ascontiguousarray(filled[0]), noise), np.float32)
                outputs.append((imputed, declip_output(c[None], clipped.noisy[i][None], noise, black=black is None)[0][0]))
            for table, out in outputs:
                table.setdefault(int(clipped.gain[i]), []).append((
                    masked_psnr(out, truth, unclipped), masked_psnr(b, truth, unclipped), highlight_bias(out, truth),
                    masked_psnr(out, truth, band) if band.any() else float("nan")))
        for name, table in ((m.name, per_gain), (f"{m.name} declip", declipped), (f"{m.name} imputed", imputed)):
            if table:
                rows[name] = {g: dict(zip(("psnr_clipped", "psnr_unclipped", "highlight_bias", "halo_psnr"),
                                          (float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
                                           for col in zip(*vals))))
                              for g, vals in sorted(table.items())}
    return {"rows": rows, "gains": sorted({int(g) for g in clipped.gain}), "seconds": time.perf_counter() - start,
            "bursts": len(clipped), "saturated_share": float(np.mean(saturated_share)) if saturated_share else 0.0,
            "clip": clip}


def clipped_markdown(result: dict) -> str:
    """One table: per method, per gain, "PSNR clipped / unclipped twin (unclipped pixels) | bias | halo"."""
    gains = result["gains"]
    head = "| method | " + " | ".join(f"g{g}: PSNR clipped / twin, bias %, halo PSNR" for g in gains) + " |"
    lines = [head, "|---|" + "---|" * len(gains)]
    for name, per_gain in result["rows"].items():
        cells = []
        for g in gains:
            r = per_gain[g]
            cells.append(f"{r['psnr_clipped']:.2f} / {r['psnr_unclipped']:.2f}, {100 * r['highlight_bias']:+.2f}, "
                         f"{r['halo_psnr']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
