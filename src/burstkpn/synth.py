"""Burst synthesis with misalignment (METHOD §1.3, the authors' ``upscale=4, jitter=16, smalljitter=2``).

From a linear high-resolution image: the reference frame is the centre crop of a window; each
other frame is the same-size crop translated by an integer number of high-res pixels, up to
``small_shift`` output pixels, or ``large_shift`` for a frame drawn as largely misaligned (per
burst, each frame independently with probability ``min(Poisson(rate) / 8, 1)``). Every frame is
then area-downsampled, which turns the integer shifts into sub-pixel ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from burstkpn.errors import BurstKPNError


@dataclass(frozen=True)
class BurstConfig:
    """Geometry of a synthetic burst; defaults are the paper's."""

    frames: int = 8  # N, reference included
    size: int = 128  # output patch side, pixels
    downsample: int = 4  # area-downsampling factor
    small_shift: int = 2  # max |shift| of an ordinary frame, output pixels
    large_shift: int = 16  # max |shift| of a largely misaligned frame, output pixels
    large_rate: float = 1.5  # Poisson mean of the large-shift count
    large_divisor: float = 8.0  # p_large = min(Poisson(large_rate) / large_divisor, 1)
    # shifts in whole output pixels (multiples of the downsampling factor in high-res pixels): frames that
    # a whole-pixel alignment lines up exactly, at any content scale
    whole_pixel: bool = False

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise BurstKPNError(f"a burst needs at least 1 frame, got frames={self.frames}")
        if self.size < 1 or self.downsample < 1:
            raise BurstKPNError(f"size and downsample must be positive, got {self.size}, {self.downsample}")
        if self.small_shift < 0 or self.large_shift < self.small_shift:
            raise BurstKPNError("shifts must satisfy 0 <= small_shift <= large_shift")

    @property
    def window(self) -> int:
        """Side of the high-resolution window one burst needs."""
        return self.downsample * (self.size + 2 * self.large_shift)


@dataclass
class SynthBurst:
    """A clean misaligned burst and what was sampled to make it.

    frames: (N, S, S) linear, clean; ``frames[0]`` is the reference (the ground truth).
    shifts: (N, 2) float (dy, dx) in output pixels: frame i at p shows the reference scene at p + shift.
    """

    frames: np.ndarray
    shifts: np.ndarray


@dataclass(frozen=True)
class LocalMotion:
    """A second motion model (``--motion local``), where one global translation per frame fails.

    On top of the paper's per-frame translation, each alternate frame gets a small rotation and
    scale about the crop centre, and an elliptical region (an "object") moves independently of
    the camera, occluding and revealing the background. The reference frame is unchanged.
    """

    max_rotation_deg: float = 1.0
    max_scale: float = 0.01  # scale drawn from 1 ± max_scale
    object_shift: int = 4  # max |object translation| relative to the reference, output pixels
    object_radius: tuple[float, float] = (0.15, 0.35)  # ellipse semi-axes, fraction of the side
    # chance that an alternate frame also shows an intruder: an ellipse of other content (the crop turned
    # 180° about its centre) that is in no other frame, like someone walking through. No frame's kernels
    # can use it there: training on it teaches a model to hand that frame's weight to the others.
    intruder_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.intruder_rate <= 1.0:
            raise BurstKPNError(f"intruder_rate must lie in [0, 1], got {self.intruder_rate}")


def downsample_area(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsampling over the last two axes: (..., H, W) -> (..., H//f, W//f).

    Each output pixel is the mean of an f x f block, so the mean intensity is preserved.
    A remainder of fewer than f rows/columns is cropped.
    """
    if factor == 1:
        return image
    h, w = image.shape[-2] // factor, image.shape[-1] // factor
    blocks = image[..., : h * factor, : w * factor].reshape(*image.shape[:-2], h, factor, w, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(image.dtype)


def sample_shifts(rng: np.random.Generator, cfg: BurstConfig) -> np.ndarray:
    """(N, 2) integer shifts in high-res pixels; row 0 (the reference) is zero."""
    p_large = min(rng.poisson(cfg.large_rate) / cfg.large_divisor, 1.0)
    shifts = np.zeros((cfg.frames, 2), dtype=np.int64)
    for i in range(1, cfg.frames):
        large = rng.random() < p_large
        if cfg.whole_pixel:
            radius = cfg.large_shift if large else cfg.small_shift
            shifts[i] = rng.integers(-radius, radius + 1, size=2) * cfg.downsample
        else:
            radius = (cfg.large_shift if large else cfg.small_shift) * cfg.downsample
            shifts[i] = rng.integers(-radius, radius + 1, size=2)
    return shifts


def check_fits(shape: tuple[int, int], cfg: BurstConfig, name: str = "image") -> None:
    """Raise a clear error when an (H, W) image is too small for ``cfg``'s window."""
    if min(shape) < cfg.window:
        raise BurstKPNError(
            f"{name} is {shape[1]}x{shape[0]} px, too small for {cfg.size}-px bursts with "
            f"±{cfg.large_shift}-px shifts at {cfg.downsample}x downsampling "
            f"(needs at least {cfg.window} px on the short side)"
        )


def local_margin(cfg: BurstConfig, motion: LocalMotion) -> int:
    """Extra output pixels on each side that local motion may reach beyond the global window."""
    corner = np.sqrt(2) * cfg.size / 2
    reach = corner * (np.deg2rad(motion.max_rotation_deg) + motion.max_scale)
    return int(np.ceil(reach)) + motion.object_shift + 1


def synthesize_burst(
    image: np.ndarray,
    rng: np.random.Generator,
    cfg: BurstConfig = BurstConfig(),
    motion: LocalMotion | None = None,
) -> SynthBurst:
    """Cut one clean misaligned burst from a linear (H, W) image at a random position.

    ``motion=None`` is the paper's global translation per frame; a `LocalMotion` adds per-frame
    rotation/scale and an independently moving region (``shifts`` then hold the translations).
    """
    extra = local_margin(cfg, motion) if motion is not None else 0
    padded = BurstConfig(**{**cfg.__dict__, "large_shift": cfg.large_shift + extra})
    check_fits(image.shape, padded)
    margin, side = cfg.downsample * padded.large_shift, cfg.downsample * cfg.size
    y0 = int(rng.integers(0, image.shape[0] - padded.window + 1)) + margin
    x0 = int(rng.integers(0, image.shape[1] - padded.window + 1)) + margin
    shifts = sample_shifts(rng, cfg)
    if motion is None:
        crops = np.stack([image[y0 + dy : y0 + dy + side, x0 + dx : x0 + dx + side] for dy, dx in shifts])
    else:
        crops = _local_motion_crops(image, (y0, x0), side, shifts, rng, motion, cfg.downsample)
    frames = downsample_area(crops.astype(np.float32), cfg.downsample)
    return SynthBurst(frames=frames, shifts=shifts.astype(np.float32) / cfg.downsample)


@dataclass
class Scene:
    """One synthetic scene: a clean burst at its exposure and the record of what was drawn.

    frames: (N, S, S) float32 linear, clean, white level applied (``frames[0]`` is the ground truth
    before any clipping); shifts: (N, 2) (dy, dx) output pixels; white_level: the exposure scale
    (the sensor sees ``linear * white_level``; above 1 the brightest parts will clip at 1).
    """

    frames: np.ndarray
    shifts: np.ndarray
    white_level: float


MOTIONS = ("global", "local", "static", "integer", "subpixel")


def motion_geometry(motion: str, frames: int = 8, size: int = 128, downsample: int = 4) -> tuple[BurstConfig, LocalMotion | None]:
    """The burst geometry each named motion model draws from (test sets, sweeps):
    global: the paper's (±2-px shifts, sub-pixel after downsampling, some frames up to ±16 px);
    local: the paper's plus per-frame rotation/scale and an independently moving object (`LocalMotion`);
    static: every frame the same window (a tripod, a still scene); integer: ±2 whole output pixels (what a
    whole-pixel pre-alignment removes exactly); subpixel: the paper's ±2-px shifts without large ones."""
    if motion not in MOTIONS:
        raise BurstKPNError(f"unknown motion model {motion!r}: use one of {', '.join(MOTIONS)}")
    cfg = BurstConfig(frames=frames, size=size, downsample=downsample)
    if motion == "static":
        cfg = BurstConfig(frames=frames, size=size, downsample=downsample, small_shift=0, large_shift=0, large_rate=0.0)
    elif motion == "integer":
        cfg = BurstConfig(frames=frames, size=size, downsample=downsample, large_shift=2, large_rate=0.0, whole_pixel=True)
    elif motion == "subpixel":
        cfg = BurstConfig(frames=frames, size=size, downsample=downsample, large_shift=2, large_rate=0.0)
    return cfg, (LocalMotion() if motion == "local" else None)


def make_scene(image: np.ndarray, rng: np.random.Generator, cfg: BurstConfig = BurstConfig(),
               motion: LocalMotion | None = None, white_level: tuple[float, float] = (0.1, 1.0)) -> Scene:
    """The one recipe "photo -> clean misaligned burst at an exposure" (training data, test sets, demo,
    benchmarks): `synthesize_burst`, then a white level drawn log-uniformly from ``white_level``
    (`camera.sample_white_level`), in that order of draws from ``rng``."""
    from burstkpn.camera import sample_white_level

    burst = synthesize_burst(image, rng, cfg, motion)
    white = sample_white_level(rng, *white_level)
    return Scene(frames=burst.frames * white, shifts=burst.shifts, white_level=white)


def sensor_capture(clean: np.ndarray, level, rng: np.random.Generator, clip_white: bool = False,
                   clip_black: bool = False) -> np.ndarray:
    """Shot + read noise on clean linear frames (`noise.add_noise`), then what a sensor's range does:
    ``clip_white`` saturates at 1 (the white level), ``clip_black`` cuts at 0 (black-level-subtracted
    raw). float32, same shape; with neither flag the noise is left unclipped (the paper's model)."""
    from burstkpn.noise import add_noise

    noisy = add_noise(clean, level, rng)
    if clip_white or clip_black:
        noisy = np.clip(noisy, 0.0 if clip_black else None, 1.0 if clip_white else None)
    return noisy.astype(np.float32)


def _local_motion_crops(image, origin, side, shifts, rng, motion: LocalMotion, downsample: int) -> np.ndarray:
    """High-res crops (N, side, side) under translation + rotation/scale + a moving ellipse.

    Bilinear resampling with edge replication (torch's grid_sample: ~8x faster than scipy's
    map_coordinates here, which matters when training bursts are made on the fly).
    """
    import torch
    import torch.nn.functional as F

    centre = (side - 1) / 2
    obj_centre = rng.uniform(0.3, 0.7, size=2) * side - centre
    obj_axes = rng.uniform(*motion.object_radius, size=2) * side
    params = np.zeros((len(shifts), 6))  # per frame: cos, sin (scaled), dy, dx, object dy, dx
    params[0, 0] = 1.0
    for i in range(1, len(shifts)):
        theta = np.deg2rad(rng.uniform(-motion.max_rotation_deg, motion.max_rotation_deg))
        scale = 1.0 + rng.uniform(-motion.max_scale, motion.max_scale)
        obj = rng.integers(-motion.object_shift * downsample, motion.object_shift * downsample + 1, size=2)
        params[i] = scale * np.cos(theta), scale * np.sin(theta), *shifts[i], *obj
    p = torch.from_numpy(params).float()[:, :, None, None]  # (N, 6, 1, 1)
    cos, sin, dy, dx, oy, ox = p.unbind(1)
    axis = torch.arange(side, dtype=torch.float32) - centre
    yy, xx = axis[:, None], axis[None, :]
    # background: camera transform about the crop centre, then the frame's translation
    src_y = cos * yy - sin * xx + dy
    src_x = sin * yy + cos * xx + dx
    # the object sits at obj_centre + obj in each frame and shows the reference's object
    inside = ((yy - obj_centre[0] - oy) / obj_axes[0]) ** 2 + ((xx - obj_centre[1] - ox) / obj_axes[1]) ** 2 <= 1
    src_y = torch.where(inside, yy - oy, src_y)
    src_x = torch.where(inside, xx - ox, src_x)
    if motion.intruder_rate > 0:  # drawn only when on, so test sets built without intruders stay the same
        for i in np.flatnonzero(rng.random(len(shifts)) < motion.intruder_rate):
            if i == 0:
                continue
            at = rng.uniform(-0.3, 0.3, size=2) * side
            axes = rng.uniform(*motion.object_radius, size=2) * side
            there = ((yy - at[0]) / axes[0]) ** 2 + ((xx - at[1]) / axes[1]) ** 2 <= 1
            src_y[i] = torch.where(there, -yy, src_y[i])
            src_x[i] = torch.where(there, -xx, src_x[i])
    src_y = src_y + (origin[0] + centre)
    src_x = src_x + (origin[1] + centre)
    h, w = image.shape
    grid = torch.stack([src_x * (2 / (w - 1)) - 1, src_y * (2 / (h - 1)) - 1], dim=-1)  # align_corners=True
    source = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].expand(len(shifts), 1, h, w)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return crops[:, 0].numpy()
