"""Clipped highlights and shadows, measured (issue 27): methods on clipped bursts beside the same bursts unclipped.

    python scripts/clipped_table.py --images ../shared/data/test/lomiri13 --clip white --model kpn --out docs/clipping.md

Per gain: PSNR over the pixels the truth does not clip, on the clipped bursts and on their unclipped twin
(same scenes, shifts and noise draws); the highlight bias (mean output minus white over truly saturated
pixels, % of white); PSNR in the 4-px band around blown regions (halo). Display space, data range 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from burstkpn.evaluate import resolve_methods
from burstkpn.sweep import clipped_markdown, run_clipped


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True, help="held-out photos")
    p.add_argument("--methods", default="reference,aligned-average,hdrplus,bm3d-merged")
    p.add_argument("--model", nargs="*", default=["kpn"])
    p.add_argument("--clip", choices=["white", "black"], default="white")
    p.add_argument("--white-level", default=None, help="exposure LOW,HIGH (default 1.5,4 for white, 0.05,0.3 for black)")
    p.add_argument("--gains", nargs="+", default=["1", "2", "4"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-image", type=int, default=1)
    p.add_argument("--declip", action="store_true", help="also each method's output through noise.declip (rows NAME declip)")
    p.add_argument("--impute", action="store_true",
                   help="also each method on the bursts with their cut black values filled in first (rows NAME imputed: what denoise does)")
    p.add_argument("--out")
    args = p.parse_args()
    methods = resolve_methods(args.methods, args.model)  # files or shipped names
    text = args.white_level or ("1.5,4" if args.clip == "white" else "0.05,0.3")
    white = tuple(float(v) for v in text.split(","))
    result = run_clipped(args.images, methods, args.gains, args.clip, white, args.size, args.per_image,
                         declip=args.declip, impute=args.impute)
    out = (f"`{' '.join(['python'] + sys.argv)}`\n\n{result['bursts']} bursts of {args.size}² (8 frames, whole-pixel "
           f"shifts, content scale 2, exposure {white[0]:g}-{white[1]:g}, clipped at {'1' if args.clip == 'white' else '0'}; "
           f"{100 * result['saturated_share']:.1f} % of pixels saturated in the truth), {result['seconds'] / 60:.1f} min "
           f"({time.strftime('%Y-%m-%d')}).\n\n" + clipped_markdown(result))
    print(out)
    if args.out:
        from burstkpn.io.images import atomic_output

        with atomic_output(args.out) as tmp:
            tmp.write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
