"""What a strided Wiener filter would cost the default in quality, and save in time (not refitted: an upper bound on
the loss a refit could only shrink).

    python scripts/experiments/wiener_stride.py --images ../shared/data/test/lomiri13 --strides 1 2 3 4

The last stage's `dct_wiener` puts an 8x8 DCT patch at every pixel. BM3D's reference code steps its patches by 3
(its "normal" profile) and loses little. Here the shipped default (or --model) runs with the filter's patches every
``stride`` pixels in both directions, every other weight as shipped: per stride, the mean gamma PSNR (dB) of each cell
of the sweep grid (`burstkpn.sweep.grid`, exposures 1 and 0.1-0.3, bf16 autocast as `denoise` runs here), and the
network's time on an 8-frame 480² tile (the fastest of 4 calls, 2 threads). Stride 1 is checked equal to the shipped
filter first.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True, help="held-out photos")
    p.add_argument("--model", default="kpn-refine")
    p.add_argument("--strides", nargs="+", type=int, default=[1, 2, 3, 4])
    p.add_argument("--white-level", nargs="+", default=["1,1", "0.1,0.3"], help="exposure ranges LOW,HIGH")
    args = p.parse_args()
    import burstkpn.models.kpn as kpn
    from burstkpn.metrics import psnr
    from burstkpn.noise import NoiseLevel
    from burstkpn.sweep import cell_testset, grid
    from burstkpn.weights import resolve_model

    torch.set_num_threads(2)
    shipped = kpn.dct_wiener
    model = resolve_model(args.model)[0].eval()
    cells = grid(exposures=[tuple(float(v) for v in r.split(",")) for r in args.white_level])
    sets = [cell_testset(args.images, cell) for cell in cells]
    tile = torch.rand(1, 8, 480, 480, generator=torch.Generator().manual_seed(0)) * 0.5
    scores, seconds = {}, {}
    for stride in args.strides:
        kpn.dct_wiener = lambda *a, stride=stride: shipped(*a[:5], step=stride)  # in place of the stage's own step
        with torch.inference_mode():
            kpn.predict(model, tile, 0.03, 0.01, amp=True)
            best = float("inf")
            for _ in range(4):
                start = time.perf_counter()
                kpn.predict(model, tile, 0.03, 0.01, amp=True)
                best = min(best, time.perf_counter() - start)
        seconds[stride] = best
        scores[stride] = [float(np.mean([psnr(kpn.denoise_array(model, np.ascontiguousarray(ts.noisy[i]), NoiseLevel(
            float(ts.sigma_read[i]), float(ts.sigma_shot[i])), amp=True), ts.clean[i], float(ts.white_level[i]))
            for i in range(len(ts))])) for ts in sets]
    kpn.dct_wiener = shipped
    print(f"{args.model}, the Wiener filter's patches every N px\n")
    print(f"| cell | {' | '.join(f'N = {s}' for s in args.strides)} |\n|---|{'---|' * len(args.strides)}")
    for k, cell in enumerate(cells):
        print(f"| {cell.label} | {' | '.join(f'{scores[s][k]:.2f}' for s in args.strides)} |")
    print(f"| **mean** | {' | '.join(f'{np.mean(scores[s]):.2f}' for s in args.strides)} |")
    print(f"| 480² tile, s | {' | '.join(f'{seconds[s]:.3f}' for s in args.strides)} |")


if __name__ == "__main__":
    main()
