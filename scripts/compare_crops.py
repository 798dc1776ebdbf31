"""Before/after crops of a denoised image, side by side, and PSNR when the clean image is known:

    python scripts/compare_crops.py BEFORE AFTER -o crops.png [--clean CLEAN] [--crop X,Y,SIZE]

BEFORE/AFTER/CLEAN: DNG or other camera raw (shown as a quick demosaic, compared as mosaics),
8-bit PNG/JPEG (sRGB) or 16-bit TIFF/PNG (linear), or for CLEAN a .npy array in the same units as
the others (what scripts/make_burst.py writes). PSNR is the paper's protocol (`burstkpn.metrics`)
on the whole image. The PNG shows the crops in the order before | after [| clean], 2x enlarged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import read_image, write_png
from burstkpn.io.raw import RAW_SUFFIXES, preview_rgb, read_raw
from burstkpn.metrics import psnr


def load(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels compared, linear RGB for display)."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        data = np.load(p).astype(np.float32)
        return data, (preview_rgb(data, "RGGB") if data.ndim == 2 and data.shape[0] % 2 == 0 else data)
    if p.suffix.lower() in RAW_SUFFIXES:
        frame = read_raw(p)
        return frame.mosaic, preview_rgb(frame.mosaic, frame.pattern, frame.white_balance)
    image = read_image(p)
    from burstkpn.camera import gamma_expand

    linear = image.pixels if image.bit_depth == 16 else gamma_expand(image.pixels)
    return linear.astype(np.float32), linear


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--clean")
    p.add_argument("--crop", default=None, help="X,Y,SIZE in display pixels (default: a centred 192-px square)")
    args = p.parse_args()
    try:
        images = {"before": load(args.before), "after": load(args.after)}
        if args.clean:
            images["clean"] = load(args.clean)
            for name in ("before", "after"):
                print(f"{name}: PSNR {psnr(images[name][0], images['clean'][0]):.2f} dB")
        h, w = images["after"][1].shape[:2]
        x, y, size = (int(v) for v in args.crop.split(",")) if args.crop else ((w - 192) // 2, (h - 192) // 2, 192)
        from burstkpn.camera import linear_to_srgb8

        crops = [np.kron(linear_to_srgb8(np.clip(d[y : y + size, x : x + size], 0, 1)),
                         np.ones((2, 2, 1) if d.ndim == 3 else (2, 2), np.uint8)) for _, d in images.values()]
        gap = np.full((crops[0].shape[0], 6, *crops[0].shape[2:]), 255, np.uint8)
        write_png(args.out, np.concatenate([c for crop in crops for c in (crop, gap)][:-1], axis=1))
    except (BurstKPNError, OSError, ValueError) as exc:
        print(f"compare_crops: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({' | '.join(images)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
