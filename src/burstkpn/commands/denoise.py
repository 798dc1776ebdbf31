"""``burstkpn denoise``: a real burst (image folder, 16-bit TIFF/PNG, camera raw/DNG) -> a clean image.

Pipeline: load and linearise (`io.bursts`) -> split into grayscale bursts (colour: per channel;
raw: the paper's 2x2 Bayer mean, or each CFA plane) -> noise level (DNG NoiseProfile tag, flag,
or estimated from the burst) -> tile by tile (`tiles.run_tiled`): pre-alignment (HDR+ tile
alignment) and the model, so that memory stays within the budget at any image size -> outputs
written atomically, with the resolved settings as JSON beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from burstkpn.align import tile_align
from burstkpn.camera import gamma_compress, linear_to_srgb8
from burstkpn.errors import BurstKPNError
from burstkpn.io.bursts import Burst, load_burst
from burstkpn.io.images import atomic_output, check_output_file, write_png
from burstkpn.io.raw import (
    bayer_planes,
    bayer_to_gray,
    gray_noise,
    mosaic_from_planes,
    preview_rgb,
    write_dng,
)
from burstkpn.metrics import to_display
from burstkpn.noise import NoiseLevel
from burstkpn.tiles import choose_tile, run_tiled

TILE_OVERLAP = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a folder, or the files of one burst (sorted by name)")
    p.add_argument("-o", "--out", required=True,
                   help="output path; its suffix is set by the input: .png (8-bit), .tif + .preview.png "
                        "(16-bit/float, raw --raw-mode half), .dng + .preview.png (raw --raw-mode full)")
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
                   help="average the model over the 8 flips/rotations of the burst (8x the time; see README for the gain)")
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
    start = time.perf_counter()
    check_output_file(args.out)  # fail before the work, not after it
    if args.threads is not None:
        if args.threads < 1:
            raise BurstKPNError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    model, weights = resolve_model(args.model, burst_length(args.inputs) if not args.model else None)
    burst, bursts, noise, source = prepare_burst(args.inputs, args.reference, not args.gamma_16bit, args.noise,
                                                 args.raw_mode, model.config)
    h, w = bursts[0].shape[-2:]
    per_pixel = model_bytes_per_pixel(model.config, len(burst.paths), len(bursts))
    tile = args.tile or choose_tile(h, w, args.memory_gb * 2**30, per_pixel, TILE_OVERLAP)
    if args.bf16 is None:
        from burstkpn.hardware import native_bf16

        args.bf16 = native_bf16("cpu")
    denoised = denoise_planes(model, bursts, noise, tile, align=args.align, amp=args.bf16, progress=not args.quiet,
                              ensemble=args.ensemble)
    written = write_outputs(Path(args.out), burst, denoised, args.raw_mode, args.before or args.report, args.gamma_16bit)
    if args.report:
        from burstkpn.report import denoise_report

        written.append(denoise_report(written, model, report_frames(bursts[len(bursts) // 2], args.align), noise, weights))
    settings = {
        "inputs": [str(p) for p in burst.paths], "kind": burst.kind, "model": str(weights),
        "noise": {"sigma_read": noise.sigma_read, "sigma_shot": noise.sigma_shot, "source": source},
        "align": "hdrplus-tiles" if args.align else "none", "bf16": args.bf16, "ensemble": args.ensemble, "tile": tile, "raw_mode": args.raw_mode,
        "outputs": [str(p) for p in written], "seconds": round(time.perf_counter() - start, 2),
    }
    settings_path = written[0].with_suffix(".json")
    with atomic_output(settings_path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {', '.join(str(p) for p in written)} ({len(burst.paths)} frames, {w}x{h} per plane, "
          f"tile {tile}, {settings['seconds']:.1f} s)")
    return 0


def burst_length(inputs) -> int | None:
    """How many frames the burst has (None if the inputs are not even a burst: loading says why later)."""
    from burstkpn.io.bursts import burst_paths

    try:
        return len(burst_paths(inputs))
    except BurstKPNError:
        return None


def resolve_model(path: str | None, frames: int | None = None):
    """(model, weights path): ``path`` (a file, or the name of a model shipped with burstkpn, e.g.
    ``kpn-local``), else the shipped model for a burst of ``frames`` frames (`weights.default_weights`);
    a one-line error if neither."""
    from burstkpn.weights import DEFAULT_MODEL, default_weights, load_model, shipped_weights

    if path and not Path(path).exists():
        path = str({p.stem: p for p in shipped_weights()}.get(path, path))
    weights = Path(path) if path else default_weights(frames)
    if not path and weights is not None and weights.stem != DEFAULT_MODEL:
        print(f"note: {frames} frames: using the shipped {weights.stem} model (the default {DEFAULT_MODEL} takes more)")
    if weights is None:
        raise BurstKPNError("no --model given and no default model is shipped with this version of burstkpn yet: "
                            "pass --model WEIGHTS.safetensors (see `burstkpn train`)")
    return load_model(weights), weights


def prepare_burst(inputs, reference: int, linear16: bool, noise_text: str, raw_mode: str, model_config):
    """Load a real burst and make the model's grayscale inputs: (burst, [(n, H, W)], NoiseLevel, noise source)."""
    flag_noise = parse_noise(noise_text)
    burst = load_burst(inputs, reference, linear16=linear16)
    check_length(burst, model_config)
    bursts = split_channels(burst, raw_mode)  # (C, n, H, W)
    noise, source = resolve_noise(burst, bursts, flag_noise, raw_mode)
    print(f"noise: sigma_read={noise.sigma_read:.4g}, sigma_shot={noise.sigma_shot:.4g} ({source})")
    return burst, bursts, noise, source


def check_length(burst: Burst, config) -> None:
    """Say how a burst of n frames meets a model built for N (see `models.kpn.predict`), or refuse it."""
    n, frames = burst.frames.shape[0], config.frames
    if n < frames and not config.variable_frames:
        raise BurstKPNError(f"{burst.paths[0].parent}: the model takes {frames} frames, the burst has {n} "
                            "(a model trained with variable_frames, like the shipped kpn-variable, takes fewer)")
    if n > frames:
        print(f"note: the model takes {frames} frames; each tile uses the reference and the {frames - 1} of the "
              f"other {n - 1} that align best to it")
    elif n < frames:
        print(f"note: {n} frame(s); the model takes up to {frames} and marks the {frames - n} missing ones as absent")


def split_channels(burst: Burst, raw_mode: str) -> np.ndarray:
    """The grayscale bursts the model denoises, (C, n, H, W): per colour channel, per CFA plane, or the Bayer mean."""
    if burst.kind == "raw":
        if raw_mode == "half":
            return bayer_to_gray(burst.frames)[None]
        return np.ascontiguousarray(bayer_planes(burst.frames).transpose(1, 0, 2, 3))  # (4, n, H/2, W/2)
    if burst.is_colour:
        return np.ascontiguousarray(burst.frames.transpose(3, 0, 1, 2))
    return burst.frames[None]


def resolve_noise(burst: Burst, bursts: np.ndarray, flag: NoiseLevel | None, raw_mode: str) -> tuple[NoiseLevel, str]:
    """The noise level of the model's input frames, and where it came from."""
    half = burst.kind == "raw" and raw_mode == "half"
    if flag is not None:
        return (gray_noise(flag) if half else flag), "from --noise" + (" (halved for the 2x2 Bayer mean)" if half else "")
    profile = burst.raw_reference.noise if burst.kind == "raw" else None
    if profile is not None:
        where = f"DNG NoiseProfile tag of {burst.paths[0].name}"
        return (gray_noise(profile) if half else profile), where + (", halved for the 2x2 Bayer mean" if half else "")
    from burstkpn.noise_estimation import estimate_noise

    pooled = bursts.reshape(-1, *bursts.shape[-2:])  # all channels/planes share one noise model
    return estimate_noise(pooled), "estimated from the burst (high-pass residual vs intensity)"


def model_bytes_per_pixel(config, frames: int | None = None, planes: int = 1) -> float:
    """A conservative estimate of the memory per pixel of a tile (float32, x2 for safety): the model's
    inference on one plane plus the alignment of ``planes`` planes of ``frames`` frames (default the model's N)."""
    k2 = getattr(config, "kernel_size", 1) ** 2
    activations = sum(4 * w / 4**i for i, w in enumerate(config.widths))  # a few tensors per U-Net level
    n = max(frames or config.frames, config.frames)
    alignment = 3 * planes * n + 3 * n + 12  # input, aligned copy, padded guide (float32) + one frame's gather indices
    kernel_maps = config.frames + len(getattr(config, "coarse_scales", ()))
    return 2 * 4 * (3 * kernel_maps * k2 + activations + 4 * config.frames) + 2 * 4 * alignment


def denoise_planes(model, planes: np.ndarray, noise: NoiseLevel, tile: int, align: bool = True, amp: bool = False,
                   progress: bool = False, ensemble: bool = False) -> np.ndarray:
    """The grayscale bursts of one burst (colour channels or CFA planes), (C, n, H, W) linear ->
    their denoised references (C, H, W), tile by tile.

    Each tile is aligned on its own (``align``; one alignment for all planes), so alignment memory
    scales with the tile, not the image.
    """
    from burstkpn.models.kpn import denoise_array

    def one_tile(part: np.ndarray) -> np.ndarray:  # (C, n, h, w) -> (C, h, w)
        part = tile_align(part) if align else part
        return np.stack([denoise_array(model, p, noise, amp=amp, ensemble=ensemble) for p in part])

    return run_tiled(one_tile, np.asarray(planes), tile, TILE_OVERLAP, progress=progress)


def report_frames(frames: np.ndarray, align: bool, side: int = 512) -> np.ndarray:
    """The centre crop (at most side x side) of one plane as the model sees it, for the report's kernel figures."""
    h, w = frames.shape[-2:]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    crop = np.ascontiguousarray(frames[:, y : y + side, x : x + side])
    return tile_align(crop) if align else crop


def write_outputs(out: Path, burst: Burst, denoised: np.ndarray, raw_mode: str, before: bool = False,
                  gamma16: bool = False) -> list[Path]:
    """Write the result in the input's kind of file (+ previews); returns the paths, main file first.

    ``gamma16``: the 16-bit input was gamma-encoded, so the 16-bit output is encoded the same way.
    """
    preview_path = out.with_suffix(".preview.png")
    before_path = out.with_suffix(".before.png")
    if burst.kind == "raw" and raw_mode == "full":
        ref = burst.raw_reference
        mosaic = mosaic_from_planes(np.stack(denoised))
        main = out.with_suffix(".dng")
        write_dng(main, np.clip(mosaic, 0, 1), ref, ref.noise)
        _write_preview(preview_path, preview_rgb(mosaic, ref.pattern, ref.white_balance))
        if before:
            _write_preview(before_path, preview_rgb(burst.frames[0], ref.pattern, ref.white_balance))
        return [main, preview_path] + ([before_path] if before else [])
    image = np.stack(denoised, axis=-1) if len(denoised) > 1 else denoised[0]
    reference = bayer_to_gray(burst.frames[0]) if burst.kind == "raw" else burst.frames[0]
    if burst.kind == "8bit":
        main = out.with_suffix(".png")
        write_png(main, linear_to_srgb8(image))  # the inverse of the training linearisation
        if before:
            write_png(before_path, linear_to_srgb8(reference))
        return [main] + ([before_path] if before else [])
    main = out.with_suffix(".tif")
    _write_tiff16(main, gamma_compress(np.clip(image, 0, 1)) if gamma16 else image)
    _write_preview(preview_path, image)
    if before:
        _write_preview(before_path, reference)
    return [main, preview_path] + ([before_path] if before else [])


def _write_tiff16(path: Path, linear: np.ndarray) -> None:
    import tifffile

    data = np.round(np.clip(linear, 0, 1) * 65535).astype(np.uint16)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb" if data.ndim == 3 else "minisblack")


def _write_preview(path: Path, linear: np.ndarray) -> None:
    """An 8-bit sRGB PNG of a linear image (the standard sRGB curve, no tone mapping)."""
    write_png(path, np.round(to_display(linear, border=0) * 255).astype(np.uint8))

