"""Where the halo error around blown highlights sits: bias and RMSE by distance from the blown region.

    python scripts/experiments/halo_profile.py --images ../shared/data/test/lomiri13 --methods aligned-average --model kpn

The white-clipped set of `scripts/clipped_table.py --clip white` (whole-pixel shifts, content scale 2, exposure
1.5-4, gains 1 / 2 / 4, 64², one scene per photo). Each method's output is declipped as `denoise` does
(`pipeline.declip_output`); per gain, the mean and RMS of (output - truth) in display space (sRGB curve, range 1,
8-px border) over the pixels 1-2 px and 3-4 px from a truly saturated pixel (the halo band of `metrics.halo_band`).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--methods", default="aligned-average")
    p.add_argument("--model", nargs="*", default=["kpn"])
    args = p.parse_args()
    from scipy import ndimage

    from burstkpn.evaluate import resolve_methods
    from burstkpn.metrics import BORDER, halo_band, saturated_mask, to_display
    from burstkpn.noise import NoiseLevel
    from burstkpn.pipeline import declip_output
    from burstkpn.testset import build_testset

    warnings.simplefilter("ignore")
    methods = resolve_methods(args.methods, args.model)  # files or shipped names
    bursts = build_testset(args.images, gains=["1", "2", "4"], size=64, per_image=1, seed=0, motion="integer",
                           progress=False, downsample=2, white_level=(1.5, 4.0), clip_white=True)
    print("| method | gain | 1-2 px: bias / RMSE | 3-4 px: bias / RMSE |")
    print("|---|---|---|---|")
    for m in methods:
        stats: dict[tuple[int, int], list] = {}
        for i in range(len(bursts)):
            noise = NoiseLevel(float(bursts.sigma_read[i]), float(bursts.sigma_shot[i]))
            truth = np.clip(bursts.clean[i], 0, 1)
            blown = saturated_mask(truth)
            band = halo_band(blown)
            if not band.any():
                continue
            out = np.asarray(m.denoise(np.ascontiguousarray(bursts.noisy[i]), noise), np.float32)
            out = declip_output(out[None], bursts.noisy[i][None], noise)[0][0]
            error = to_display(out, 1.0, BORDER) - to_display(truth, 1.0, BORDER)
            distance = ndimage.distance_transform_edt(~blown)
            for ring, sel in enumerate((band & (distance <= 2), band & (distance > 2))):
                if sel.any():
                    stats.setdefault((int(bursts.gain[i]), ring), []).append((error[sel].mean(), (error[sel] ** 2).mean()))
        for g in sorted({g for g, _ in stats}):
            cells = []
            for ring in (0, 1):
                v = np.array(stats[(g, ring)])
                cells.append(f"{v[:, 0].mean():+.5f} / {np.sqrt(v[:, 1].mean()):.5f}")
            print(f"| {m.name} | {g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
