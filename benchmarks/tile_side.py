"""Network + kernel time per megapixel of one tile, by tile side (docs/speed-pipeline.md, section 6).

    python benchmarks/tile_side.py src/burstkpn/pretrained/kpn.safetensors 256 384 544 768 1024

`pipeline.denoise_tile` (the model on one pre-aligned tile, as `burstkpn denoise` runs it) on a random 8-frame
tile of each side, after a 64² warm-up; best of ``--repeats`` runs, in this process, ``--threads`` threads.
A joint model gets as many planes as it takes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from burstkpn.noise import NoiseLevel
from burstkpn.pipeline import denoise_tile
from burstkpn.weights import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("sides", nargs="+", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.weights)
    planes = getattr(model.config, "planes", None) or 1
    level = NoiseLevel(0.02, 0.01)
    for side in args.sides:
        tile = np.random.default_rng(0).random((planes, model.config.frames, side, side), dtype=np.float32) * 0.5
        denoise_tile(model, tile[..., :64, :64], level)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            denoise_tile(model, tile, level)
            times.append(time.perf_counter() - start)
        print(f"{side}²: {min(times) / (side * side / 1e6):.2f} s/MP", flush=True)


if __name__ == "__main__":
    main()
