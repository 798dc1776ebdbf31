"""``burstkpn denoise``: a real burst (image folder, 16-bit TIFF/PNG, camera raw/DNG) -> a clean image.

Pipeline: load and linearise (`io.bursts`) -> split into grayscale bursts (colour: per channel;
raw: the paper's 2x2 Bayer mean, or each CFA plane) -> noise level (DNG NoiseProfile tag, flag,
or estimated from the burst) -> pre-alignment (HDR+ tile alignment) -> the model, tile by tile
(`tiles.run_tiled`) -> outputs written atomically, with the resolved settings as JSON beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

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
    p.add_argument("--model", help="weights file (.safetensors); default: the model shipped with burstkpn")
    p.add_argument("--noise", default="auto",
                   help="auto (DNG NoiseProfile tag, else estimated from the burst) or SIGMA_READ,SIGMA_SHOT "
                        "of the input frames in linear [0, 1] units (var = σr² + σs·x)")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="pre-align the frames to the reference with HDR+ tile alignment (default on)")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: from --memory-gb)")
    p.add_argument("--memory-gb", type=float, default=2.0, help="memory budget for the network's tiles (default 2)")
    p.add_argument("--reference", type=int, default=0, help="index of the reference frame in name order (default 0)")
    p.add_argument("--raw-mode", choices=["full", "half"], default="full",
                   help="full: each CFA plane denoised, re-mosaicked to a DNG (default); "
                        "half: the paper's 2x2 Bayer mean, a half-resolution grayscale TIFF")
    p.add_argument("--gamma-16bit", action="store_true", help="16-bit inputs are gamma-encoded, not linear")
    p.add_argument("--before", action="store_true", help="also write the noisy reference as <out>.before.png")
    p.add_argument("--report", action="store_true",
                   help="also write <out>.report.html: before/after slider and the kernels (self-contained)")
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
    model, weights = resolve_model(args.model)
    burst, bursts, noise, source = prepare_burst(args.inputs, args.reference, not args.gamma_16bit, args.noise,
                                                 model.config.frames, args.raw_mode, args.align)
    h, w = bursts[0].shape[-2:]
    tile = args.tile or choose_tile(h, w, args.memory_gb * 2**30, model_bytes_per_pixel(model.config), TILE_OVERLAP)
    denoised = [denoise_gray(model, b, noise, tile, progress=not args.quiet) for b in bursts]
    written = write_outputs(Path(args.out), burst, denoised, args.raw_mode, args.before or args.report, args.gamma_16bit)
    if args.report:
        from burstkpn.report import denoise_report

        written.append(denoise_report(written, model, bursts[len(bursts) // 2], noise, weights))
    settings = {
        "inputs": [str(p) for p in burst.paths], "kind": burst.kind, "model": str(weights),
        "noise": {"sigma_read": noise.sigma_read, "sigma_shot": noise.sigma_shot, "source": source},
        "align": "hdrplus-tiles" if args.align else "none", "tile": tile, "raw_mode": args.raw_mode,
        "outputs": [str(p) for p in written], "seconds": round(time.perf_counter() - start, 2),
    }
    settings_path = written[0].with_suffix(".json")
    with atomic_output(settings_path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
    print(f"wrote {', '.join(str(p) for p in written)} ({len(burst.paths)} frames, {w}x{h} per plane, "
          f"tile {tile}, {settings['seconds']:.1f} s)")
    return 0


def resolve_model(path: str | None):
    """(model, weights path): ``path``, else the model shipped with burstkpn; a one-line error if neither."""
    from burstkpn.weights import default_weights, load_model

    weights = Path(path) if path else default_weights()
    if weights is None:
        raise BurstKPNError("no --model given and no default model is shipped with this version of burstkpn yet: "
                            "pass --model WEIGHTS.safetensors (see `burstkpn train`)")
    return load_model(weights), weights


def prepare_burst(inputs, reference: int, linear16: bool, noise_text: str, frames: int, raw_mode: str, align: bool):
    """Load a real burst and make the model's grayscale inputs: (burst, [(N, H, W)], NoiseLevel, noise source).

    ``frames``: the model's N; ``align``: HDR+ tile pre-alignment of every grayscale burst.
    """
    flag_noise = parse_noise(noise_text)
    burst = _fit_frames(load_burst(inputs, reference, linear16=linear16), frames)
    bursts = split_channels(burst, raw_mode)  # list of (N, H, W)
    noise, source = resolve_noise(burst, bursts, flag_noise, raw_mode)
    print(f"noise: sigma_read={noise.sigma_read:.4g}, sigma_shot={noise.sigma_shot:.4g} ({source})")
    if align:
        bursts = [prealign(b) for b in bursts]
    return burst, bursts, noise, source


def _fit_frames(burst: Burst, frames: int) -> Burst:
    """Keep the reference and the next ``frames - 1`` frames when the burst is longer than the model's input."""
    n = burst.frames.shape[0]
    if n < frames:
        raise BurstKPNError(f"{burst.paths[0].parent}: the model takes {frames} frames, the burst has {n}")
    if n > frames:
        print(f"note: the model takes {frames} frames; using the reference and the next {frames - 1} of {n}")
        return Burst(burst.frames[:frames], burst.kind, burst.paths[:frames], burst.raw_reference)
    return burst


def split_channels(burst: Burst, raw_mode: str) -> list[np.ndarray]:
    """The grayscale bursts the model denoises, each (N, H, W): per colour channel, per CFA plane, or the Bayer mean."""
    if burst.kind == "raw":
        if raw_mode == "half":
            return [bayer_to_gray(burst.frames)]
        planes = bayer_planes(burst.frames)  # (N, 4, H/2, W/2)
        return [np.ascontiguousarray(planes[:, k]) for k in range(4)]
    if burst.is_colour:
        return [np.ascontiguousarray(burst.frames[..., c]) for c in range(burst.frames.shape[-1])]
    return [burst.frames]


def resolve_noise(burst: Burst, bursts: list[np.ndarray], flag: NoiseLevel | None, raw_mode: str) -> tuple[NoiseLevel, str]:
    """The noise level of the model's input frames, and where it came from."""
    half = burst.kind == "raw" and raw_mode == "half"
    if flag is not None:
        return (gray_noise(flag) if half else flag), "from --noise" + (" (halved for the 2x2 Bayer mean)" if half else "")
    profile = burst.raw_reference.noise if burst.kind == "raw" else None
    if profile is not None:
        where = f"DNG NoiseProfile tag of {burst.paths[0].name}"
        return (gray_noise(profile) if half else profile), where + (", halved for the 2x2 Bayer mean" if half else "")
    from burstkpn.noise_estimation import estimate_noise

    pooled = np.concatenate(bursts, axis=0)  # all channels/planes share one noise model
    return estimate_noise(pooled), "estimated from the burst (high-pass residual vs intensity)"


def prealign(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H, W) every frame resampled onto frame 0 by HDR+ tile alignment."""
    from burstkpn.baselines.hdrplus import aligned_stack

    aligned = aligned_stack(frames)
    aligned[0] = frames[0]
    return aligned.astype(np.float32)


def model_bytes_per_pixel(config) -> float:
    """A conservative estimate of a model's inference memory per pixel of a tile (float32, x2 for safety)."""
    k2 = getattr(config, "kernel_size", 1) ** 2
    activations = sum(4 * w / 4**i for i, w in enumerate(config.widths))  # a few tensors per U-Net level
    return 2 * 4 * (3 * config.frames * k2 + activations + 4 * config.frames)


def denoise_gray(model, frames: np.ndarray, noise: NoiseLevel, tile: int, progress: bool = False) -> np.ndarray:
    """One grayscale burst (N, H, W) linear -> the denoised reference (H, W), tile by tile."""
    from burstkpn.models.kpn import denoise_array

    return run_tiled(lambda part: denoise_array(model, part, noise), frames, tile, TILE_OVERLAP, progress=progress)


def write_outputs(out: Path, burst: Burst, denoised: list[np.ndarray], raw_mode: str, before: bool = False,
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

