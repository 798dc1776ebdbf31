"""Write a synthetic burst from any photo, as 8 camera-raw DNGs or 8 sRGB PNGs, e.g. to try
`burstkpn denoise` or to check memory at 12 megapixels:

    python scripts/make_burst.py --out raw12 --megapixels 12            # scikit-image's astronaut, upscaled
    python scripts/make_burst.py --photo PHOTO.jpg --out pngs --format png --gain 4

The photo is linearised, resized to the requested size (Lanczos), shifted by up to ±8 px per frame
and given the noise of the chosen gain (METHOD §1.3). DNG: mosaicked RGGB (shifts in whole Bayer
blocks), with black/white levels and the NoiseProfile tag that a camera writes; the clean reference
mosaic is saved beside the folder as OUT.clean.npy. PNG: 8-bit sRGB colour frames; the clean
reference is OUT.clean.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from burstkpn.camera import linear_to_srgb8, srgb8_to_linear
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import write_png
from burstkpn.noise import add_noise, noise_level_for_gain
from burstkpn.raw_synth import write_raw_burst


def load_photo(path: str | None, megapixels: float | None) -> np.ndarray:
    """(H, W, 3) linear; resized so that H*W ~ megapixels (4:3 crop kept as the photo's aspect)."""
    from PIL import Image

    if path is None:
        from skimage import data

        image = Image.fromarray(data.astronaut())
    else:
        image = Image.open(path).convert("RGB")
    if megapixels:
        scale = np.sqrt(megapixels * 1e6 / (image.width * image.height))
        image = image.resize((int(image.width * scale) // 2 * 2, int(image.height * scale) // 2 * 2), Image.LANCZOS)
    return srgb8_to_linear(np.asarray(image))


def write_png_burst(folder: Path, rgb: np.ndarray, frames: int, noise, shift: int, seed: int):
    """8-bit sRGB frames (frame_00.png, ...) of ``rgb`` shifted by up to ``shift`` px; FOLDER.clean.png is the reference."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[0] - 2 * shift, rgb.shape[1] - 2 * shift
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(frames):
        dy, dx = (0, 0) if i == 0 else rng.integers(-shift, shift + 1, size=2)
        crop = rgb[shift + dy : shift + dy + h, shift + dx : shift + dx + w]
        if i == 0:
            write_png(folder.with_suffix(".clean.png"), linear_to_srgb8(crop))
            clean = crop
        paths.append(folder / f"frame_{i:02d}.png")
        write_png(paths[-1], linear_to_srgb8(np.clip(add_noise(crop, noise, rng), 0, 1)))
    return clean, paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for frame_00.dng (or .png) ... and the clean reference")
    p.add_argument("--format", choices=["dng", "png"], default="dng")
    p.add_argument("--photo", help="a photo (default: scikit-image's astronaut)")
    p.add_argument("--megapixels", type=float, help="resize the photo to about this many pixels")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--gain", type=float, default=4.0, help="noise level as in Table 1 (1, 2, 4, 8)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        rgb = load_photo(args.photo, args.megapixels)
        noise = noise_level_for_gain(args.gain)
        if args.format == "dng":
            clean, paths = write_raw_burst(args.out, rgb, frames=args.frames, noise=noise, shift=8, seed=args.seed)
            np.save(Path(args.out).with_suffix(".clean.npy"), clean)
        else:
            clean, paths = write_png_burst(Path(args.out), rgb, args.frames, noise, shift=8, seed=args.seed)
    except (BurstKPNError, OSError) as exc:
        print(f"make_burst: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} {args.format.upper()}s of {clean.shape[1]}x{clean.shape[0]} to {args.out} "
          f"(gain {args.gain:g}: sigma_read={noise.sigma_read:.4g}, sigma_shot={noise.sigma_shot:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
