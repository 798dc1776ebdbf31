"""The paper's evaluation protocol (METHOD §4) over a test set, for classical and learned methods.

A `Method` is a name and a ``denoise(burst (N, H, W), noise) -> (H, W)`` function: the classical
baselines come from `burstkpn.baselines.REGISTRY`, a weights file from `burstkpn.weights` (its card
names the row). `evaluate` runs every method on every burst of the chosen gains and returns one
`Result` per method x gain; the ``write_*`` functions turn them into the CSV, the Table-1-style
Markdown, a PSNR-vs-gain plot and side-by-side crops, each written atomically. Colour test sets
(``synth --colour``) are `burstkpn.colour_eval`'s: the same rows and tables, raw and sRGB scores.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from burstkpn import baselines
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.metrics import CAPTION, psnr, ssim, to_display
from burstkpn.noise import NoiseLevel
from burstkpn.testset import TestSet

CSV_FIELDS = ("method", "gain", "psnr", "ssim", "seconds_per_burst", "n_bursts", "note")


@dataclass
class Method:
    """A row of the table. ``denoise`` is None when the method cannot run here (``unavailable`` says why);
    ``max_scenes`` limits it to a seeded subset of scenes (the same scenes at every gain)."""

    name: str
    denoise: baselines.Denoiser | None
    unavailable: str | None = None
    max_scenes: int | None = None
    model: object | None = None  # the network behind a learned method (for kernel figures)


@dataclass
class Result:
    """Mean metrics of one method at one gain; ``psnr``/``ssim`` are NaN when it did not run."""

    method: str
    gain: int
    psnr: float
    ssim: float
    seconds_per_burst: float
    n_bursts: int
    note: str = ""


@dataclass
class Evaluation:
    """What `evaluate` measured: summary rows, per-burst rows and the estimates kept for crops."""

    results: list[Result]
    per_burst: list[dict] = field(default_factory=list)
    crops: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (method, gain) -> (H, W)
    crop_scene: int = 0
    n_scenes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # method -> total wall time


# --- methods ---------------------------------------------------------------------------------


def model_method(path: str | Path) -> Method:
    """A weights file from ``burstkpn train`` (or a shipped model's name) as a method, named from its card: the
    ``name`` in the file's info if any, else the model kind (``kpn``, ``kpn-blind``, ``dpn``)."""
    from burstkpn.models.kpn import denoise_array
    from burstkpn.weights import model_name, resolve_model

    model = resolve_model(str(path))[0]
    planes = getattr(model.config, "planes", None)
    if planes is not None:  # a joint colour/raw model (`models.planar`) cannot denoise a grayscale burst
        raise BurstKPNError(f"{Path(path).name}: a joint {planes}-plane model; evaluate it on a colour test set "
                            f"(burstkpn synth --colour {'bayer' if planes == 4 else 'rgb'})")
    return Method(model_name(model), lambda burst, noise: denoise_array(model, burst, noise), model=model)


def bf16_twin(method: Method) -> Method:
    """The same model run under bf16 autocast on CPU, as the row ``NAME bf16``."""
    return _twin(method, "bf16", amp=True)


def ensemble_twin(method: Method) -> Method:
    """The same model averaged over the 8 flips/rotations of each burst, as the row ``NAME x8``."""
    return _twin(method, "x8", ensemble=True)


def tile_aligned_twin(method: Method) -> Method:
    """The same model on bursts first aligned tile by tile (`burstkpn.align.tile_align`, what
    `burstkpn denoise` does with real bursts), as the row ``NAME tile-aligned``."""
    return _twin(method, "tile-aligned", align=True)


def _twin(method: Method, suffix: str, align: bool = False, **options) -> Method:
    """``method``'s model run through `denoise_array` with ``options`` (after `tile_align` if ``align``),
    as the row ``NAME SUFFIX``."""
    from burstkpn.align import tile_align
    from burstkpn.models.kpn import denoise_array

    model = method.model
    return Method(f"{method.name} {suffix}", lambda burst, noise: denoise_array(
        model, tile_align(burst) if align else burst, noise, **options), model=model)


def resolve_methods(spec: str, models=(), max_bursts=(), bf16: bool = False, ensemble: bool = False,
                    tile_aligned: bool = False) -> list[Method]:
    """Methods from ``--methods`` (comma-separated names or ``all``), ``--model`` files and
    ``--max-bursts`` items (``K`` for every method, ``NAME=K`` for one); ``bf16`` adds each model's
    bf16-autocast twin right after it, ``ensemble`` its flip/rotation-ensemble twin, ``tile_aligned``
    its twin on tile-aligned bursts."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names and not models:
        raise BurstKPNError("no methods given: use --methods NAME,... or --methods all")
    everything = "all" in names
    if everything:
        names = [n for n in names if n != "all"] + [n for n in baselines.REGISTRY if n not in names]
    methods = []
    for name in dict.fromkeys(names):
        reason = baselines.missing(name)  # also rejects unknown names
        methods.append(Method(name, None if reason else baselines.load(name), reason))
    for path in models:
        methods.append(_named_apart(model_method(path), path, methods))
    from burstkpn.weights import shipped_weights

    for path in shipped_weights() if everything else []:
        try:
            methods.append(_named_apart(model_method(path), path, methods))
        except BurstKPNError as exc:
            methods.append(Method(path.stem, None, str(exc)))
    twins = [twin for wanted, twin in ((bf16, bf16_twin), (ensemble, ensemble_twin), (tile_aligned, tile_aligned_twin))
             if wanted]
    methods = [t for m in methods for t in ([m] + ([twin(m) for twin in twins] if m.model is not None and m.denoise else []))]
    return limit_methods(methods, max_bursts)


def limit_methods(methods: list[Method], max_bursts=()) -> list[Method]:
    """Give each method its ``--max-bursts`` scene limit; a one-line error if two methods share a name."""
    limits = _parse_max_bursts(max_bursts, [m.name for m in methods])
    for m in methods:
        m.max_scenes = limits.get(m.name, limits.get(None))
    if len({m.name for m in methods}) != len(methods):
        raise BurstKPNError(f"two methods share a name: {', '.join(m.name for m in methods)}")
    return methods


def _named_apart(method: Method, path: str | Path, taken: list[Method]) -> Method:
    """Two models of the same kind become ``kpn (fileA)``, ``kpn (fileB)``."""
    if any(m.name == method.name for m in taken):
        method.name = f"{method.name} ({Path(path).stem})"
    return method


def _parse_max_bursts(items, names: list[str]) -> dict[str | None, int]:
    limits = {}
    for item in items:
        name, _, count = item.rpartition("=")
        if name and name not in names:
            raise BurstKPNError(f"--max-bursts {item}: {name!r} is not one of the methods ({', '.join(names)})")
        try:
            limits[name or None] = int(count)
        except ValueError:
            raise BurstKPNError(f"--max-bursts {item}: expected K or NAME=K with an integer K") from None
        if limits[name or None] < 1:
            raise BurstKPNError(f"--max-bursts {item}: K must be at least 1")
    return limits


# --- running ---------------------------------------------------------------------------------


def scene_order(testset: TestSet, seed: int = 0) -> np.ndarray:
    """A seeded permutation of the test set's scenes; a subset of K scenes is its first K."""
    return np.random.default_rng(seed).permutation(np.unique(testset.scene))


def evaluate(testset: TestSet, methods: list[Method], gains=None, seed: int = 0, progress: bool = True) -> Evaluation:
    """Run every available method on every burst at ``gains`` (default: all of the test set's)."""
    if testset.colour is not None:
        raise BurstKPNError(f"a {testset.colour} test set: evaluate it with burstkpn.colour_eval.evaluate_colour")

    def summary(name: str, gain: int, rows: list[dict], note: str) -> Result:
        return Result(name, gain, mean_of(rows, "psnr"), mean_of(rows, "ssim"), mean_of(rows, "seconds"), len(rows), note)

    return run_methods(testset, methods, gains, seed, progress, lambda m, i, ev: _run_one(testset, m, i, ev), summary)


def run_methods(testset: TestSet, methods: list[Method], gains, seed: int, progress: bool,
                score: Callable[[Method, int, Evaluation], dict],
                summary: Callable[[str, int, list[dict], str], object]) -> Evaluation:
    """The loop of `evaluate` and `colour_eval.evaluate_colour`: every available method on the bursts of the
    seeded scene order (its ``max_scenes`` first scenes) at ``gains``, with a progress bar. ``score(method,
    row, ev)`` gives one per-burst dict (with "gain" and "seconds"); ``summary(name, gain, rows, note)`` one
    result row per method and gain (rows empty for an unavailable method, note its reason)."""
    from tqdm import tqdm

    gains = testset.gains if gains is None else [int(g) for g in gains]
    unknown = sorted(set(gains) - set(testset.gains))
    if unknown:
        raise BurstKPNError(f"gain(s) {unknown} not in the test set (it has {testset.gains})")
    methods = [_fit_length(m, testset.noisy.shape[1]) for m in methods]
    order = scene_order(testset, seed)
    plan = {m.name: _rows(testset, gains, order[: m.max_scenes]) for m in methods if m.denoise}
    ev = Evaluation([], crop_scene=int(order[0]), n_scenes=len(order))
    bar = tqdm(total=sum(len(r) for r in plan.values()), unit="burst", disable=not progress)
    for m in methods:
        if not m.denoise:
            ev.results += [summary(m.name, g, [], m.unavailable or "") for g in gains]
            continue
        bar.set_description(m.name)
        rows = []
        for i in plan[m.name]:
            rows.append(score(m, i, ev))
            bar.update()
        ev.seconds[m.name] = sum(r["seconds"] for r in rows)
        ev.per_burst += rows
        note = f"subset: {m.max_scenes} of {len(order)} scenes" if m.max_scenes and m.max_scenes < len(order) else ""
        for g in gains:
            ev.results.append(summary(m.name, g, [r for r in rows if r["gain"] == g], note))
    bar.close()
    return ev


def mean_of(rows: list[dict], key: str) -> float:
    """The mean of ``key`` over per-burst rows; nan for none."""
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def _fit_length(method: Method, frames: int) -> Method:
    """The method, or an unavailable copy of it when it is a fixed-length model and bursts are shorter."""
    config = getattr(method.model, "config", None)
    if method.denoise and config is not None and frames < config.frames and not config.variable_frames:
        return replace(method, denoise=None, unavailable=f"takes {config.frames}-frame bursts, the test set has {frames}")
    return method


def _rows(testset: TestSet, gains, scenes) -> list[int]:
    keep = np.isin(testset.scene, scenes) & np.isin(testset.gain, gains)
    return [int(i) for i in np.flatnonzero(keep)]


def _run_one(testset: TestSet, method: Method, i: int, ev: Evaluation) -> dict:
    noise = NoiseLevel(float(testset.sigma_read[i]), float(testset.sigma_shot[i]))
    burst = np.ascontiguousarray(testset.noisy[i])
    start = time.perf_counter()
    estimate = np.asarray(method.denoise(burst, noise), np.float32)
    seconds = time.perf_counter() - start
    if estimate.shape != burst.shape[1:]:
        raise BurstKPNError(f"method {method.name!r} returned shape {estimate.shape}, expected {burst.shape[1:]}")
    clean, white, gain = testset.clean[i], float(testset.white_level[i]), int(testset.gain[i])
    if int(testset.scene[i]) == ev.crop_scene:
        ev.crops[(method.name, gain)] = estimate
    return {
        "method": method.name, "gain": gain, "scene": int(testset.scene[i]), "source": str(testset.source[i]),
        "psnr": psnr(estimate, clean, white), "ssim": ssim(estimate, clean, white), "seconds": seconds,
    }


# --- writing ---------------------------------------------------------------------------------


def _csv_text(rows: list[dict], fields) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(ev: Evaluation, path: str | Path) -> None:
    """``results.csv``: one row per method x gain (empty metrics where a method did not run)."""
    def fmt(r: Result) -> dict:
        ran = r.n_bursts > 0
        return {
            "method": r.method, "gain": r.gain, "psnr": f"{r.psnr:.4f}" if ran else "", "ssim": f"{r.ssim:.5f}" if ran else "",
            "seconds_per_burst": f"{r.seconds_per_burst:.4f}" if ran else "", "n_bursts": r.n_bursts, "note": r.note,
        }
    with atomic_output(path) as tmp:
        tmp.write_text(_csv_text([fmt(r) for r in ev.results], CSV_FIELDS))


def write_per_burst(ev: Evaluation, path: str | Path) -> None:
    """``per_burst.csv``: every burst's metrics and time, for comparisons on the same scenes."""
    with atomic_output(path) as tmp:
        tmp.write_text(_csv_text(ev.per_burst, ("method", "gain", "scene", "source", "psnr", "ssim", "seconds")))


def describe_testset(testset: TestSet, path: str | Path) -> str:
    """One sentence naming the test set and how it was built."""
    meta, gains = testset.meta, testset.gains
    n_scenes = len(np.unique(testset.scene))
    size = testset.clean.shape[1]  # (M, S, S) or, for colour sets, (M, S, S, 3)
    return (
        f"Test set `{Path(path).name}`: {n_scenes} scenes x gains {', '.join(map(str, gains))}, "
        f"{testset.noisy.shape[1]} frames of {size}x{size}, {meta.get('motion', 'global')} motion, "
        f"seed {meta.get('seed')}, from {len(meta.get('images', [])) - len(meta.get('skipped', []))} photos "
        f"({meta.get('builder', 'unknown builder')})."
    )


def markdown_table(ev: Evaluation, description: str, caption: str = CAPTION) -> str:
    """Table 1's layout: methods as rows, gains as columns, ``PSNR / SSIM`` cells; ``caption`` says how
    they were measured (the grayscale protocol by default; `burstkpn.colour_eval` passes its own)."""
    gains = sorted({r.gain for r in ev.results})
    methods = list(dict.fromkeys(r.method for r in ev.results))
    cell = {(r.method, r.gain): r for r in ev.results}
    lines = [
        "| method | " + " | ".join(f"gain {g}" for g in gains) + " | s / burst |",
        "|---|" + "---|" * (len(gains) + 1),
    ]
    notes = []
    for name in methods:
        first = cell[(name, gains[0])]
        if first.n_bursts == 0:
            lines.append(f"| {name} | " + " | ".join(first.note or "not run" for _ in gains) + " | – |")
            continue
        mark = " †" if first.note else ""
        if first.note:
            notes.append(f"† {name}: {first.note} per gain, seeded (per_burst.csv has every method's value per scene).")
        cells = " | ".join(f"{cell[(name, g)].psnr:.2f} / {cell[(name, g)].ssim:.3f}" for g in gains)
        seconds = np.mean([cell[(name, g)].seconds_per_burst for g in gains])
        lines.append(f"| {name}{mark} | {cells} | {seconds:.3f} |")
    caption = f"{caption}. Mean over bursts; s / burst is wall time per burst of the method alone. {description}"
    return "\n".join(lines + ["", caption] + ([""] + notes if notes else [])) + "\n"


def write_markdown(ev: Evaluation, description: str, path: str | Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(markdown_table(ev, description))


def _save_figure(fig, path: str | Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_psnr(ev: Evaluation, path: str | Path) -> None:
    """PSNR against gain, one line per method that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name in dict.fromkeys(r.method for r in ev.results):
        rows = [r for r in ev.results if r.method == name and r.n_bursts]
        if rows:
            ax.plot([r.gain for r in rows], [r.psnr for r in rows], marker="o", label=name + (" †" if rows[0].note else ""))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("gain")
    ax.set_ylabel("PSNR (dB, sRGB curve, 8-px border)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


def plot_crops(ev: Evaluation, testset: TestSet, path: str | Path, crop: int = 64) -> None:
    """The same burst's central crop across methods (columns) and gains (rows), in display space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains = sorted({g for _, g in ev.crops})
    names = list(dict.fromkeys(n for n, _ in ev.crops))
    fig, axes = plt.subplots(len(gains), len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.75 * len(gains)), squeeze=False)
    for row, g in enumerate(gains):
        i = int(np.flatnonzero((testset.scene == ev.crop_scene) & (testset.gain == g))[0])
        white, clean = float(testset.white_level[i]), testset.clean[i]
        panels = [("clean", clean)] + [(n, ev.crops[(n, g)]) for n in names if (n, g) in ev.crops]
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(panels):
                continue
            name, image = panels[col]
            display = to_display(image, white, border=0)
            h, w = display.shape
            top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
            ax.imshow(display[top : top + crop, left : left + crop], cmap="gray", vmin=0, vmax=1)
            label = name if col == 0 else f"{name}\n{psnr(image, clean, white):.2f} dB"
            ax.set_title(f"gain {g}: {label}" if col == 0 else label, fontsize=7)
    fig.suptitle(f"scene {ev.crop_scene} ({testset.source[i]}), central {crop}x{crop} crop", fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)
