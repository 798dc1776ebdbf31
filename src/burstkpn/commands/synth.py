"""``burstkpn synth``: build an evaluation test set (see `burstkpn.testset`)."""

from __future__ import annotations

import argparse
import time

from burstkpn.io.images import check_output_file
from burstkpn.testset import build_testset, save_testset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, nargs="+", help="folder(s) or files of clean photos")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--gains", nargs="+", default=["1", "2", "4", "8"], help="evaluation gains (1 2 4 8)")
    p.add_argument("--size", type=int, default=128, help="burst side in pixels (default 128)")
    p.add_argument("--frames", type=int, default=8, help="frames per burst (default 8)")
    p.add_argument("--per-image", type=int, default=1, help="scenes cut from each photo (default 1)")
    p.add_argument("--motion", choices=["global", "local"], default="global",
                   help="global: the paper's per-frame translations; local: plus rotation/scale and a moving object")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    check_output_file(args.out)
    testset = build_testset(
        args.images, gains=args.gains, size=args.size, per_image=args.per_image,
        seed=args.seed, frames=args.frames, motion=args.motion, progress=not args.quiet,
    )
    save_testset(testset, args.out)
    meta = testset.meta
    if meta["skipped"]:
        print(f"skipped {len(meta['skipped'])} image(s) too small for {args.size}-px bursts: {', '.join(meta['skipped'])}")
    print(
        f"wrote {args.out}: {len(testset)} bursts ({len(testset) // len(meta['gains'])} scenes x gains {meta['gains']}), "
        f"{meta['frames']} frames of {args.size}x{args.size}, {meta['motion']} motion, seed {args.seed}, in {time.perf_counter() - start:.1f} s"
    )
    return 0
