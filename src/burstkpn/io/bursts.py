"""One real burst from a folder or a list of files: image files or camera raw, checked and linearised.

Frames are sorted by file name; the chosen reference is moved to index 0 (the models' convention).
8-bit images are linearised as in training (`burstkpn.camera.gamma_expand`); 16-bit and float
images are taken as linear unless told otherwise; raw files become [0, 1] mosaics (`io.raw`).
Image frames are turned upright by their EXIF Orientation (`io.images.read_image`), so a portrait
phone burst is portrait; the reference's EXIF and ICC profile ride along on the `Burst`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from burstkpn.camera import gamma_expand
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import IMAGE_SUFFIXES, read_image
from burstkpn.io.raw import RAW_SUFFIXES, RawFrame, read_raw


@dataclass
class Burst:
    """frames: (N, H, W) or (N, H, W, 3) float32 linear, reference first; for raw, (N, H, W) mosaics.

    kind: "8bit", "16bit", "float" or "raw"; paths: in frame order (reference first);
    raw_reference: the reference frame's `RawFrame` (levels, pattern, NoiseProfile) for raw bursts;
    exif, icc_profile: the reference image's EXIF (Orientation reset to 1: frames are upright) and
    ICC profile, for the output to carry (`io.images.LoadedImage`).
    """

    frames: np.ndarray
    kind: str
    paths: list[Path]
    raw_reference: RawFrame | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None

    @property
    def is_colour(self) -> bool:
        return self.frames.ndim == 4


def burst_paths(inputs: list[str | Path]) -> list[Path]:
    """Folders expanded to their image/raw files; everything sorted by file name."""
    if not inputs:
        raise BurstKPNError("no input given: pass a folder or the files of one burst")
    suffixes = IMAGE_SUFFIXES + RAW_SUFFIXES
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in item.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
            if not found:
                raise BurstKPNError(f"{item}: no images or raw files found")
            paths += found
        elif item.exists():
            paths.append(item)
        else:
            raise BurstKPNError(f"{item}: no such file or folder")
    return sorted(set(paths), key=lambda p: (p.name, str(p)))


def load_burst(inputs: list[str | Path], reference: int = 0, linear16: bool = True) -> Burst:
    """Read one burst (see the module docstring). ``linear16=False``: 16-bit images are gamma-encoded.
    One frame is a burst too (a variable-length model such as the shipped ``kpn-variable`` takes it)."""
    paths = burst_paths(inputs)
    if not -len(paths) <= reference < len(paths):
        raise BurstKPNError(f"reference frame {reference} is out of range for a burst of {len(paths)} frames")
    reference %= len(paths)
    paths = [paths[reference]] + paths[:reference] + paths[reference + 1 :]
    raw = [p.suffix.lower() in RAW_SUFFIXES for p in paths]
    if any(raw) and not all(raw):
        odd = paths[raw.index(not raw[0])]
        raise BurstKPNError(f"{odd}: mixed formats in one burst (raw and image files); {paths[0]} is {'raw' if raw[0] else 'an image'}")
    return _load_raw(paths) if raw[0] else _load_images(paths, linear16)


def _load_images(paths: list[Path], linear16: bool) -> Burst:
    first = read_image(paths[0])
    frames = [first.pixels]
    for path in paths[1:]:
        image = read_image(path)
        if image.bit_depth != first.bit_depth:
            raise BurstKPNError(f"{path}: {_depth(image.bit_depth)} but {paths[0].name} is {_depth(first.bit_depth)}: mixed bit depths in one burst")
        _check_same_shape(path, image.pixels.shape, paths[0], first.pixels.shape)
        frames.append(image.pixels)
    stack = np.stack(frames)
    kind = {8: "8bit", 16: "16bit", 32: "float"}[first.bit_depth]
    if kind == "8bit" or (kind == "16bit" and not linear16):
        stack = gamma_expand(stack)
    return Burst(stack.astype(np.float32), kind, paths, exif=first.exif, icc_profile=first.icc_profile)


def _load_raw(paths: list[Path]) -> Burst:
    first = read_raw(paths[0])
    frames = [first.mosaic]
    for path in paths[1:]:
        frame = read_raw(path)
        _check_same_shape(path, frame.mosaic.shape, paths[0], first.mosaic.shape)
        if frame.pattern != first.pattern:
            raise BurstKPNError(f"{path}: CFA pattern {frame.pattern} but {paths[0].name} has {first.pattern}")
        frames.append(frame.mosaic)
    return Burst(np.stack(frames), "raw", paths, raw_reference=first)


def _check_same_shape(path: Path, shape: tuple, ref_path: Path, ref_shape: tuple) -> None:
    if shape != ref_shape:
        raise BurstKPNError(f"{path}: frame is {_describe(shape)} but {ref_path.name} is {_describe(ref_shape)}: frames of one burst must match")


def _describe(shape: tuple) -> str:
    colour = "colour" if len(shape) == 3 else "gray"
    return f"{shape[1]}x{shape[0]} {colour}"


def _depth(bits: int) -> str:
    return "float" if bits == 32 else f"{bits}-bit"
