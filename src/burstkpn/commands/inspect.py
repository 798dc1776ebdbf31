"""``burstkpn inspect``: the kernels, per-frame contributions and noise map a KPN used on one burst.

BURST is a real burst (folder or files, loaded and prepared exactly as `burstkpn denoise` does) or a
test set ``.npz`` with ``--index`` (a synthetic burst whose ground truth is known, so PSNR/SSIM are
reported too). The model denoises one grayscale plane at a time; ``--plane`` picks the one shown:
a colour burst's R, G or B channel (default G), a raw burst's 2x2 Bayer mean (``mean``, the default)
or one CFA plane by colour (R, Gr, Gb, B: Gr is the green in red's rows) or position (TL, TR, BL, BR).
The plane is named on screen, in ``inspect.json`` and in ``report.html``.
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
    p.add_argument("--plane", metavar="PLANE",
                   help="which plane the model is inspected on: R, G or B for a colour burst (default G); for a raw "
                        "burst mean (the 2x2 Bayer mean, default), R, Gr, Gb, B or a CFA position TL, TR, BL, BR")


COLOUR_PLANES = {"r": "R", "red": "R", "g": "G", "green": "G", "b": "B", "blue": "B"}
COLOUR_NAMES = {"R": "red", "G": "green", "B": "blue"}
RAW_NAMES = ("mean", "R", "Gr", "Gb", "B", "TL", "TR", "BL", "BR")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")


def check_plane_name(plane: str | None) -> None:
    """A one-line error, before any work, for a --plane no burst has."""
    known = {*COLOUR_PLANES, *(n.lower() for n in RAW_NAMES), "gray"}
    if plane is not None and plane.lower() not in known:
        raise BurstKPNError(f"--plane {plane}: unknown plane; use R, G or B (colour) or {', '.join(RAW_NAMES)} (raw)")


def cfa_names(pattern: str) -> list[str]:
    """The 4 CFA planes' names in position order (TL, TR, BL, BR): R, B, and Gr/Gb (the green in red's/blue's rows).

    >>> cfa_names("GRBG")
    ['Gr', 'R', 'B', 'Gb']
    """
    names = []
    for k, colour in enumerate(pattern):
        beside = pattern[2 * (k // 2) + 1 - k % 2]  # the other pixel of this row
        names.append(colour if colour != "G" else "Gr" if beside == "R" else "Gb")
    return names


def choose_plane(burst, plane: str | None) -> tuple[int | None, str, str]:
    """Which of `pipeline.split_channels`' planes ``--plane`` names for ``burst``: (index or None for the
    2x2 Bayer mean, short name, description for the screen and the report)."""
    wanted = None if plane is None else plane.lower()
    if burst.kind == "raw":
        pattern = burst.raw_reference.pattern
        if wanted in (None, "mean"):
            return None, "mean", "2x2 Bayer mean plane (the average of the 4 CFA planes)"
        names = [n.lower() for n in cfa_names(pattern)]
        positions = ["tl", "tr", "bl", "br"]
        if wanted not in names and wanted not in positions:
            raise BurstKPNError(f"--plane {plane}: a raw burst ({pattern}) has the planes {', '.join(RAW_NAMES)}")
        k = names.index(wanted) if wanted in names else positions.index(wanted)
        name = cfa_names(pattern)[k]
        return k, name, f"{name} plane ({POSITIONS[k]} of the {pattern} 2x2 CFA block)"
    if burst.is_colour:
        if wanted is not None and wanted not in COLOUR_PLANES:
            raise BurstKPNError(f"--plane {plane}: a colour burst has the channels R, G and B")
        name = COLOUR_PLANES[wanted or "g"]
        return "RGB".index(name), name, f"{COLOUR_NAMES[name]} ({name}) channel"
    if wanted not in (None, "gray"):
        raise BurstKPNError(f"--plane {plane}: a gray burst has one plane (gray)")
    return 0, "gray", "only plane"


def load_testset_burst(args, config) -> dict:
    """One test-set burst to inspect: frames (N, H, W), noise, clean image and white level."""
    from burstkpn.testset import load_testset

    if args.plane not in (None, "gray"):
        raise BurstKPNError(f"--plane {args.plane}: test sets are grayscale (one plane)")
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
            "source": f"{args.inputs[0]} burst {i} (gain {int(ts.gain[i])}, {ts.source[i]})",
            "plane": "gray", "plane_description": "only plane of a gray test-set burst"}


def load_real(args) -> tuple[dict, object, Path]:
    """A real burst as `burstkpn denoise` prepares it (`pipeline.prepare`): the plane inspected, its noise, the model."""
    from burstkpn.commands.denoise import parse_noise
    from burstkpn.pipeline import impute_input, prepare, rggb_planes

    align = True if args.align is None else args.align
    # the 2x2 Bayer mean is the "half" raw mode; one CFA plane is one of the "full" mode's four (its own noise level)
    raw_mode = "half" if args.plane is None or args.plane.lower() == "mean" else "full"
    burst, model, weights, planes, noise, _ = prepare(args.inputs, parse_noise(args.noise), args.model, args.reference,
                                                      args.gamma_16bit, raw_mode, print)
    index, name, description = choose_plane(burst, args.plane)
    kind = "raw" if burst.kind == "raw" else "colour" if burst.is_colour else "gray"
    description = f"{description} of a {kind} burst"
    print(f"inspecting the {description}")
    index = 0 if index is None else index
    joint = getattr(model.config, "planes", None) is not None
    planes, _ = impute_input(planes, noise, print)  # values cut at the black point filled in, as denoise does
    # a joint model sees every plane (one alignment for all, as denoise does) and is inspected on one; it takes
    # RGGB planes, so another CFA layout is flipped to RGGB (as denoise does) and the result flipped back
    frames, flips, model_index = (planes if joint else planes[index]), (), index
    if joint and burst.kind == "raw" and burst.raw_reference.pattern != "RGGB":
        from burstkpn.models.planar import PATTERN_FLIPS

        flips = PATTERN_FLIPS[burst.raw_reference.pattern]
        frames = rggb_planes(burst, planes)[0]
        row, col = divmod(index, 2)  # the plane's place in the 2x2 block, after the flips
        model_index = 2 * (1 - row if -2 in flips else row) + (1 - col if -1 in flips else col)
    data = {"frames": tile_align(frames) if align else frames, "noise": noise, "clean": None, "white": 1.0,
            "source": f"{len(burst.paths)} frames from {burst.paths[0].parent}, {name}",
            "plane": name, "plane_description": description, "plane_index": model_index if joint else 0,
            "flips": flips}
    if joint:
        print(f"joint model {weights.stem}: it sees all {len(planes)} planes; showing its kernels for the {name} plane")
    return data, model, weights


def run(args: argparse.Namespace) -> int:
    out = check_output_folder(args.out)
    check_plane_name(args.plane)
    testset = len(args.inputs) == 1 and Path(args.inputs[0]).suffix.lower() == ".npz"
    if testset:
        from burstkpn.weights import resolve_model

        model, weights = resolve_model(args.model)
        data = load_testset_burst(args, model.config)
    else:
        data, model, weights = load_real(args)
    frames, clean = data["frames"], data["clean"]
    if args.crop:
        rows, cols = inspect.parse_crop(args.crop, frames.shape[-1], frames.shape[-2])
        clean = None if clean is None else clean[rows, cols]
        # frames flipped to RGGB for a joint model: the same region, read through the flips
        h, w = frames.shape[-2:]
        rows = slice(h - rows.stop, h - rows.start) if -2 in data.get("flips", ()) else rows
        cols = slice(w - cols.stop, w - cols.start) if -1 in data.get("flips", ()) else cols
        frames = frames[..., rows, cols]
    ins = inspect.inspect_burst(model, frames, data["noise"], plane=data.get("plane_index", 0))
    ins = inspect.flip_inspection(ins, data.get("flips", ()))  # back to the mosaic's own orientation
    frames = ins.frames  # the inspected plane's frames, (N, H, W)
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
        "burst": data["source"], "plane": data["plane"], "plane_description": data["plane_description"],
        "model": str(weights), "size": [w, h], "crop": args.crop,
        "noise": {"sigma_read": data["noise"].sigma_read, "sigma_shot": data["noise"].sigma_shot},
        "pixels": [{"label": label, "x": x, "y": y} for label, (x, y) in pixels],
        "mean_contribution": [round(float(c), 4) for c in ins.contributions.mean(axis=(1, 2))],
        "dominant_share": [round(float(s), 4) for s in np.bincount(ins.dominant.ravel(), minlength=len(frames)) / ins.dominant.size],
        "metrics": rows, "metrics_caption": CAPTION if rows else None,
        "mean_blend": None if ins.blend is None else round(float(ins.blend.mean()), 4),
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
    if "blend.png" in figures:
        captions["blend.png"] = "Weight of the frames' mean in the output (blend toward the mean)"
    if "noise_gain.png" in figures:
        captions["noise_gain.png"] = "Factor on the noise map the kernels were told (noise gain: > 1 where the frames agree)"
    if "refine.png" in figures:
        captions["refine.png"] = "Strength of the last spatial stage (refine: 0 leaves the kernels' merge as it is)"
    write_report(Report(f"burstkpn inspect: {data['source']}", images, "noisy reference", "denoised",
                        [(c, figures[n]) for n, c in captions.items()], [{"method": m, **r} for m, r in rows.items()],
                        CAPTION, {"burst": data["source"], "channel/plane": data["plane_description"],
                                  "model": str(weights), "mean contribution per frame":
                                  " ".join(f"{c:.3f}" for c in summary["mean_contribution"])}), out / "report.html")
    print(f"mean contribution per frame: {' '.join(f'{c:.3f}' for c in summary['mean_contribution'])}")
    if ins.blend is not None:
        print(f"blend toward the frames' mean: {float(ins.blend.mean()):.3f} on average "
              f"(5th-95th percentile {np.percentile(ins.blend, 5):.3f}-{np.percentile(ins.blend, 95):.3f})")
    print(f"pixels: {', '.join(f'{label} ({x}, {y})' for label, (x, y) in pixels)}")
    print(f"wrote {out}/: {', '.join(figures)}, inspect.json, report.html")
    return 0


def metric_rows(ins: inspect.Inspection, clean: np.ndarray, white: float) -> dict[str, dict]:
    """PSNR/SSIM of the reference frame, the plain average of the frames the network saw, and the model."""
    estimates = {"reference": ins.frames[0], "average": ins.frames.mean(axis=0), "model": ins.output}
    return {name: {"psnr": psnr(e, clean, white), "ssim": ssim(e, clean, white)} for name, e in estimates.items()}
