"""What the kernels' free sum (their DC gain) is worth, with no training (issue 25's diagnosis of kpn-mix).

    python scripts/experiments/dc_bound.py --testset lomiri13.npz --images ../shared/data/test/lomiri13 --model kpn

For a model with free kernel sums s, per burst: gamma PSNR of its output (free), of the same kernels divided by
their sum (normalised: DC gain exactly 1) and of the normalised output plus the free sum's change clipped to
+-c·sigma for each --bounds c (`ModelConfig.dc_bound`), on a Table 1 test set (the paper's motion) and on static
bursts (frames that line up exactly, content scale --downsample, white level 1), beside the frames' plain mean.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.metrics import psnr
from burstkpn.models.kpn import predict
from burstkpn.noise import noise_std_map
from burstkpn.testset import build_testset, load_testset
from burstkpn.weights import load_model, shipped_weights


def rows(model, ts, label: str, bounds) -> None:
    for g in ts.gains:
        scores = []
        for i in ts.rows(g):
            sr, ss, wl = float(ts.sigma_read[i]), float(ts.sigma_shot[i]), float(ts.white_level[i])
            with torch.inference_mode():
                out = predict(model, torch.from_numpy(ts.noisy[i : i + 1]), sr, ss)
            free = out["output"][0].float().numpy()
            sums = out["kernels"][0].float().sum(dim=(0, 1, 2)).clamp(min=0.05).numpy()
            normalised = free / sums
            sigma = noise_std_map(out["burst"][0, 0].numpy(), sr, ss)
            change = normalised * (sums - 1)
            estimates = [free, normalised] + [normalised + np.clip(change, -c * sigma, c * sigma) for c in bounds]
            scores.append([psnr(e, ts.clean[i], wl) for e in estimates] + [psnr(ts.noisy[i].mean(0), ts.clean[i], wl)])
        print(f"| {label} | {'base' if g == 0 else g} | " + " | ".join(f"{v:.2f}" for v in np.mean(scores, 0)) + " |",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--testset", required=True, help="a Table 1 test set (burstkpn synth)")
    p.add_argument("--images", nargs="+", required=True, help="held-out photos for the static bursts")
    p.add_argument("--model", default="kpn", help="a shipped name or a .safetensors file with free kernel sums")
    p.add_argument("--bounds", nargs="+", type=float, default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--downsample", type=int, default=4)
    args = p.parse_args()
    shipped = {w.stem: w for w in shipped_weights()}
    model = load_model(shipped.get(args.model, args.model)).eval()
    print("| test set | gain | free | normalised | " + " | ".join(f"bounded {c:g} sigma" for c in args.bounds)
          + " | frames' mean |")
    print("|---" * (4 + len(args.bounds)) + "|---|")
    rows(model, load_testset(args.testset), "Table 1", args.bounds)
    static = build_testset(args.images, gains=["base", "1", "4"], size=64, motion="static", downsample=args.downsample,
                           white_level=(1.0, 1.0), progress=False)
    rows(model, static, f"static, content scale {args.downsample}", args.bounds)


if __name__ == "__main__":
    main()
