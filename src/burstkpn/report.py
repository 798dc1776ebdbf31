"""``report.html``: one self-contained page for `denoise`, `inspect`, `evaluate` and `demo`.

Images are embedded as base64 ``data:`` URIs; CSS and the comparison slider's JavaScript are
inline; nothing is fetched, so the page opens offline. A `Report` holds what a command has:
images to compare (any two, chosen from menus, with a slider and a toggle), figures (kernel
grids, contribution maps, plots) and, when the ground truth is known, a PSNR/SSIM table.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from burstkpn.io.images import atomic_output
from burstkpn.noise import NoiseLevel

REPORT_SIDE = 128  # reports on large images inspect the central window of this side


@dataclass
class Report:
    """images: label -> PNG bytes for the comparison (``before``/``after`` name the default pair);
    figures: (caption, PNG bytes); table: rows of equal keys (e.g. method, PSNR, SSIM); facts: settings."""

    title: str
    images: dict[str, bytes] = field(default_factory=dict)
    before: str | None = None
    after: str | None = None
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)
    table_caption: str = ""
    facts: dict = field(default_factory=dict)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def kernel_figures(model, frames, noise: NoiseLevel, white_level: float = 1.0, side: int = REPORT_SIDE) -> list[tuple[str, bytes]]:
    """Kernel grid, contribution maps and dominant-frame map of a KPN on (the centre of) a burst (N, H, W)."""
    from burstkpn import inspect, viz

    ins = inspect.inspect_burst(model, inspect.centre_crop(frames, side), noise)
    pixels = inspect.choose_pixels(ins.frames, ins.noise_map, model.config.kernel_size)
    where = f"central {ins.frames.shape[2]}x{ins.frames.shape[1]} px" if max(frames.shape[-2:]) > side else "whole burst"
    return [
        (f"Kernels of every frame at an edge, a flat area and the most misaligned spot ({where})",
         viz.kernel_grid(ins.frames[0], inspect.kernels_at(ins, pixels), pixels, white_level)),
        ("Per-frame contribution maps (sum of each frame's kernel weights)", viz.contribution_maps(ins.contributions)),
        ("Which frame dominates where", viz.dominant_map(ins.dominant, ins.frames.shape[0])),
    ]


def _table(rows: list[dict], caption: str) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return (f'<h2>Metrics</h2><table id="metrics"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="caption">{html.escape(caption)}</p>')


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _comparison(report: Report) -> str:
    if not report.images:
        return ""
    labels = list(report.images)
    before = report.before if report.before in labels else labels[0]
    after = report.after if report.after in labels else labels[-1]
    store = "".join(f'<img class="src" hidden alt="{html.escape(n)}" data-label="{html.escape(n)}" '
                    f'src="{data_uri(png)}">' for n, png in report.images.items())

    def menu(ident: str, chosen: str) -> str:
        options = "".join(f'<option{" selected" if n == chosen else ""}>{html.escape(n)}</option>' for n in labels)
        return f'<select id="{ident}">{options}</select>'

    return f"""<h2>Before / after</h2>
<div class="controls">left {menu("pick-before", before)} right {menu("pick-after", after)}
<input id="slider" type="range" min="0" max="100" value="50" aria-label="comparison slider">
<button id="toggle" type="button">toggle</button></div>
<div id="compare"><img id="img-before" alt="before"><img id="img-after" alt="after"></div>
<p class="caption">Drag the slider (left image on the left, right image on the right) or press toggle.</p>
{store}"""


SCRIPT = """
const byLabel = {};
document.querySelectorAll('img.src').forEach(i => byLabel[i.dataset.label] = i.src);
const b = document.getElementById('img-before'), a = document.getElementById('img-after');
const s = document.getElementById('slider');
function show() {
  b.src = byLabel[document.getElementById('pick-before').value];
  a.src = byLabel[document.getElementById('pick-after').value];
  a.style.clipPath = 'inset(0 0 0 ' + s.value + '%)';
}
window.addEventListener('load', () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.dataset.images = broken ? broken + ' broken' : 'ok';
});
if (s) {
  ['pick-before', 'pick-after'].forEach(id => document.getElementById(id).onchange = show);
  s.oninput = show;
  document.getElementById('toggle').onclick = () => { s.value = s.value > 50 ? 0 : 100; show(); };
  show();
}
document.body.dataset.ready = '1';
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
#compare { position: relative; display: inline-block; line-height: 0; }
#compare img { width: min(640px, 90vw); image-rendering: pixelated; }
#img-after { position: absolute; left: 0; top: 0; }
#slider { width: 240px; vertical-align: middle; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption, .caption { font-size: 0.85em; color: #555; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 0.85em; } dt { color: #555; }
"""


def render(report: Report) -> str:
    """The page's HTML text."""
    facts = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_fmt(v))}</dd>" for k, v in report.facts.items())
    figures = "".join(f'<figure><img alt="{html.escape(c)}" src="{data_uri(png)}"><figcaption>{html.escape(c)}</figcaption></figure>'
                      for c, png in report.figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(report.title)}</h1>
{f"<dl>{facts}</dl>" if facts else ""}
{_comparison(report)}
{_table(report.table, report.table_caption)}
{f"<h2>Figures</h2>{figures}" if figures else ""}
<script>{SCRIPT}</script>
</body></html>
"""


def write_report(report: Report, path: str | Path) -> Path:
    """Write ``render(report)`` atomically; returns the path."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(render(report), encoding="utf-8")
    return path


# --- one report per command ------------------------------------------------------------------


def _metric_rows(rows: dict[str, dict]) -> list[dict]:
    """{method: {psnr, ssim}} -> table rows."""
    return [{"method": name, "PSNR (dB)": r["psnr"], "SSIM": r["ssim"]} for name, r in rows.items()]


def denoise_report(written: list[Path], model, frames, noise: NoiseLevel, weights) -> Path:
    """``<out>.report.html`` beside `burstkpn denoise`'s outputs (written with their ``.before.png``).

    frames (N, H, W): one grayscale plane as the model saw it, for the kernel figures.
    """
    main = written[0]
    after = main if main.suffix == ".png" else main.with_suffix(".preview.png")
    before = main.with_suffix(".before.png")
    report = Report(
        f"burstkpn denoise: {main.name}",
        images={"noisy reference": before.read_bytes(), "denoised": after.read_bytes()},
        figures=_kpn_figures(model, frames, noise),
        facts={"output": main.name, "model": str(weights), "noise": f"σr={noise.sigma_read:.4g}, σs={noise.sigma_shot:.4g}"},
    )
    return write_report(report, main.with_suffix(".report.html"))


def _kpn_figures(model, frames, noise: NoiseLevel, white_level: float = 1.0) -> list[tuple[str, bytes]]:
    """Kernel figures for a KPN, none for a model without kernels (DPN)."""
    return kernel_figures(model, frames, noise, white_level) if hasattr(model.config, "kernel_size") and model.config.kind != "dpn" else []


def demo_report(out: Path, images: dict[str, bytes], rows: dict[str, dict], caption: str, model, noisy, noise: NoiseLevel,
                white_level: float, facts: dict) -> Path:
    """``report.html`` in `burstkpn demo`'s folder: every method beside the clean image, metrics, kernels."""
    after = next((n for n in reversed(images) if n not in ("clean", "reference")), None)
    report = Report(
        "burstkpn demo", images=images, before="reference", after=after,
        figures=_kpn_figures(model, noisy, noise, white_level) if model is not None else [],
        table=_metric_rows(rows), table_caption=caption, facts=facts,
    )
    return write_report(report, out / "report.html")


def evaluate_report(out: Path, ev, testset, description: str, models: dict) -> Path:
    """``report.html`` in `burstkpn evaluate`'s folder: Table 1, the plots, one scene's methods side by side
    and the kernels of each learned model (``models``: name -> model) on that scene at the middle gain."""
    import numpy as np

    from burstkpn import viz
    from burstkpn.metrics import CAPTION

    table = [{"method": r.method, "gain": r.gain, "PSNR (dB)": r.psnr if r.n_bursts else "–",
              "SSIM": r.ssim if r.n_bursts else "–", "bursts": r.n_bursts, "note": r.note} for r in ev.results]
    gains = sorted({g for _, g in ev.crops})
    images, figures = {}, []
    if gains:
        gain = gains[len(gains) // 2]
        i = int(np.flatnonzero((testset.scene == ev.crop_scene) & (testset.gain == gain))[0])
        white = float(testset.white_level[i])
        images = {"clean": viz.image_png(testset.clean[i], white), "noisy reference": viz.image_png(testset.noisy[i][0], white)}
        images.update({name: viz.image_png(est, white) for (name, g), est in ev.crops.items() if g == gain})
        noise = NoiseLevel(float(testset.sigma_read[i]), float(testset.sigma_shot[i]))
        for name, model in models.items():
            figures += [(f"{name}, scene {ev.crop_scene} at gain {gain}: {c}", png)
                        for c, png in _kpn_figures(model, testset.noisy[i], noise, white)]
    plots = [(c, out / f) for c, f in (("PSNR against gain", "psnr_vs_gain.png"), ("Central crops", "crops.png"))]
    figures = [(c, p.read_bytes()) for c, p in plots if p.is_file()] + figures
    report = Report(f"burstkpn evaluate: {out.name}", images=images, before="noisy reference",
                    after=next(iter(models), None), figures=figures, table=table,
                    table_caption=f"{CAPTION}. {description}")
    return write_report(report, out / "report.html")
