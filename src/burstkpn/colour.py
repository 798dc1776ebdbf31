"""Colour scenes for the test-set builder (``burstkpn synth --colour bayer|rgb``).

A photo is read display-referred (8- or 16-bit, gray photos as three equal channels) and unprocessed
at full resolution into linear camera RGB with a random camera (`camera.unprocess`, Brooks et al.
2019, without the mosaic): every stage is per pixel, so this is the same as unprocessing the crops,
and the downsampling that follows averages linear light, as a sensor does. The burst is then cut
channel by channel with `synth.make_scene` and generators seeded identically, so the three channels
share one crop, one set of shifts (or local motion) and one white level. For ``bayer`` each frame is
then mosaicked (`camera.mosaic`): motion acts on the scene, the CFA samples each frame in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from burstkpn.camera import CameraParams, mosaic, sample_camera_params, unprocess
from burstkpn.synth import BurstConfig, LocalMotion, Scene, make_scene

COLOURS = ("bayer", "rgb")


def load_display_rgb(path: str | Path) -> np.ndarray:
    """A photo as display-referred (H, W, 3) float32 in [0, 1] (a gray photo as three equal channels)."""
    from burstkpn.io.images import read_image

    pixels = read_image(path).pixels
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3], dtype=np.float32)


def unprocess_photo(photo: np.ndarray, rng: np.random.Generator, pattern: str = "RGGB") -> tuple[np.ndarray, CameraParams]:
    """(H, W, 3) display photo -> (H, W, 3) float32 linear camera RGB in [0, 1] and the camera drawn from ``rng``."""
    params = sample_camera_params(rng, pattern)
    linear, _ = unprocess(photo, params=params, mosaicked=False)
    return linear.astype(np.float32), params


def make_colour_scene(linear: np.ndarray, seed, cfg: BurstConfig = BurstConfig(), motion: LocalMotion | None = None,
                      white_level: tuple[float, float] = (0.1, 1.0)) -> Scene:
    """`synth.make_scene` on each channel of a linear (H, W, 3) image with ``np.random.default_rng(seed)`` for
    every channel: one geometry and exposure for all. Returns a `Scene` whose frames are (N, S, S, 3)."""
    scenes = [make_scene(np.ascontiguousarray(linear[..., c]), np.random.default_rng(seed), cfg, motion, white_level)
              for c in range(linear.shape[-1])]
    first = scenes[0]
    assert all(np.array_equal(s.shifts, first.shifts) and s.white_level == first.white_level for s in scenes)
    return Scene(frames=np.stack([s.frames for s in scenes], axis=-1), shifts=first.shifts, white_level=first.white_level)


def colour_frames(scene: Scene, colour: str, pattern: str = "RGGB") -> np.ndarray:
    """The clean frames a colour test set stores: ``bayer``: (N, S, S) mosaics; ``rgb``: (N, S, S, 3) as they are."""
    if colour == "bayer":
        return mosaic(scene.frames, pattern)
    if colour == "rgb":
        return scene.frames
    raise ValueError(f"unknown colour mode {colour!r}: use one of {', '.join(COLOURS)}")
