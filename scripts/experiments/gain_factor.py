"""What a noise-gain model tells its kernels, against the best constant factor for a model without one.

    python scripts/experiments/gain_factor.py kpn-gain --images ../shared/data/test/lomiri13 --base kpn

For each sweep cell (`burstkpn.sweep.grid`, well-exposed exposure; the seeded 64² cells `noise_multiplier.py` uses):
the gain model's mean gamma PSNR, the 10th / 50th / 90th percentile of its per-pixel factor (mean over bursts),
and the base model told the true noise times each of ``--factors`` (mean PSNR, and the best factor per burst: an
oracle, it knows the truth). bf16 autocast, as `denoise` runs on CPUs with native bf16.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.metrics import psnr
from burstkpn.models.kpn import predict
from burstkpn.sweep import cell_testset, grid
from burstkpn.weights import resolve_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="weights with a noise gain (ModelConfig.noise_gain), file or shipped name")
    p.add_argument("--images", nargs="+", required=True, help="held-out photos")
    p.add_argument("--base", default="kpn", help="the model without a gain, told constant factors")
    p.add_argument("--factors", nargs="+", type=float, default=[1, 2, 3, 5, 8, 12])
    p.add_argument("--cells", nargs="+", default=["static s1 gbase", "static s4 gbase", "static s4 g1",
                                                  "integer s4 gbase", "global s4 gbase", "global s4 g4"])
    args = p.parse_args()
    torch.set_num_threads(1)
    gain_model, base = resolve_model(args.model)[0].eval(), resolve_model(args.base)[0].eval()
    if not getattr(gain_model.config, "noise_gain", False):
        p.error(f"{args.model}: no noise gain (ModelConfig.noise_gain)")
    cells = [c for c in grid(exposures=[(1.0, 1.0)]) if c.label in args.cells]
    print(f"| cell | {args.model} | factor p10 / p50 / p90 | {args.base} {' / '.join(f'x{f:g}' for f in args.factors)} "
          f"| best per burst |\n|---|---|---|---|---|")
    for cell in cells:
        ts = cell_testset(args.images, cell)
        own, pct, told = [], [], []
        with torch.inference_mode():
            for i in range(len(ts)):
                burst = torch.from_numpy(np.ascontiguousarray(ts.noisy[i]))[None]
                sr, ss, white = float(ts.sigma_read[i]), float(ts.sigma_shot[i]), float(ts.white_level[i])
                r = predict(gain_model, burst, sr, ss, amp=True)
                own.append(psnr(r["output"][0].float().numpy(), ts.clean[i], white))
                pct.append(np.percentile(r["noise_gain"][0].float().numpy(), [10, 50, 90]))
                told.append([psnr(predict(base, burst, f * sr, f * ss, amp=True)["output"][0].float().numpy(),
                                  ts.clean[i], white) for f in args.factors])
        told = np.array(told)
        print(f"| {cell.label} | {np.mean(own):.2f} | {' / '.join(f'{v:.2f}' for v in np.mean(pct, axis=0))} | "
              f"{' / '.join(f'{v:.2f}' for v in told.mean(axis=0))} | {told.max(axis=1).mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
