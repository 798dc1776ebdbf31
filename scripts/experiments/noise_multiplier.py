"""What a model does when told more (or less) noise than the truth, on every cell of the sweep grid.

    python scripts/experiments/noise_multiplier.py kpn --images ../shared/data/test/lomiri13 --factors 1 1.5 2 3 5

Each cell is the sweep's seeded test set (`burstkpn.sweep.grid`, well-exposed and dark exposures); each entry the
mean gamma PSNR (dB) of the model given sigma_read and sigma_shot times the factor (bf16 autocast, as `denoise`
runs on CPUs with native bf16). A model whose kernels are calibrated gains nothing from a wrong noise level; one
that gains on some cells and loses on others needs the noise it is told to depend on what the frames show.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.metrics import psnr
from burstkpn.models.kpn import denoise_array
from burstkpn.noise import NoiseLevel
from burstkpn.sweep import cell_testset, grid
from burstkpn.weights import resolve_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="weights file or shipped model name")
    p.add_argument("--images", nargs="+", required=True, help="held-out photos")
    p.add_argument("--factors", nargs="+", type=float, default=[1, 1.5, 2, 3, 5])
    p.add_argument("--white-level", nargs="+", default=["1,1", "0.1,0.3"], help="exposure ranges LOW,HIGH")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model)[0].eval()
    exposures = [tuple(float(v) for v in r.split(",")) for r in args.white_level]
    total = np.zeros(len(args.factors))
    cells = grid(exposures=exposures)
    print(f"| cell | {' | '.join(f'x{f:g}' for f in args.factors)} |\n|---|{'---|' * len(args.factors)}")
    for cell in cells:
        ts = cell_testset(args.images, cell)
        row = []
        for f in args.factors:
            scores = [psnr(denoise_array(model, np.ascontiguousarray(ts.noisy[i]), NoiseLevel(
                f * float(ts.sigma_read[i]), f * float(ts.sigma_shot[i])), amp=True), ts.clean[i], float(ts.white_level[i]))
                for i in range(len(ts))]
            row.append(float(np.mean(scores)))
        total += row
        print(f"| {cell.label} | {' | '.join(f'{v:.2f}' for v in row)} |", flush=True)
    print(f"| mean | {' | '.join(f'{v / len(cells):.2f}' for v in total)} |")


if __name__ == "__main__":
    main()
