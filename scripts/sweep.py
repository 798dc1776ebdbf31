"""The sweep table: exposure x motion x content scale x noise level, methods as rows, one run (`burstkpn.sweep`).

    python scripts/sweep.py --images ../shared/data/test/lomiri13 --model kpn --out docs/sweep.md

Cells are seeded test sets (`burstkpn synth` options --motion, --downsample, --gains, --white-level);
each cell reads "gamma PSNR / linear PSNR" (dB, white level divided out, clipped to [0, 1], 8-px border).
"""

from __future__ import annotations

import argparse
import sys
import time

from burstkpn.errors import BurstKPNError
from burstkpn.evaluate import resolve_methods
from burstkpn.sweep import DEFAULT_GAINS, DEFAULT_MOTIONS, DEFAULT_SCALES, grid, markdown, run_sweep


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True, help="held-out photos (never used in training)")
    p.add_argument("--methods", default="reference,aligned-average,hdrplus,bm3d-merged,bm4d-aligned")
    p.add_argument("--model", nargs="*", default=["kpn"], help="weights files or shipped model names")
    p.add_argument("--max-bursts", nargs="*", default=["bm4d-aligned=3"], help="NAME=K: K scenes per cell for NAME")
    p.add_argument("--motions", nargs="+", default=list(DEFAULT_MOTIONS))
    p.add_argument("--scales", nargs="+", type=int, default=list(DEFAULT_SCALES))
    p.add_argument("--gains", nargs="+", default=list(DEFAULT_GAINS))
    p.add_argument("--white-level", nargs="+", default=["1,1"],
                   help="exposure ranges LOW,HIGH, one axis of the grid (default 1,1: well exposed; e.g. 1,1 0.1,0.3)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-image", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the table (with its command and run time) to this Markdown file")
    args = p.parse_args()
    try:
        exposures = [tuple(float(v) for v in r.split(",")) for r in args.white_level]
        if any(len(r) != 2 for r in exposures):
            raise ValueError
    except ValueError:
        p.error(f"--white-level takes LOW,HIGH pairs, got {' '.join(args.white_level)}")
    names = {n.strip() for n in args.methods.split(",")}
    limits = [item for item in args.max_bursts if item.rpartition("=")[0] in names]  # only for methods that run
    methods = resolve_methods(args.methods, args.model, limits)  # files or shipped names
    try:
        cells = grid(args.motions, args.scales, args.gains, exposures=exposures)
    except BurstKPNError as e:
        p.error(str(e))
    sweep = run_sweep(args.images, cells, methods, size=args.size, per_image=args.per_image, seed=args.seed)
    scenes = sorted(set(sweep["scenes"].values()))
    text = (f"`{' '.join(['python'] + sys.argv)}`\n\n{len(cells)} cells x {scenes} scenes of {args.size}² (8 frames, seed "
            f"{args.seed}), in {sweep['seconds'] / 60:.1f} min ({time.strftime('%Y-%m-%d')}). Cell = motion, content scale "
            f"(area downsampling), gain (base = base ISO); each entry: gamma PSNR / linear PSNR (dB), a count in "
            f"brackets when a method ran on fewer scenes.\n\n" + markdown(sweep))
    print(text)
    if args.out:
        from burstkpn.io.images import atomic_output

        with atomic_output(args.out) as tmp:
            tmp.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
