"""PSNR of a synthetic raw burst's outputs against its clean mosaic, beside the noisy reference and the aligned mean.

    python scripts/make_burst.py --out raw12 --megapixels 12 --gain 4
    burstkpn denoise raw12 -o kpn.dng --model kpn
    python scripts/experiments/raw_example_psnr.py raw12 raw12.clean.npy kpn.dng [more.dng ...]

Mosaic PSNR in the paper's display space (`metrics.psnr`: the sRGB curve on the linear mosaic, white level 1,
8-px border), not on linear values. The aligned mean: one global shift per frame
from the green planes' mean (phase correlation), the same bilinear warp on every plane, also with the shifts
rounded to whole plane pixels.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.align.shifts import estimate_global_shifts, warp_frames
from burstkpn.io.bursts import load_burst
from burstkpn.io.raw import bayer_planes, mosaic_from_planes, read_raw
from burstkpn.metrics import psnr


def aligned_mean(planes: torch.Tensor, shifts: torch.Tensor) -> np.ndarray:
    """planes (N, 4, h, w), shifts (N, 2) -> the mean mosaic after warping every plane of frame i by shift i."""
    aligned = torch.stack([warp_frames(planes[:, c][None], shifts[None])[0] for c in range(planes.shape[1])], 1)
    aligned[0] = planes[0]
    return mosaic_from_planes(aligned.mean(0).numpy())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("burst", help="the folder of DNG frames")
    p.add_argument("clean", help="the clean reference mosaic (.npy, as make_burst.py writes it)")
    p.add_argument("outputs", nargs="*", help="denoised DNGs to score")
    args = p.parse_args()
    clean = np.load(args.clean).astype(np.float32)
    burst = load_burst([args.burst])
    planes = torch.from_numpy(np.stack([bayer_planes(f) for f in burst.frames]))
    shifts = estimate_global_shifts(planes[:, 1:3].mean(1)[None])[0]
    print(f"noisy reference: {psnr(burst.frames[0], clean):.2f} dB")
    print(f"aligned mean: {psnr(aligned_mean(planes, shifts), clean):.2f} dB "
          f"(whole-pixel shifts: {psnr(aligned_mean(planes, shifts.round()), clean):.2f} dB)")
    for path in args.outputs:
        print(f"{path}: {psnr(read_raw(path).mosaic, clean):.2f} dB")


if __name__ == "__main__":
    main()
