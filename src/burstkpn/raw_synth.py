"""Synthetic camera-raw bursts written as DNG files: for tests, examples and memory checks.

A linear RGB image is mosaicked with a Bayer pattern; each frame is the mosaic shifted by whole
Bayer blocks (so every frame keeps the pattern), with shot + read noise, black and white levels,
and the NoiseProfile tag, exactly what `burstkpn denoise` reads from a camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import RawFrame, write_dng
from burstkpn.noise import NoiseLevel, add_noise

CHANNEL = {"R": 0, "G": 1, "B": 2}


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W, 3) linear -> (H, W) float32 Bayer mosaic with ``pattern`` (its top-left 2x2 block, e.g. RGGB)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or sorted(pattern) != ["B", "G", "G", "R"]:
        raise BurstKPNError(f"need an (H, W, 3) image and a Bayer pattern like RGGB, got {rgb.shape}, {pattern!r}")
    out = np.empty(rgb.shape[:2], dtype=np.float32)
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[i::2, j::2] = rgb[i::2, j::2, CHANNEL[pattern[k]]]
    return out


def write_raw_burst(folder: str | Path, rgb: np.ndarray, frames: int = 8, pattern: str = "RGGB",
                    noise: NoiseLevel = NoiseLevel(0.02, 0.01), black=(64, 64, 64, 64), white: int = 4095,
                    profile: bool = True, shift: int = 2, seed: int = 0) -> tuple[np.ndarray, list[Path]]:
    """Write ``frames`` DNGs (frame_00.dng, ...) cut from ``rgb`` (H, W, 3) linear in [0, 1].

    Each frame is an (H - 2m, W - 2m) crop, m = ``shift`` rounded up to even, moved by up to
    ``shift`` px (whole Bayer blocks); frame 0 is the centred reference. Returns (the clean reference
    mosaic, the paths). ``profile=False`` leaves out the NoiseProfile tag.
    """
    folder = Path(folder)
    m = 2 * ((shift + 1) // 2)
    h, w = rgb.shape[0] - 2 * m, rgb.shape[1] - 2 * m
    h, w = h - h % 2, w - w % 2
    if min(h, w) < 2:
        raise BurstKPNError(f"image {rgb.shape[1]}x{rgb.shape[0]} is too small for ±{shift}-px shifts")
    rng = np.random.default_rng(seed)
    ref = RawFrame(np.zeros((h, w), np.float32), pattern, tuple(float(b) for b in black), float(white), Path("ref"))
    folder.mkdir(parents=True, exist_ok=True)
    paths, clean = [], None
    for i in range(frames):
        dy, dx = (0, 0) if i == 0 else 2 * rng.integers(-(shift // 2), shift // 2 + 1, size=2)
        crop = mosaic(rgb[m + dy : m + dy + h, m + dx : m + dx + w], pattern)
        clean = crop if i == 0 else clean
        path = folder / f"frame_{i:02d}.dng"
        write_dng(path, add_noise(crop, noise, rng), ref, noise if profile else None)
        paths.append(path)
    return clean, paths
