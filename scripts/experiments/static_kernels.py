"""What a model's kernels do on bursts whose frames line up exactly (issue 25's diagnosis).

    python scripts/experiments/static_kernels.py --images ../shared/data/test/lomiri13 --model kpn kpn-mix.safetensors

On static bursts (every frame the same window; `burstkpn synth --motion static`) the best merge is close to
the plain mean: 1/N of the weight on each frame's centre tap. Per model and noise level it prints the
reference frame's share of the kernel mass, the off-centre taps' share of the absolute mass, the spread of
the per-pixel kernel sum (its DC gain), the mean blend toward the frames' mean (models with mean_blend), and
gamma PSNR of the model against the plain mean of the frames.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.metrics import psnr
from burstkpn.models.kpn import predict
from burstkpn.testset import build_testset
from burstkpn.weights import load_model, shipped_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--model", nargs="+", default=["kpn"])
    p.add_argument("--gains", nargs="+", default=["base", "1", "4"])
    p.add_argument("--downsample", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    shipped = {w.stem: w for w in shipped_weights()}
    ts = build_testset(args.images, gains=args.gains, size=args.size, motion="static", downsample=args.downsample,
                       white_level=(1.0, 1.0), progress=False)
    print(f"{len(ts)} static bursts of {args.size}² (content scale {args.downsample}, white level 1)")
    print("| model | gain | ref share | off-centre share | kernel sum (p5-p95) | blend | model PSNR | mean PSNR |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.model:
        model = load_model(shipped.get(name, name)).eval()
        for g in ts.gains:
            stats = []
            for i in ts.rows(g):
                with torch.inference_mode():
                    out = predict(model, torch.from_numpy(ts.noisy[i : i + 1]), float(ts.sigma_read[i]), float(ts.sigma_shot[i]))
                k = out["kernels"][0].float().numpy()  # (N, K, K, H, W)
                c = k.shape[1] // 2
                total = np.abs(k).sum(axis=(0, 1, 2))
                centre = np.abs(k[:, c, c]).sum(axis=0)
                stats.append((
                    float((k[0].sum(axis=(0, 1)) / k.sum(axis=(0, 1, 2))).mean()),
                    float(((total - centre) / total).mean()),
                    np.percentile(k.sum(axis=(0, 1, 2)), [5, 95]),
                    float(out["blend" if "blend" in out else "agreement"].mean()) if {"blend", "agreement"} & set(out) else float("nan"),
                    psnr(out["output"][0].numpy(), ts.clean[i], float(ts.white_level[i])),
                    psnr(ts.noisy[i].mean(0), ts.clean[i], float(ts.white_level[i])),
                ))
            ref, off, sums, blend, mp, ap = zip(*stats)
            lo, hi = np.mean([s[0] for s in sums]), np.mean([s[1] for s in sums])
            label = "base" if g == 0 else g
            print(f"| {name} | {label} | {np.mean(ref):.3f} | {np.mean(off):.3f} | {lo:.3f}-{hi:.3f} | {np.mean(blend):.3f} | "
                  f"{np.mean(mp):.2f} | {np.mean(ap):.2f} |")


if __name__ == "__main__":
    main()
