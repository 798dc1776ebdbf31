"""Test helper: synthetic raw bursts written as DNG (mosaic of a clean photo, shifts, noise, levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from burstkpn.camera import srgb8_to_linear
from burstkpn.io.raw import RawFrame, write_dng
from burstkpn.noise import NoiseLevel, add_noise

CHANNEL = {"R": 0, "G": 1, "B": 2}


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W, 3) -> (H, W) Bayer mosaic with ``pattern`` (top-left 2x2 block)."""
    out = np.empty(rgb.shape[:2], dtype=np.float32)
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[i::2, j::2] = rgb[i::2, j::2, CHANNEL[pattern[k]]]
    return out


def clean_rgb(size: int = 96) -> np.ndarray:
    """A linear colour crop of scikit-image's astronaut, (size + 16, size + 16, 3)."""
    from skimage import data

    return srgb8_to_linear(data.astronaut()[100 : 116 + size, 150 : 166 + size])


def write_raw_burst(folder: Path, frames: int = 4, size: int = 96, pattern: str = "RGGB",
                    noise: NoiseLevel = NoiseLevel(0.02, 0.01), black=(64, 64, 64, 64), white: int = 4095,
                    profile: bool = True, shift: int = 2, seed: int = 0):
    """Write ``frames`` DNGs (frame_00.dng, ...) of a shifted, noisy mosaic; returns (clean (size, size), paths).

    Shifts are even (whole Bayer blocks) so every frame keeps the pattern; frame 0 is unshifted.
    """
    rng = np.random.default_rng(seed)
    rgb = clean_rgb(size)
    ref = RawFrame(np.zeros((size, size), np.float32), pattern, tuple(float(b) for b in black), float(white), Path("ref"))
    paths, clean = [], None
    for i in range(frames):
        dy, dx = (0, 0) if i == 0 else 2 * rng.integers(-shift // 2, shift // 2 + 1, size=2)
        crop = mosaic(rgb[8 + dy : 8 + dy + size, 8 + dx : 8 + dx + size], pattern)
        clean = crop if i == 0 else clean
        path = folder / f"frame_{i:02d}.dng"
        write_dng(path, add_noise(crop, noise, rng), ref, noise if profile else None)
        paths.append(path)
    return clean, paths
