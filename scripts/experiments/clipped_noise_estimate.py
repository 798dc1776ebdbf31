"""Issue 27's bar on clipped bursts: `denoise` with the noise it estimates against `denoise` told the truth.

    python scripts/experiments/clipped_noise_estimate.py --images ../shared/data/test/lomiri13

Bursts: `build_testset(motion="integer", downsample=2, white_level=(1.5, 4), clip_white=True)` (and, with
--clip black, exposure 0.05-0.3 clipped at 0). Per gain: the estimate's total noise std at the burst's median
unclipped intensity over the truth's (`noise_estimation.total_std`), and PSNR over the truth's unclipped pixels
of `denoise_burst(frames)` (estimated noise) and `denoise_burst(frames, noise=truth)` (display space, range 1).
"""

from __future__ import annotations

import argparse

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.metrics import BORDER, masked_psnr, saturated_mask
from burstkpn.noise import NoiseLevel
from burstkpn.noise_estimation import total_std
from burstkpn.pipeline import denoise_burst
from burstkpn.testset import build_testset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--clip", choices=["white", "black"], default="white")
    p.add_argument("--gains", nargs="+", default=["1", "4"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--model", default=None)
    args = p.parse_args()
    white = (1.5, 4.0) if args.clip == "white" else (0.05, 0.3)
    ts = build_testset(args.images, gains=args.gains, size=args.size, motion="integer", downsample=2, white_level=white,
                       clip_white=args.clip == "white", clip_black=args.clip == "black", progress=False)
    print(f"{len(ts)} bursts of {args.size}², clipped {args.clip}, exposure {white}")
    print("| gain | estimate / truth (total std), median [min, max] | PSNR estimated | PSNR told the truth | difference, mean [worst] |")
    print("|---|---|---|---|---|")
    for g in ts.gains:
        ratios, est_psnr, true_psnr, refused = [], [], [], 0
        for i in ts.rows(g):
            truth = NoiseLevel(float(ts.sigma_read[i]), float(ts.sigma_shot[i]))
            frames = ts.noisy[i]
            clean = ts.clean[i]
            unclipped = ~saturated_mask(clean) & (clean[BORDER:-BORDER, BORDER:-BORDER] > 0)
            try:
                estimated = denoise_burst(frames, model=args.model)
            except BurstKPNError:  # too clipped to estimate: denoise says so in one line and asks for --noise
                refused += 1
                continue
            told = denoise_burst(frames, noise=truth, model=args.model)
            level = float(np.median(clean[(clean > 0) & (clean < 1)]))
            ratios.append(total_std(estimated.noise, level) / total_std(truth, level))
            est_psnr.append(masked_psnr(estimated.image, clean, unclipped))
            true_psnr.append(masked_psnr(told.image, clean, unclipped))
        diff = np.array(est_psnr) - np.array(true_psnr)
        print(f"| {g} | {np.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] | {np.mean(est_psnr):.2f} | "
              f"{np.mean(true_psnr):.2f} | {diff.mean():+.2f} [{diff.min():+.2f}] |"
              + (f" ({refused} burst(s) too clipped to estimate: refused)" if refused else ""))


if __name__ == "__main__":
    main()
