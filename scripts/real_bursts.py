"""Real raw bursts through `burstkpn denoise`'s pipeline: the noise estimates side by side, and one picture.

    python scripts/real_bursts.py ../shared/data/real_bursts/hdrplus-window --out docs/real-burst.png

For each folder of DNG frames (frame 0 the reference; at most --frames frames, in name order): the spatial and
the temporal noise estimate of the CFA planes (`noise_estimation.estimate_burst_noise`) and which one
`denoise` uses; then the reference frame, the aligned average (per CFA plane), HDR+ (per plane, told the
estimated noise) and the default model (`burstkpn.denoise_burst`), as half-resolution white-balanced
previews with one brightness gain for all, side by side on a crop (the figure's title says which).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bursts", nargs="+", help="folders of DNG frames")
    p.add_argument("--frames", type=int, default=8, help="frames per burst (default 8)")
    p.add_argument("--model", default=None, help="weights or a shipped model name (default: the shipped default)")
    p.add_argument("--crop", default=None, help="X,Y,SIZE in preview pixels (default: the centre, 240 px)")
    p.add_argument("--out", help="PNG to write (one row per burst)")
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from burstkpn.baselines.average import aligned_average
    from burstkpn.baselines.hdrplus import hdrplus
    from burstkpn.camera import srgb_curve
    from burstkpn.io.bursts import burst_paths
    from burstkpn.io.raw import mosaic_from_planes, preview_rgb
    from burstkpn.noise_estimation import estimate_burst_noise
    from burstkpn.pipeline import denoise_burst, load_input, split_channels

    rows = []
    for folder in args.bursts:
        paths = burst_paths([folder])[: args.frames]
        burst = load_input(paths)
        planes = split_channels(burst)  # (4, n, H/2, W/2)
        estimate = estimate_burst_noise(planes)
        print(f"{folder}: {len(paths)} frames, {burst.frames.shape[2]}x{burst.frames.shape[1]} mosaic, "
              f"{100 * float((burst.frames[0] >= 1).mean()):.1f} % at white, {100 * float((burst.frames[0] <= 0).mean()):.1f} % at 0")
        print(f"  spatial  (sigma_read, sigma_shot) = ({estimate.spatial.sigma_read:.3g}, {estimate.spatial.sigma_shot:.3g})"
              if estimate.spatial else "  spatial: none")
        print(f"  temporal (sigma_read, sigma_shot) = ({estimate.temporal.sigma_read:.3g}, {estimate.temporal.sigma_shot:.3g})"
              if estimate.temporal else "  temporal: none")
        print(f"  temporal/spatial total std at the median unclipped intensity: {estimate.ratio:.2f}; "
              f"denoise uses the {estimate.chosen} estimate")
        start = time.perf_counter()
        result = denoise_burst(paths, model=args.model)
        print(f"  {result.model}: {result.seconds:.1f} s (noise {result.noise})")
        methods = {
            "reference": burst.frames[0],
            "aligned average": mosaic_from_planes(np.stack([aligned_average(p, estimate.noise) for p in planes])),
            "HDR+": mosaic_from_planes(np.stack([hdrplus(p, estimate.noise) for p in planes])),
            f"{result.model} (default)": result.image,
        }
        print(f"  all methods: {time.perf_counter() - start:.1f} s")
        ref = burst.raw_reference
        previews = {k: preview_rgb(v, ref.pattern, ref.white_balance) for k, v in methods.items()}
        h, w = previews["reference"].shape[:2]
        if args.crop:
            x, y, side = (int(v) for v in args.crop.split(","))
        else:
            side = min(240, h, w)
            x, y = (w - side) // 2, (h - side) // 2
        gain = 0.18 / max(float(np.median(previews["reference"])), 1e-4)  # one brightness gain for every panel
        rows.append((Path(folder).name, {k: srgb_curve(np.clip(v[y : y + side, x : x + side] * gain, 0, 1))
                                         for k, v in previews.items()}, gain, (x, y, side)))
    if args.out:
        fig, axes = plt.subplots(len(rows), 4, figsize=(16, 4.3 * len(rows)), squeeze=False)
        for r, (name, panels, gain, (x, y, side)) in enumerate(rows):
            for c, (label, image) in enumerate(panels.items()):
                axes[r, c].imshow(image, interpolation="nearest")
                axes[r, c].set_title(f"{name}: {label}" if c == 0 else label, fontsize=11)
                axes[r, c].axis("off")
            axes[r, 0].text(0, side + 12, f"crop x={x} y={y} {side}px of the half-resolution preview, gain {gain:.1f}",
                            fontsize=8, va="top")
        fig.tight_layout()
        fig.savefig(args.out, dpi=80)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
