"""Issue 25's first measurement, rerun through the command: static bursts as 16-bit linear PNGs, `burstkpn denoise`.

    python scripts/experiments/static_through_denoise.py --images ../shared/data/test/mcmaster18 --count 6 \
        --noise 0.01,0.005 0.002,0.0005

For each photo: a centre crop (--size px) made grayscale and linear (`camera.srgb8_to_linear`), 8 frames of it with
shot and read noise (var = sigma_read² + sigma_shot·x, `burstkpn.noise`), no motion at all, written as 16-bit
PNGs; then `burstkpn denoise DIR -o out.tif --noise SR,SS --quiet` (the CLI, in a subprocess) told the true
noise, and for comparison the noisy reference, the plain mean and bm3d-merged (the library call). Each entry: mean
linear PSNR (dB, white level 1, whole image) over the photos; seed 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from burstkpn.baselines.bm3d import bm3d_merged
from burstkpn.camera import srgb8_to_linear
from burstkpn.metrics import psnr
from burstkpn.noise import NoiseLevel, add_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True, help="a folder of held-out photos")
    p.add_argument("--count", type=int, default=6, help="photos taken (sorted by name)")
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--noise", nargs="+", default=["0.01,0.005", "0.002,0.0005"], help="SIGMA_READ,SIGMA_SHOT")
    p.add_argument("--frames", type=int, default=8)
    args = p.parse_args()
    photos = sorted(f for f in args.images.iterdir() if f.suffix.lower() in (".png", ".tif", ".tiff", ".jpg"))[: args.count]
    if not photos:
        sys.exit(f"no photos (png, tif, jpg) in {args.images}")
    rng = np.random.default_rng(0)
    start = time.time()
    print("| noise (sigma_read, sigma_shot) | reference | plain mean | bm3d-merged | `denoise` (default model) |\n|---|---|---|---|---|")
    for level in args.noise:
        sr, ss = (float(v) for v in level.split(","))
        noise = NoiseLevel(sr, ss)
        rows = []
        for photo in photos:
            rgb = np.asarray(Image.open(photo).convert("RGB"))
            h, w = rgb.shape[:2]
            top, left = max(0, (h - args.size) // 2), max(0, (w - args.size) // 2)
            clean = srgb8_to_linear(rgb[top : top + args.size, left : left + args.size]).mean(axis=2).astype(np.float32)
            burst = np.clip(np.stack([add_noise(clean, noise, rng) for _ in range(args.frames)]), 0, 1).astype(np.float32)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "burst"
                folder.mkdir()
                for i, frame in enumerate(burst):
                    Image.fromarray(np.round(frame * 65535).astype(np.uint16)).save(folder / f"frame_{i:02d}.png")
                frames = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 65535 for f in sorted(folder.glob("*.png"))])
                out = Path(tmp) / "out.tif"
                subprocess.run([sys.executable, "-m", "burstkpn.cli", "denoise", str(folder), "-o", str(out), "--noise",
                                f"{sr},{ss}", "--quiet"], check=True, capture_output=True)
                denoised = tifffile.imread(out).astype(np.float32)
                denoised = denoised / 65535 if denoised.max() > 2 else denoised
            rows.append([psnr(frames[0], clean, 1.0), psnr(frames.mean(0), clean, 1.0),
                         psnr(bm3d_merged(frames, noise), clean, 1.0), psnr(denoised, clean, 1.0)])
        print(f"| {sr}, {ss} | " + " | ".join(f"{v:.2f}" for v in np.mean(rows, axis=0)) + " |", flush=True)
    print(f"\n{len(photos)} photos of {args.size}² from {args.images}, {args.frames} static frames, in "
          f"{(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
