"""Writing a denoised burst (`pipeline.Denoised`) in the input's kind of file, atomically.

8-bit input -> an 8-bit PNG (the inverse of the training linearisation); 16-bit / float input or an
array -> a 16-bit TIFF (+ an sRGB ``.preview.png``); raw -> a DNG with the reference frame's levels,
CFA pattern and colour/camera tags (+ ``.preview.png``), or with ``raw_mode="half"`` a 16-bit TIFF.
The resolved settings go beside the main file as ``.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output, check_output_file, check_output_folder, write_png


def main_suffix(kind: str, raw_mode: str = "full") -> str:
    """The main output's suffix for an input of ``kind`` ("8bit", "16bit", "float", "raw", "array")."""
    if kind == "8bit":
        return ".png"
    if kind == "raw" and raw_mode == "full":
        return ".dng"
    return ".tif"


def wants_folder(out: str | Path) -> bool:
    """``-o`` names a folder: an existing one, or a path written with a trailing slash."""
    text = str(out)
    return Path(out).is_dir() or text.endswith(("/", os.sep))


def check_output_target(out: str | Path) -> Path:
    """Fail before any work unless ``out`` can receive the output (a file path, or a folder); creates nothing."""
    return check_output_folder(out) if wants_folder(out) else check_output_file(out)


def burst_name(paths: list[Path]) -> str:
    """A name for a burst's output file: its folder's name when all frames share one, else the reference's stem."""
    if not paths:
        return "denoised"
    parents = {p.resolve().parent for p in paths}
    return paths[0].resolve().parent.name if len(parents) == 1 and len(paths) > 1 else paths[0].stem


def output_path(out: str | Path, kind: str, raw_mode: str, paths: list[Path],
                log: Callable[[str], None] | None = None) -> Path:
    """Where the main output goes: inside ``out`` (named after the burst) when it is a folder, else ``out``
    with the suffix the input kind needs — with a note when that changes the suffix the user wrote."""
    suffix = main_suffix(kind, raw_mode)
    if wants_folder(out):
        return Path(out) / (burst_name(paths) + suffix)
    out = Path(out)
    if out.suffix.lower() != suffix and log is not None:
        what = {"8bit": "8-bit input", "raw": "raw input"}.get(kind, f"{kind} input")
        log(f"note: {what} is written as {suffix}: {out.with_suffix(suffix)}"
            + (f" (not {out.suffix})" if out.suffix else ""))
    return out.with_suffix(suffix)


def write_denoised(result, out: str | Path, before: bool = False, report: bool = False,
                   log: Callable[[str], None] | None = None) -> list[Path]:
    """Write ``result`` (a `pipeline.Denoised`) at ``out`` (a file path or a folder, see `output_path`):
    the main file first, then previews, ``.before.png`` (the noisy reference) with ``before`` or
    ``report``, ``.report.html`` (before/after slider and the kernels) with ``report``, and ``.json``
    (the resolved settings). Returns the paths written."""
    burst = result.burst
    main = output_path(out, burst.kind, result.raw_mode, burst.paths, log)
    check_output_file(main)
    written = _write_images(main, result, before or report)
    if report:
        from burstkpn.pipeline import report_frames
        from burstkpn.report import denoise_report
        from burstkpn.weights import load_model

        frames = report_frames(result.planes[len(result.planes) // 2], result.alignment != "none")
        written.append(denoise_report(written, load_model(result.weights), frames, result.noise, result.weights))
    settings = {
        "inputs": [str(p) for p in burst.paths], "kind": burst.kind, "model": str(result.weights),
        "noise": {"sigma_read": result.noise.sigma_read, "sigma_shot": result.noise.sigma_shot,
                  "source": result.noise_source},
        "align": result.alignment, "bf16": result.bf16, "ensemble": result.ensemble, "tile": result.tile,
        "declipped": {"black": result.declipped[0], "white": result.declipped[1]},
        "imputed_black": result.imputed_black,
        "raw_mode": result.raw_mode, "outputs": [str(p) for p in written], "seconds": result.seconds,
    }
    with atomic_output(main.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
    return written


def _write_images(main: Path, result, before: bool) -> list[Path]:
    from burstkpn.camera import gamma_compress, linear_to_srgb8
    from burstkpn.io.raw import bayer_to_gray, preview_rgb, write_dng

    burst, image = result.burst, result.image
    preview_path, before_path = main.with_suffix(".preview.png"), main.with_suffix(".before.png")
    if burst.kind == "raw" and result.raw_mode == "full":
        ref = burst.raw_reference
        # the denoised mosaic no longer has the input's noise: no NoiseProfile is written for it
        write_dng(main, np.clip(image, 0, 1), ref, None)
        _write_preview(preview_path, preview_rgb(image, ref.pattern, ref.white_balance))
        if before:
            _write_preview(before_path, preview_rgb(burst.frames[0], ref.pattern, ref.white_balance))
        return [main, preview_path] + ([before_path] if before else [])
    reference = bayer_to_gray(burst.frames[0]) if burst.kind == "raw" else burst.frames[0]
    if burst.kind == "8bit":
        # the inverse of the training linearisation; the reference photo's ICC profile and EXIF (upright) carried over
        meta = {"icc_profile": burst.icc_profile, "exif": burst.exif}
        write_png(main, linear_to_srgb8(image), **meta)
        if before:
            write_png(before_path, linear_to_srgb8(reference), **meta)
        return [main] + ([before_path] if before else [])
    if main.suffix != ".tif":
        raise BurstKPNError(f"{main}: expected a .tif output path for {burst.kind} input")
    _write_tiff16(main, gamma_compress(np.clip(image, 0, 1)) if result.gamma_16bit else image)
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
    from burstkpn.metrics import to_display

    write_png(path, np.round(to_display(linear, border=0) * 255).astype(np.uint8))
