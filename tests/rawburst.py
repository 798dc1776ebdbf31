"""Test helper: synthetic raw bursts written as DNG (mosaic of a clean photo, shifts, noise, levels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from burstkpn.camera import srgb8_to_linear
from burstkpn.noise import NoiseLevel
from burstkpn.raw_synth import mosaic
from burstkpn.raw_synth import write_raw_burst as write_rgb_burst

__all__ = ["clean_rgb", "mosaic", "write_raw_burst"]


def clean_rgb(size: int = 96) -> np.ndarray:
    """A linear colour crop of scikit-image's astronaut, (size + 16, size + 16, 3)."""
    from skimage import data

    return srgb8_to_linear(data.astronaut()[100 : 116 + size, 150 : 166 + size])


def write_raw_burst(folder: Path, frames: int = 4, size: int = 96, pattern: str = "RGGB",
                    noise: NoiseLevel = NoiseLevel(0.02, 0.01), black=(64, 64, 64, 64), white: int = 4095,
                    profile: bool = True, shift: int = 2, seed: int = 0):
    """Write ``frames`` DNGs (frame_00.dng, ...) of a size x size shifted, noisy mosaic; returns (clean, paths)."""
    rgb = clean_rgb(size)[8 - 2 : 8 + size + 2, 8 - 2 : 8 + size + 2]  # a 2-px margin each side for the shifts
    return write_rgb_burst(folder, rgb, frames, pattern, noise, black, white, profile, shift=2, seed=seed)
