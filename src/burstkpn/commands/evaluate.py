"""``burstkpn evaluate``: every method on every burst of a test set, as in the paper's Table 1."""

from __future__ import annotations

import argparse
import json
import time

from burstkpn import __version__
from burstkpn.evaluate import (
    describe_testset,
    evaluate,
    plot_crops,
    plot_psnr,
    resolve_methods,
    write_csv,
    write_markdown,
    write_per_burst,
)
from burstkpn.io.images import atomic_output, check_output_folder, make_folder
from burstkpn.testset import load_testset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--testset", required=True, help="test set .npz written by `burstkpn synth`")
    p.add_argument("--methods", default="all",
                   help="comma-separated: reference,average,aligned-average,hdrplus,nlm,bm3d,bm3d-merged,bm4d-aligned, or all "
                        "(default); colour test sets also cbm3d-merged (all: reference,average,aligned-average,hdrplus,"
                        "cbm3d-merged and the shipped models per plane)")
    p.add_argument("--model", nargs="+", action="extend", default=[], metavar="WEIGHTS",
                   help="weights file(s) from `burstkpn train`, each one more method (repeatable); on a colour test "
                        "set a grayscale model runs per plane (NAME per-plane), a joint colour/raw model on all planes")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-bursts", nargs="+", action="extend", default=[], metavar="[NAME=]K",
                   help="run on a seeded subset of K scenes per gain: K for every method, NAME=K for one (e.g. bm4d-aligned=10)")
    p.add_argument("--gains", nargs="+", type=int, help="evaluate only these gains (default: all in the test set)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene subset (default 0)")
    p.add_argument("--bf16", action="store_true", help="also run every model under bf16 autocast (row NAME bf16)")
    p.add_argument("--ensemble", action="store_true",
                   help="also run every model averaged over the 8 flips/rotations of each burst (row NAME x8; 8x the time)")
    p.add_argument("--tile-aligned", action="store_true",
                   help="also run every model on bursts first aligned tile by tile, as `burstkpn denoise` does with "
                        "real bursts (row NAME tile-aligned)")
    p.add_argument("--raw-curve", action="store_true",
                   help="colour test sets: score the raw planes through the sRGB curve (the grayscale protocol) "
                        "instead of in linear raw")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    out = check_output_folder(args.out)
    testset = load_testset(args.testset)
    if testset.colour is not None:
        return run_colour(args, testset, out)
    methods = resolve_methods(args.methods, args.model, args.max_bursts, bf16=args.bf16, ensemble=args.ensemble,
                              tile_aligned=args.tile_aligned)
    start = time.perf_counter()
    ev = evaluate(testset, methods, args.gains, seed=args.seed, progress=not args.quiet)
    description = describe_testset(testset, args.testset)
    make_folder(out)
    write_csv(ev, out / "results.csv")
    write_per_burst(ev, out / "per_burst.csv")
    write_markdown(ev, description, out / "results.md")
    if ev.per_burst:
        plot_psnr(ev, out / "psnr_vs_gain.png")
        plot_crops(ev, testset, out / "crops.png")
    config = {
        "burstkpn": __version__, "testset": str(args.testset), "testset_meta": testset.meta,
        "methods": [{"name": m.name, "max_scenes": m.max_scenes, "unavailable": m.unavailable} for m in methods],
        "models": args.model, "gains": args.gains, "seed": args.seed, "seconds_per_method": ev.seconds,
    }
    with atomic_output(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    from burstkpn.report import evaluate_report

    evaluate_report(out, ev, testset, description, {m.name: m.model for m in methods if m.model is not None})
    return _report_done(out, ev, "results.csv, results.md, per_burst.csv, psnr_vs_gain.png, crops.png, config.json, "
                        "report.html", start)


def run_colour(args: argparse.Namespace, testset, out) -> int:
    """A colour test set (``synth --colour bayer|rgb``): `burstkpn.colour_eval`, raw and sRGB tables."""
    from burstkpn.colour_eval import (
        describe_colour_testset,
        evaluate_colour,
        plot_colour_crops,
        resolve_colour_methods,
        write_colour_csv,
        write_colour_markdown,
        write_colour_per_burst,
    )

    methods = resolve_colour_methods(args.methods, testset.colour, args.model, args.max_bursts, bf16=args.bf16,
                                     ensemble=args.ensemble, tile_aligned=args.tile_aligned)
    start = time.perf_counter()
    ev = evaluate_colour(testset, methods, args.gains, seed=args.seed, progress=not args.quiet, raw_curve=args.raw_curve)
    description = describe_colour_testset(testset, args.testset)
    make_folder(out)
    write_colour_csv(ev, out / "results.csv")
    write_colour_per_burst(ev, out / "per_burst.csv")
    write_colour_markdown(ev, description, out / "results.md", raw_curve=args.raw_curve)
    if ev.per_burst:
        plot_colour_crops(ev, testset, out / "crops.png")
    config = {
        "burstkpn": __version__, "testset": str(args.testset), "testset_meta": testset.meta,
        "methods": [{"name": m.name, "max_scenes": m.max_scenes, "unavailable": m.unavailable} for m in methods],
        "models": args.model, "gains": args.gains, "seed": args.seed, "raw_curve": args.raw_curve,
        "seconds_per_method": ev.seconds,
    }
    with atomic_output(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return _report_done(out, ev, "results.csv, results.md, per_burst.csv, crops.png, config.json", start)


def _report_done(out, ev, files: str, start: float) -> int:
    """Print the results table, each method's time and what was written; the command's exit status."""
    print((out / "results.md").read_text())
    for name, seconds in ev.seconds.items():
        print(f"{name:<16} {seconds:8.1f} s")
    print(f"wrote {out}/: {files} in {time.perf_counter() - start:.0f} s")
    return 0
