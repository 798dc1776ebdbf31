"""Black-clipped bursts: declip the merge (what `denoise` does) against imputing the clipped values first.

    python scripts/experiments/black_clip_imputation.py --images ../shared/data/test/lomiri13 --model kpn

The black-clipped set of `scripts/clipped_table.py --clip black` (whole-pixel shifts, content scale 2, exposure
0.05-0.3, gains 1 / 2 / 4, 64², one scene per photo). Per method, PSNR on the truth's unclipped pixels (display
space, range 1) of: the merge as it is; the merge through `noise.declip`; the method run on frames whose values at 0
were replaced by their expectation given that they were cut (E[v | v <= 0] for v ~ N(y, var(y)), y from the frame's
5x5 mean declipped, `noise.impute_black`, what `denoise` now does before its model); and that output declipped as well.
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
    from burstkpn.evaluate import resolve_methods
    from burstkpn.metrics import BORDER, masked_psnr, saturated_mask
    from burstkpn.noise import NoiseLevel, declip, impute_black
    from burstkpn.testset import build_testset

    warnings.simplefilter("ignore")
    methods = resolve_methods(args.methods, args.model)  # files or shipped names
    common = dict(gains=["1", "2", "4"], size=64, per_image=1, seed=0, motion="integer", progress=False, downsample=2,
                  white_level=(0.05, 0.3))
    clipped = build_testset(args.images, clip_black=True, **common)
    twin = build_testset(args.images, **common)
    print("| method | gain | as merged | declipped | imputed | imputed, declipped | unclipped twin |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        per_gain: dict[int, list] = {}
        for i in range(len(clipped)):
            noise = NoiseLevel(float(clipped.sigma_read[i]), float(clipped.sigma_shot[i]))
            truth = np.clip(twin.clean[i], 0, 1)
            mask = ~saturated_mask(truth) & (truth[BORDER:-BORDER, BORDER:-BORDER] > 0)
            merged = np.asarray(m.denoise(np.ascontiguousarray(clipped.noisy[i]), noise), np.float32)
            imputed = np.asarray(m.denoise(impute_black(clipped.noisy[i], noise), noise), np.float32)
            unclipped = np.asarray(m.denoise(np.ascontiguousarray(twin.noisy[i]), noise), np.float32)
            outputs = (merged, declip(merged, noise, 0.0, None), imputed, declip(imputed, noise, 0.0, None), unclipped)
            per_gain.setdefault(int(clipped.gain[i]), []).append([masked_psnr(o, truth, mask) for o in outputs])
        for g, values in sorted(per_gain.items()):
            print(f"| {m.name} | {g} | " + " | ".join(f"{v:.2f}" for v in np.nanmean(values, axis=0)) + " |", flush=True)


if __name__ == "__main__":
    main()
