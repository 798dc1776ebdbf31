"""``burstkpn inspect``: the kernels, per-frame contributions and noise map a KPN used on one burst.

BURST is a real burst (folder or files, loaded and prepared exactly as `burstkpn denoise` does;
colour bursts show the green channel, raw bursts the 2x2 Bayer mean) or a test set ``.npz`` with
``--index`` (a synthetic burst whose ground truth is known, so PSNR/SSIM are reported too).
Writes PNGs, ``inspect.json`` and ``report.html`` into the output folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from burstkpn import inspect, viz
from burstkpn.align import tile_align
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output, check_output_folder, make_folder
from burstkpn.metrics import CAPTION, psnr, ssim
from burstkpn.noise import NoiseLevel


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="BURST", help="a burst folder or its files, or a test set .npz (see --index)")
    p.add_argument("--model", help="weights file (.safetensors) or the name of a shipped model (kpn, kpn-variable, kpn-local, ...); "
                                    "default: the model shipped with burstkpn")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--pixels", nargs="+", metavar="X,Y",
                   help="pixels whose kernels to draw (default: an edge, a flat area, the most misaligned spot)")
    p.add_argument("--index", type=int, default=0, help="burst (row) of a test set (default 0)")
    p.add_argument("--crop", metavar="X,Y,W,H", help="inspect this window only (needed above 1 megapixel)")
    p.add_argument("--noise", default="auto", help="real bursts: auto or SIGMA_READ,SIGMA_SHOT, as in `burstkpn denoise`")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                   help="HDR+ tile pre-alignment (default: on for real bursts as in denoise, off for test sets as in evaluate)")
    p.add_argument("--reference", type=int, default=0, help="real bursts: index of the reference frame (default 0)")
    p.add_argument("--gamma-16bit", action="store_true", help="real bursts: 16-bit inputs are gamma-encoded")


def load_testset_burst(args, config) -> dict:
    """One test-set burst to inspect: frames (N, H, W), noise, clean image and white level."""
    from burstkpn.testset import load_testset

    ts = load_testset(args.inputs[0])
    if not 0 <= args.index < len(ts):
        raise BurstKPNError(f"--index {args.index} is out of range: the test set has {len(ts)} bursts")
    i = args.index
    n = ts.noisy.shape[1]
    if n < config.frames and not config.variable_frames:
        raise BurstKPNError(f"the model takes {config.frames} frames, the test set's bursts have {n}")
    burst = ts.noisy[i] if not args.align else tile_align(ts.noisy[i])
    return {"frames": burst, "noise": NoiseLevel(float(ts.sigma_read[i]), float(ts.sigma_shot[i])),
            "clean": ts.clean[i], "white": float(ts.white_level[i]),
            "source": f"{args.inputs[0]} burst {i} (gain {int(ts.gain[i])}, {ts.source[i]})"}


def load_real(args) -> tuple[dict, object, Path]:
    """A real burst as `burstkpn denoise` prepares it (`pipeline.prepare`): the plane inspected, its noise, the model."""
    from burstkpn.commands.denoise import parse_noise
    from burstkpn.pipeline import prepare

    align = True if args.align is None else args.align
    burst, model, weights, planes, noise, _ = prepare(args.inputs, parse_noise(args.noise), args.model, args.reference,
                                                      args.gamma_16bit, "half", print)
    plane = " (green channel)" if len(planes) == 3 else " (2x2 Bayer mean)" if burst.kind == "raw" else ""
    if plane:
        print(f"inspecting{plane} of a {'colour' if len(planes) == 3 else 'raw'} burst")
    frames = planes[len(planes) // 2]
    data = {"frames": tile_align(frames) if align else frames, "noise": noise, "clean": None, "white": 1.0,
            "source": f"{len(burst.paths)} frames from {burst.paths[0].parent}{plane}"}
    return data, model, weights


def run(args: argparse.Namespace) -> int:
    out = check_output_folder(args.out)
    testset = len(args.inputs) == 1 and Path(args.inputs[0]).suffix.lower() == ".npz"
    if testset:
        from burstkpn.weights import resolve_model

        model, weights = resolve_model(args.model)
        data = load_testset_burst(args, model.config)
    else:
        data, model, weights = load_real(args)
    frames, clean = data["frames"], data["clean"]
    if args.crop:
        rows, cols = inspect.parse_crop(args.crop, frames.shape[2], frames.shape[1])
        frames, clean = frames[:, rows, cols], (None if clean is None else clean[rows, cols])
    ins = inspect.inspect_burst(model, frames, data["noise"])
    h, w = frames.shape[1:]
    k = model.config.kernel_size
    pixels = inspect.parse_pixels(args.pixels, w, h) if args.pixels else inspect.choose_pixels(ins.frames, ins.noise_map, k)
    figures = viz.inspection_figures(ins, pixels, data["white"])
    make_folder(out)
    for name, png in figures.items():
        with atomic_output(out / name) as tmp:
            tmp.write_bytes(png)
    rows = metric_rows(ins, clean, data["white"]) if clean is not None else {}
    summary = {
        "burst": data["source"], "model": str(weights), "size": [w, h], "crop": args.crop,
        "noise": {"sigma_read": data["noise"].sigma_read, "sigma_shot": data["noise"].sigma_shot},
        "pixels": [{"label": label, "x": x, "y": y} for label, (x, y) in pixels],
        "mean_contribution": [round(float(c), 4) for c in ins.contributions.mean(axis=(1, 2))],
        "dominant_share": [round(float(s), 4) for s in np.bincount(ins.dominant.ravel(), minlength=len(frames)) / ins.dominant.size],
        "metrics": rows, "metrics_caption": CAPTION if rows else None,
    }
    with atomic_output(out / "inspect.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    from burstkpn.report import Report, write_report

    images = {"noisy reference": figures["reference.png"], "denoised": figures["output.png"]}
    if clean is not None:
        images["clean"] = viz.image_png(clean, data["white"])
    captions = {"kernels.png": "Kernels of every frame at the chosen pixels (one colour scale)",
                "contributions.png": "Per-frame contribution maps (sum of each frame's kernel weights)",
                "dominant.png": "Which frame dominates where", "noise.png": "Noise-estimate map (the network's input)",
                "residual.png": "Output minus the reference frame"}
    write_report(Report(f"burstkpn inspect: {data['source']}", images, "noisy reference", "denoised",
                        [(c, figures[n]) for n, c in captions.items()], [{"method": m, **r} for m, r in rows.items()],
                        CAPTION, {"burst": data["source"], "model": str(weights), "mean contribution per frame":
                                  " ".join(f"{c:.3f}" for c in summary["mean_contribution"])}), out / "report.html")
    print(f"mean contribution per frame: {' '.join(f'{c:.3f}' for c in summary['mean_contribution'])}")
    print(f"pixels: {', '.join(f'{label} ({x}, {y})' for label, (x, y) in pixels)}")
    print(f"wrote {out}/: {', '.join(figures)}, inspect.json, report.html")
    return 0


def metric_rows(ins: inspect.Inspection, clean: np.ndarray, white: float) -> dict[str, dict]:
    """PSNR/SSIM of the reference frame, the plain average of the frames the network saw, and the model."""
    estimates = {"reference": ins.frames[0], "average": ins.frames.mean(axis=0), "model": ins.output}
    return {name: {"psnr": psnr(e, clean, white), "ssim": ssim(e, clean, white)} for name, e in estimates.items()}
