"""``burstkpn synth``: build an evaluation test set (see `burstkpn.testset`)."""

from __future__ import annotations

import argparse
import time

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import check_output_file
from burstkpn.synth import MOTIONS
from burstkpn.testset import build_testset, save_testset


def parse_white_level(text: str) -> tuple[float, float]:
    """``"0.5"`` -> (0.5, 0.5); ``"0.1,1"`` -> (0.1, 1.0); a one-line error otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not 0 < values[0] <= values[-1] < float("inf"):
        raise BurstKPNError(f"--white-level must be a level or LOW,HIGH with 0 < LOW <= HIGH, got {text!r}")
    return values[0], values[-1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, nargs="+", help="folder(s) or files of clean photos")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--gains", nargs="+", default=["1", "2", "4", "8"],
                   help="evaluation gains: 1 2 4 8 (the paper's) and base (base ISO: sigma_read 0.002, sigma_shot 0.0005)")
    p.add_argument("--size", type=int, default=128, help="burst side in pixels (default 128)")
    p.add_argument("--frames", type=int, default=8, help="frames per burst (default 8)")
    p.add_argument("--per-image", type=int, default=1, help="scenes cut from each photo (default 1)")
    p.add_argument("--motion", choices=list(MOTIONS), default="global",
                   help="global: the paper's per-frame translations; local: plus rotation/scale and a moving object; "
                        "static: frames line up exactly; integer: whole-pixel shifts; subpixel: the paper's small shifts only")
    p.add_argument("--downsample", type=int, choices=[1, 2, 4], default=4,
                   help="content scale: area downsampling of the photo (the paper's 4; 1 keeps full-resolution detail)")
    p.add_argument("--white-level", default="0.1,1",
                   help="exposure: a white level or a LOW,HIGH range (log-uniform; default 0.1,1; above 1 the scene is "
                        "brighter than the sensor's range: use with --clip white)")
    p.add_argument("--clip", choices=["none", "white", "black", "both"], default="none",
                   help="clip the noisy frames as a sensor does: at 1 (saturated highlights), at 0 (black-subtracted raw)")
    p.add_argument("--colour", choices=["bayer", "rgb"], default=None,
                   help="a colour set (format version 2): each photo unprocessed into linear camera RGB with a random camera "
                        "per burst (Brooks et al. 2019); bayer: RGGB mosaics, noise on the mosaic (--size even); rgb: three "
                        "channels, no mosaic (default: grayscale, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    check_output_file(args.out)
    parse_white_level(args.white_level)  # fail before the work
    testset = build_testset(
        args.images, gains=args.gains, size=args.size, per_image=args.per_image,
        seed=args.seed, frames=args.frames, motion=args.motion, progress=not args.quiet,
        downsample=args.downsample, white_level=parse_white_level(args.white_level),
        clip_white=args.clip in ("white", "both"), clip_black=args.clip in ("black", "both"),
        **({"colour": args.colour} if getattr(args, "colour", None) else {}),
    )
    save_testset(testset, args.out)
    meta = testset.meta
    if meta["skipped"]:
        print(f"skipped {len(meta['skipped'])} image(s) too small for {args.size}-px bursts: {', '.join(meta['skipped'])}")
    print(
        f"wrote {args.out}: {len(testset)} bursts ({len(testset) // len(meta['gains'])} scenes x gains {meta['gains']}), "
        f"{meta['frames']} frames of {args.size}x{args.size}" + (f" {meta['colour']}" + (f" ({meta['pattern']})" if "pattern" in meta else "")
                                                                 if "colour" in meta else "")
        + f", {meta['motion']} motion, seed {args.seed}, in {time.perf_counter() - start:.1f} s"
    )
    return 0
