"""``burstkpn denoise``: a real burst (image folder, 16-bit TIFF/PNG, camera raw/DNG) -> a clean image.

A thin layer: the arguments go to `burstkpn.pipeline.denoise_burst` (the pipeline) and its result to
`burstkpn.io.outputs.write_denoised` (the files, written atomically, settings as JSON beside them).
Many bursts (a folder of burst folders, or ``--list FILE``) go to `burstkpn.batch.denoise_bursts`.
"""

from __future__ import annotations

import argparse

from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="a folder, or the files of one burst (sorted by name); or a folder of burst folders "
                        "(no frames of its own, subfolders that have them): many bursts, one output each in the -o folder")
    p.add_argument("-o", "--out", required=True,
                   help="output file, or a folder (existing, or written with a trailing /) to write <burst name>.<suffix> "
                        "in; the suffix follows the input: .png (8-bit), .tif + .preview.png (16-bit/float, raw "
                        "--raw-mode half), .dng + .preview.png (raw --raw-mode full); a note says when it changes yours. "
                        "Many bursts: always a folder")
    p.add_argument("--list", metavar="FILE",
                   help="many bursts: a text file naming one burst folder per line (relative to the file's folder) "
                        "instead of INPUT")
    p.add_argument("--workers", type=int,
                   help="many bursts: worker processes on this machine (default 1; each runs on cores/workers threads). "
                        "Under torchrun each rank takes every WORLD_SIZE-th burst")
    p.add_argument("--model", help="weights file (.safetensors) or the name of a shipped model (kpn, kpn-variable, kpn-local, ...); "
                                    "default: the model shipped with burstkpn")
    p.add_argument("--noise", default="auto",
                   help="auto (DNG NoiseProfile tag, else estimated from the burst) or SIGMA_READ,SIGMA_SHOT "
                        "of the input frames in linear [0, 1] units (var = σr² + σs·x)")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="pre-align the frames to the reference with HDR+ tile alignment (default on)")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: from --memory-gb)")
    p.add_argument("--memory-gb", type=float, default=2.0,
                   help="memory budget for the work on one tile: alignment and network (default 2)")
    p.add_argument("--reference", type=int, default=0, help="index of the reference frame in name order (default 0)")
    p.add_argument("--raw-mode", choices=["full", "half"], default="full",
                   help="full: each CFA plane denoised, re-mosaicked to a DNG (default); "
                        "half: the paper's 2x2 Bayer mean, a half-resolution grayscale TIFF")
    p.add_argument("--gamma-16bit", action="store_true", help="16-bit inputs are gamma-encoded, not linear")
    p.add_argument("--before", action="store_true", help="also write the noisy reference as <out>.before.png")
    p.add_argument("--report", action="store_true",
                   help="also write <out>.report.html: before/after slider and the kernels (self-contained)")
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all cores)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast around the network (default: on where the CPU/GPU has native bf16 units, "
                        "-0.01 dB on the test set and faster; emulated bf16 is ~20x slower)")
    p.add_argument("--ensemble", action="store_true",
                   help="average the model over the 8 flips/rotations of the burst (8x the time; the gain is in docs/results.md)")
    p.add_argument("--declip", action=argparse.BooleanOptionalAction, default=True,
                   help="where the frames clip: fill in values cut at black before the network, declip the output next to white (default: on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_noise(text: str) -> NoiseLevel | None:
    """``"auto"`` -> None; ``"0.01,0.002"`` -> NoiseLevel(0.01, 0.002); one-line error otherwise."""
    if text == "auto":
        return None
    try:
        read, shot = (float(v) for v in text.split(","))
    except ValueError:
        raise BurstKPNError(f"--noise must be auto or SIGMA_READ,SIGMA_SHOT (e.g. 0.01,0.002), got {text!r}") from None
    return NoiseLevel(read, shot)


def run(args: argparse.Namespace) -> int:
    from burstkpn.batch import is_burst_collection
    from burstkpn.io.outputs import check_output_target, write_denoised
    from burstkpn.pipeline import denoise_burst

    if args.list is not None or (len(args.inputs) == 1 and is_burst_collection(args.inputs[0])):
        return run_many(args)
    if not args.inputs:
        raise BurstKPNError("no input given: pass a folder, the files of one burst, a folder of burst folders, or --list FILE")
    if args.workers is not None:
        raise BurstKPNError("--workers is for many bursts: a folder of burst folders, or --list FILE")
    check_output_target(args.out)  # fail before the work, not after it
    noise = parse_noise(args.noise)
    if args.threads is not None:
        if args.threads < 1:
            raise BurstKPNError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    result = denoise_burst(args.inputs, noise, model=args.model, align=args.align, reference=args.reference,
                           tile=args.tile, memory_gb=args.memory_gb, raw_mode=args.raw_mode,
                           gamma_16bit=args.gamma_16bit, ensemble=args.ensemble, bf16=args.bf16,
                           declip=args.declip, progress=not args.quiet, log=print)
    written = write_denoised(result, args.out, before=args.before, report=args.report, log=print)
    h, w = result.planes.shape[-2:]
    print(f"wrote {', '.join(str(p) for p in written)} ({len(result.burst.frames)} frames, {w}x{h} per plane, "
          f"tile {result.tile}, {result.seconds:.1f} s)")
    return 0


def run_many(args: argparse.Namespace) -> int:
    """Many bursts (`burstkpn.batch.denoise_bursts`): a summary line, exit status 2 if any burst failed."""
    import sys

    from burstkpn.batch import denoise_bursts, failed_on_all_ranks, find_bursts, read_burst_list
    from burstkpn.io.images import check_output_folder

    if args.list is not None and args.inputs:
        raise BurstKPNError("give either INPUT folders or --list FILE, not both")
    check_output_folder(args.out)  # fail before the work, not after it
    bursts = read_burst_list(args.list) if args.list is not None else find_bursts(args.inputs[0])
    summary = denoise_bursts(bursts, args.out, workers=args.workers or 1, threads=args.threads,
                             before=args.before, report=args.report, progress=not args.quiet,
                             log=lambda line: print(line, file=sys.stderr),
                             noise=parse_noise(args.noise), model=args.model, align=args.align,
                             reference=args.reference, tile=args.tile, memory_gb=args.memory_gb,
                             raw_mode=args.raw_mode, gamma_16bit=args.gamma_16bit, ensemble=args.ensemble, bf16=args.bf16,
                             declip=args.declip)
    counts = summary["counts"]
    where = f" (rank {summary['rank']} of {summary['world']}: {summary['bursts']} of {summary['total']} bursts)" if summary["world"] > 1 else ""
    print(f"{counts['done']} done, {counts['skipped']} skipped (already done), {counts['failed']} failed{where}; "
          f"summary: {summary['summary']}")
    everywhere = failed_on_all_ranks(counts["failed"], summary["world"])  # under torchrun: waits for every rank
    if summary["world"] > 1 and summary["rank"] == 0 and everywhere:
        print(f"burstkpn: {everywhere} burst(s) failed on all ranks together", file=sys.stderr)
    if counts["failed"]:
        print(f"burstkpn: error: {counts['failed']} burst(s) failed (their errors are in {summary['summary']})", file=sys.stderr)
        return 2
    return 0
