"""Choose `burstkpn.align.tile_align`'s snap margin on train-built bursts: a model's PSNR per margin.

    burstkpn synth --images ../shared/data/train/wallpapers24 --out tune-global.npz --gains 1 2 4 --per-image 1 --seed 7
    burstkpn synth --images ../shared/data/train/wallpapers24 --out tune-local.npz --gains 1 2 4 --per-image 1 --seed 7 --motion local
    python scripts/experiments/tune_tile_snap.py src/burstkpn/pretrained/kpn.safetensors tune-global.npz tune-local.npz

Rows: the model on the raw burst (its own global alignment only), then on bursts tile-aligned with each
margin (``None``: plain HDR+ tile alignment; a huge margin: every tile takes the rounded global shift).
"""

from __future__ import annotations

import argparse

from burstkpn.align import tile_align
from burstkpn.evaluate import Method, evaluate
from burstkpn.models.kpn import denoise_array
from burstkpn.testset import load_testset
from burstkpn.weights import load_model

MARGINS = (None, 0.0, 0.02, 0.05, 0.1, 0.2, 1e9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("testsets", nargs="+", help="test sets from `burstkpn synth` (not the held-out ones)")
    args = p.parse_args()
    model = load_model(args.weights)

    def snapped(margin):
        return Method(f"tile, margin {margin}", lambda b, n: denoise_array(model, tile_align(b, margin), n))

    methods = [Method("global only", lambda b, n: denoise_array(model, b, n))] + [snapped(m) for m in MARGINS]
    means: dict[str, list[float]] = {}
    for path in args.testsets:
        ev = evaluate(load_testset(path), methods, progress=True)
        gains = sorted({r.gain for r in ev.results})
        print(f"\n{path}: PSNR at gains {' / '.join(map(str, gains))}")
        for m in methods:
            row = [r.psnr for r in ev.results if r.method == m.name]
            means.setdefault(m.name, []).extend(row)
            print(f"  {m.name:22s} " + " / ".join(f"{v:.2f}" for v in row))
    print("\nmean over every set and gain")
    for name, values in means.items():
        print(f"  {name:22s} {sum(values) / len(values):.2f}")


if __name__ == "__main__":
    main()
