"""PSNR versus burst length (issue 11): one test set of long bursts, cut to its first N frames.

    burstkpn synth --images PHOTOS --out long16.npz --frames 16 --gains 1 4 --per-image 5 --seed 0
    python scripts/experiments/burst_length_curve.py --testset long16.npz --out docs/burst-length

Every N in --lengths is the first N frames of the same bursts (the reference is frame 0), so the
curves differ only by the frames added. Methods: the shipped kpn and kpn-variable (or --model, repeatable), the
aligned average and HDR+; N = 1 is each method given the reference frame alone. A model built for
fewer frames than N uses the reference and the frames that align best to it; for more, it marks the
missing ones (models with variable_frames). Writes OUT.md (table) and OUT.png (curves).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--testset", required=True)
    p.add_argument("--out", required=True, help="path prefix for .md and .png")
    p.add_argument("--model", action="append", help="weights file(s) (default: the shipped model)")
    p.add_argument("--methods", default="aligned-average,hdrplus", help="classical methods (evaluate's names)")
    p.add_argument("--lengths", default="1,2,4,8,12,16")
    p.add_argument("--gains", default="1,4")
    args = p.parse_args()
    try:
        return run(args)
    except BurstKPNError as exc:
        print(f"burst_length_curve: error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from burstkpn.evaluate import evaluate, resolve_methods
    from burstkpn.testset import load_testset

    testset = load_testset(args.testset)
    lengths = [int(v) for v in args.lengths.split(",")]
    gains = [int(v) for v in args.gains.split(",")]
    if max(lengths) > testset.noisy.shape[1]:
        raise BurstKPNError(f"the test set has {testset.noisy.shape[1]} frames per burst; --lengths asks for {max(lengths)}")
    from burstkpn.weights import shipped_weights

    shipped = {p.stem: p for p in shipped_weights()}
    models = args.model or [str(shipped[name]) for name in ("kpn", "kpn-variable") if name in shipped]
    methods = resolve_methods(args.methods, models=models)
    table: dict[str, dict[tuple[int, int], float]] = {}
    for n in lengths:
        cut = replace(testset, noisy=np.ascontiguousarray(testset.noisy[:, :n]), shifts=testset.shifts[:, :n])
        print(f"N = {n}", file=sys.stderr)
        ev = evaluate(cut, methods, gains=gains)
        for r in ev.results:
            table.setdefault(r.method, {})[(n, r.gain)] = r.psnr
    names = list(table)
    scenes = len(np.unique(testset.scene))
    caption = (f"PSNR (dB) versus burst length N on `{Path(args.testset).name}` ({scenes} scenes per gain, "
               f"{testset.noisy.shape[-1]}² px, {testset.meta.get('motion', 'global')} motion; N = the first N frames). "
               f"Made by `python scripts/experiments/burst_length_curve.py --testset {Path(args.testset).name} --out {args.out}`.")
    lines = [caption, ""]
    lines.append("| method | gain | " + " | ".join(f"N={n}" for n in lengths) + " |")
    lines.append("|---|---|" + "---|" * len(lengths))
    for name in names:
        for g in gains:
            cells = (table[name][(n, g)] for n in lengths)
            lines.append(f"| {name} | {g} | " + " | ".join("–" if np.isnan(v) else f"{v:.2f}" for v in cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(gains), figsize=(5 * len(gains), 3.6), squeeze=False)
    for ax, g in zip(axes[0], gains):
        for name in names:
            ax.plot(lengths, [table[name][(n, g)] for n in lengths], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.set_xlabel("burst length N (frames)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"gain {g}")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
