"""Source photos -> linear grayscale images -> freshly synthesised training bursts.

`BurstDataset` is map-style and deterministic: sample ``k`` is a pure function of
``(seed, k)``, so a training run that resumes at step t just asks for the next indices, and
each DDP rank asks for its own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from burstkpn.align import tile_align
from burstkpn.camera import gamma_expand, to_grayscale
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import list_images, read_image
from burstkpn.noise import NoiseRange, sample_noise_level
from burstkpn.synth import BurstConfig, LocalMotion, local_margin, make_scene, sensor_capture


def load_linear_gray(path: str | Path) -> np.ndarray:
    """A display-referred photo (8- or 16-bit) -> (H, W) float32 linear grayscale (METHOD §1.1)."""
    image = read_image(path)
    return to_grayscale(gamma_expand(image.pixels)).astype(np.float32)


def image_paths(sources: list[str | Path] | str | Path) -> list[Path]:
    """Expand folders (their images, sorted) and files into one list of image paths."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    paths: list[Path] = []
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise BurstKPNError(f"{src}: no such file or folder")
        paths.extend(list_images(src) if src.is_dir() else [src])
    if not paths:
        raise BurstKPNError("no images given")
    return paths


def load_images(
    paths: list[Path], min_side: int, progress: bool = True
) -> tuple[list[np.ndarray], list[Path]]:
    """Decode every usable image; warn (naming them) about unreadable or too-small ones.

    Returns the images and their paths; raises if none is usable.
    """
    from tqdm import tqdm

    images, kept, unreadable, small = [], [], [], []
    for path in tqdm(paths, desc="loading images", unit="img", disable=not progress or len(paths) < 20):
        try:
            image = load_linear_gray(path)
        except BurstKPNError as exc:
            unreadable.append(str(exc))
            continue
        if min(image.shape) < min_side:
            small.append(path.name)
            continue
        images.append(image)
        kept.append(path)
    report_skipped(unreadable, small, min_side, len(paths), len(images))
    return images, kept


def report_skipped(unreadable: list[str], small: list[str], min_side: int, n_paths: int, n_kept: int) -> None:
    """Warn (naming them) about photos a loader skipped; a one-line error when none was usable."""
    for message in unreadable:
        print(f"burstkpn: warning: skipped {message}", file=sys.stderr)
    if small:
        print(
            f"burstkpn: warning: skipped {len(small)} image(s) smaller than {min_side} px on the short side: "
            + ", ".join(small[:5]) + (" ..." if len(small) > 5 else ""),
            file=sys.stderr,
        )
    if not n_kept:
        raise BurstKPNError(f"no usable image among {n_paths} (need readable images of at least {min_side} px)")


CLIPPED_TARGETS = ("scene", "clipped-mean")  # `TrainingDataConfig.clipped_target`, `clip_target`


@dataclass(frozen=True)
class TrainingDataConfig:
    """What the training sampler draws; defaults are the paper's (global motion, full bursts)."""

    burst: BurstConfig = field(default_factory=BurstConfig)
    noise: NoiseRange = field(default_factory=NoiseRange)
    white_level: tuple[float, float] = (0.1, 1.0)
    # share of bursts with local motion (rotation/scale + a moving object), the rest global only
    local_fraction: float = 0.0
    local: LocalMotion = field(default_factory=LocalMotion)
    # share of bursts cut short to n ~ U{min_frames .. N-1} valid frames: the reference and n - 1
    # alternate frames in random slots (models with variable_frames)
    short_fraction: float = 0.0
    min_frames: int = 1
    # shares of bursts whose frames line up exactly (the question the paper's motion never asks): "static"
    # crops the same window for every frame, at a content scale (area downsampling) drawn from
    # aligned_downsample; "integer" shifts frames by whole pixels (no downsampling, |shift| <= integer_shift)
    static_fraction: float = 0.0
    integer_fraction: float = 0.0
    aligned_downsample: tuple[int, ...] = (1, 2, 4)
    integer_shift: int = 3
    # clipping, as a sensor does it: a share of bursts exposed past the sensor's range (white level drawn
    # from saturated_white_level, above 1) and clipped at 1 after the noise; a share clipped at 0 after
    # the noise (black-level-subtracted raw). Their target is the clean frame clipped to [0, 1].
    saturated_fraction: float = 0.0
    saturated_white_level: tuple[float, float] = (1.0, 6.0)
    black_clip_fraction: float = 0.0
    # the target of a clipped burst (`clip_target`): "scene" (clipped to [0, 1]) teaches a model to undo the
    # clip's bias itself; "clipped-mean" (what the clipping sensor records on average) teaches it to merge,
    # and `denoise` declips the merge (`noise.declip`) as it does any merge of clipped frames
    clipped_target: str = "scene"
    # black-clipped bursts as `denoise` hands them to a model: their cut values filled in first (`noise.impute_black`
    # at the burst's noise level, `pipeline.impute_input`), the scene their target at black (white: clipped_target)
    impute_black: bool = False
    # a share of well-exposed, low-noise bursts (base ISO and around it, the question the log-uniform noise
    # range asks a few percent of the time): noise drawn from low_noise, white level from low_noise_white_level
    low_noise_fraction: float = 0.0
    low_noise: NoiseRange = field(default_factory=lambda: NoiseRange((-3.0, -2.3), (-4.0, -3.0)))
    low_noise_white_level: tuple[float, float] = (0.5, 1.0)
    # a share of bursts handed over HDR+ tile-aligned (`align.tile_align`, after the black imputation), as `denoise`
    # hands real bursts to a model: tile alignment resamples the frames, so they agree better than their noise
    # says, which the frames the model pre-aligns itself never show it
    tile_align_fraction: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.local_fraction, self.short_fraction, self.static_fraction, self.integer_fraction,
                  self.saturated_fraction, self.black_clip_fraction, self.low_noise_fraction, self.tile_align_fraction)
        if not all(0.0 <= f <= 1.0 for f in shares):
            raise BurstKPNError("local/short/static/integer/saturated/black_clip/low_noise/tile_align fractions must lie "
                                "in [0, 1]")
        if self.clipped_target not in CLIPPED_TARGETS:
            raise BurstKPNError(f"clipped_target must be one of {', '.join(CLIPPED_TARGETS)}, got {self.clipped_target!r}")
        if not 0.0 < self.low_noise_white_level[0] <= self.low_noise_white_level[1]:
            raise BurstKPNError(f"low_noise_white_level must satisfy 0 < low <= high, got {self.low_noise_white_level}")
        if self.static_fraction + self.integer_fraction + self.local_fraction > 1.0:
            raise BurstKPNError("static_fraction + integer_fraction + local_fraction must be at most 1")
        if not self.aligned_downsample or any(d < 1 for d in self.aligned_downsample) or self.integer_shift < 0:
            raise BurstKPNError("aligned_downsample needs factors >= 1 and integer_shift must be >= 0")
        if not 1.0 <= self.saturated_white_level[0] <= self.saturated_white_level[1]:
            raise BurstKPNError(f"saturated_white_level must satisfy 1 <= low <= high, got {self.saturated_white_level}")
        if not 1 <= self.min_frames <= self.burst.frames:
            raise BurstKPNError(f"min_frames must lie in 1..{self.burst.frames}, got {self.min_frames}")

    @property
    def min_side(self) -> int:
        """Shortest photo side the sampler can cut bursts from."""
        if self.local_fraction == 0:
            return self.burst.window
        return self.burst.window + 2 * self.burst.downsample * local_margin(self.burst, self.local)


class BurstDataset(Dataset):
    """Training bursts synthesised on the fly from a folder (or list) of photos.

    Item k is a dict of tensors:
      ``burst`` (N, S, S) noisy linear; ``clean`` (S, S) linear ground truth (same white level);
      ``sigma_read``, ``sigma_shot``, ``white_level`` () float32 (the data range the loss divides out:
      the exposure, or 1 for a saturated burst); ``exposure`` () the drawn white level; ``shifts`` (N, 2)
      output pixels; ``clipped`` () 1 where the frames were clipped (white or black), else 0;
      ``valid`` (N,) float32, 1 for the frames the model may use (all unless ``short_fraction``).
    The length is nominal (the stream is endless): index with any k >= 0.
    """

    def __init__(self, sources, cfg: TrainingDataConfig = TrainingDataConfig(), seed: int = 0, progress: bool = True):
        self.cfg = cfg
        self.seed = int(seed)
        self.images, self.paths = load_images(image_paths(sources), cfg.min_side, progress)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        image = self.images[int(rng.integers(len(self.images)))]
        cfg = self.cfg
        local, geometry, saturated, exposure, noise = draw_burst_kind(cfg, rng)
        scene = make_scene(image, rng, geometry, cfg.local if local else None, exposure)
        white = scene.white_level
        level = sample_noise_level(rng, noise)
        clean_frames = scene.frames
        valid = np.ones(cfg.burst.frames, np.float32)
        if cfg.short_fraction > 0 and cfg.min_frames < cfg.burst.frames and rng.random() < cfg.short_fraction:
            # the reference plus a random subset of the alternate slots: every slot is missing equally
            # often (trailing gaps only taught a run to distrust the low slots, measured: frame 1 got
            # 0.02 of the weight against 0.07-0.09 for frames 3-7 on full bursts)
            n = int(rng.integers(cfg.min_frames, cfg.burst.frames))
            valid[1 + rng.permutation(cfg.burst.frames - 1)[: cfg.burst.frames - n]] = 0
        black = cfg.black_clip_fraction > 0 and rng.random() < cfg.black_clip_fraction
        noisy = sensor_capture(clean_frames, level, rng, clip_white=saturated, clip_black=black)
        noisy, black = fill_black(noisy, level, black, cfg)
        noisy = tile_align_share(noisy, cfg, rng)
        clean = clip_target(clean_frames[0], level, saturated, black, cfg.clipped_target)
        return {
            "burst": torch.from_numpy(noisy),
            "clean": torch.from_numpy(np.ascontiguousarray(clean)),
            "sigma_read": torch.tensor(level.sigma_read, dtype=torch.float32),
            "sigma_shot": torch.tensor(level.sigma_shot, dtype=torch.float32),
            "white_level": torch.tensor(min(white, 1.0), dtype=torch.float32),
            "exposure": torch.tensor(white, dtype=torch.float32),
            "clipped": torch.tensor(float(saturated or black), dtype=torch.float32),
            "shifts": torch.from_numpy(np.ascontiguousarray(scene.shifts, np.float32)),
            "valid": torch.from_numpy(valid),
        }


def clip_target(clean: np.ndarray, level, saturated: bool, black: bool, target: str = "scene") -> np.ndarray:
    """The training target of one burst from its clean scene (any shape, linear): unchanged for an unclipped
    burst; for one clipped at white (``saturated``) or at 0 (``black``), with ``target`` "scene" the scene
    clipped to [0, 1], with "clipped-mean" what the clipping sensor records there on average
    (`noise.clipped_mean` at the burst's noise ``level``: the scene plus the clip's bias)."""
    if target == "clipped-mean" and (saturated or black):
        from burstkpn.noise import clipped_mean

        return clipped_mean(clean, level, 0.0 if black else None, 1.0 if saturated else None).astype(np.float32)
    return np.clip(clean, 0.0, 1.0) if saturated else clean


def fill_black(noisy: np.ndarray, level, black: bool, cfg: TrainingDataConfig) -> tuple[np.ndarray, bool]:
    """A burst's frames (..., H, W) and whether they were cut at 0 -> (the frames a model is given, whether they
    still hold cut values): with ``cfg.impute_black`` the cut values filled in (`noise.impute_black`), as `denoise`
    does before its model, so the target is the scene there."""
    if not (black and cfg.impute_black):
        return noisy, black
    from burstkpn.noise import impute_black
    from burstkpn.noise_estimation import CLIP_TOLERANCE

    return impute_black(noisy, level, 0.0, CLIP_TOLERANCE), False


def tile_align_share(burst: np.ndarray, cfg: TrainingDataConfig, rng: np.random.Generator) -> np.ndarray:
    """burst (N, H, W) or (C, N, H, W) -> HDR+ tile-aligned (`align.tile_align`) for a ``cfg.tile_align_fraction``
    share of bursts, else as it is. Nothing is drawn from ``rng`` when the share is 0, so older streams are unchanged."""
    if cfg.tile_align_fraction > 0 and rng.random() < cfg.tile_align_fraction:
        return tile_align(burst)
    return burst


def draw_burst_kind(cfg: TrainingDataConfig, rng: np.random.Generator):
    """The kind of one training burst, in a fixed order of draws (grayscale and colour streams alike):
    (local motion?, burst geometry, saturated?, white-level range, noise range). Extra draws happen only
    when a feature is on, so the paper's stream stays what it was."""
    local = cfg.local_fraction > 0 and rng.random() < cfg.local_fraction
    geometry = cfg.burst
    if not local and cfg.static_fraction + cfg.integer_fraction > 0:
        geometry = aligned_geometry(cfg, rng)
    saturated = cfg.saturated_fraction > 0 and rng.random() < cfg.saturated_fraction
    quiet = cfg.low_noise_fraction > 0 and rng.random() < cfg.low_noise_fraction
    exposure = cfg.saturated_white_level if saturated else cfg.low_noise_white_level if quiet else cfg.white_level
    return local, geometry, saturated, exposure, cfg.low_noise if quiet else cfg.noise


def aligned_geometry(cfg: TrainingDataConfig, rng: np.random.Generator) -> BurstConfig:
    """The burst geometry of one training burst under the aligned-motion mix: static (one window for every
    frame, at a drawn content scale), whole-pixel shifts, or the configured (paper's) motion; one draw."""
    u = rng.random()
    if u < cfg.static_fraction:
        scale = int(cfg.aligned_downsample[int(rng.integers(len(cfg.aligned_downsample)))])
        return replace(cfg.burst, downsample=scale, small_shift=0, large_shift=0, large_rate=0.0)
    if u < cfg.static_fraction + cfg.integer_fraction:
        return replace(cfg.burst, downsample=1, small_shift=cfg.integer_shift, large_shift=cfg.integer_shift,
                       large_rate=0.0)
    return cfg.burst


# --- The colour stream (issue 22, part 3): training bursts for the joint colour/raw model -------------

COLOUR_MODES = ("bayer", "rgb")


def load_display_photos(paths: list[Path], min_side: int, progress: bool = True) -> tuple[list[np.ndarray], list[Path]]:
    """Decode every usable photo display-referred, kept compact: uint8 (8-bit files) or uint16, (H, W) for
    gray photos and (H, W, 3) for colour ones; `display_crop` turns a crop into the float values
    `colour.load_display_rgb` gives. Warns about unreadable or too-small photos as `load_images`."""
    from tqdm import tqdm

    images, kept, unreadable, small = [], [], [], []
    for path in tqdm(paths, desc="loading images", unit="img", disable=not progress or len(paths) < 20):
        try:
            image = read_image(path)
        except BurstKPNError as exc:
            unreadable.append(str(exc))
            continue
        pixels = image.pixels[..., :3] if image.pixels.ndim == 3 else image.pixels
        if min(pixels.shape[:2]) < min_side:
            small.append(path.name)
            continue
        if image.bit_depth == 8:
            pixels = np.round(pixels * 255.0).astype(np.uint8)
        elif image.bit_depth == 16:
            pixels = np.round(pixels * 65535.0).astype(np.uint16)
        images.append(np.ascontiguousarray(pixels))
        kept.append(path)
    report_skipped(unreadable, small, min_side, len(paths), len(images))
    return images, kept


def display_crop(image: np.ndarray, y: int, x: int, side: int) -> np.ndarray:
    """A ``side``-px square of a `load_display_photos` image as (side, side, 3) float32 display values in [0, 1]."""
    crop = image[y : y + side, x : x + side]
    if crop.dtype == np.uint8:
        crop = crop.astype(np.float32) / 255.0
    elif crop.dtype == np.uint16:
        crop = crop.astype(np.float32) / 65535.0
    if crop.ndim == 2:
        crop = np.repeat(crop[..., None], 3, axis=-1)
    return np.ascontiguousarray(crop, dtype=np.float32)


class ColourBurstDataset(Dataset):
    """Colour training bursts for the planar model (`burstkpn.models.planar`), synthesised on the fly.

    Per item, from ``np.random.default_rng([seed, k])`` (deterministic per (seed, index), like `BurstDataset`):
    a photo; the same motion/clipping draws as `BurstDataset` (local / static / integer / saturated /
    short / black-clip shares of ``cfg``); a random camera (`camera.sample_camera_params`, RGGB); a crop
    just large enough for the burst's geometry, unprocessed to linear camera RGB (`camera.unprocess`, per
    pixel, so the same as unprocessing the photo); the burst cut channel by channel with `synth.make_scene`
    and identically seeded generators (`colour.make_colour_scene`: one geometry and exposure for all
    channels, motion applied before the mosaic); for ``bayer`` each frame mosaicked (RGGB); shot + read
    noise on the mosaic (or on each RGB channel), then the clipping. ``cfg.burst.size`` is the mosaic side.

    Item k is a dict of tensors: ``burst`` (C, N, h, w) noisy packed planes (bayer: C = 4 RGGB planes at
    h = w = S/2, `io.raw.bayer_planes` order; rgb: C = 3 at S); ``clean`` (C, h, w); ``sigma_read``,
    ``sigma_shot`` () (each mosaic pixel's noise); ``white_level``, ``exposure``, ``clipped`` () as in
    `BurstDataset`; ``shifts`` (N, 2) in plane pixels; ``valid`` (N,); ``rgb2cam`` (3, 3) and ``gains`` (3,)
    (rgb_gain, red_gain, blue_gain): the camera, for a loss after the burst's own processing.
    """

    def __init__(self, sources, cfg: TrainingDataConfig = TrainingDataConfig(), seed: int = 0, colour: str = "bayer",
                 progress: bool = True):
        if colour not in COLOUR_MODES:
            raise BurstKPNError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {colour!r}")
        if colour == "bayer" and cfg.burst.size % 2:
            raise BurstKPNError(f"Bayer bursts need an even patch size, got {cfg.burst.size}")
        self.cfg = cfg
        self.seed = int(seed)
        self.colour = colour
        self.images, self.paths = load_display_photos(image_paths(sources), cfg.min_side, progress)

    @property
    def planes(self) -> int:
        return 4 if self.colour == "bayer" else 3

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        from burstkpn.camera import sample_camera_params, unprocess
        from burstkpn.colour import make_colour_scene
        from burstkpn.io.raw import bayer_planes

        rng = np.random.default_rng([self.seed, int(k)])
        image = self.images[int(rng.integers(len(self.images)))]
        cfg = self.cfg
        local, geometry, saturated, exposure, noise = draw_burst_kind(cfg, rng)
        params = sample_camera_params(rng, "RGGB")
        # only the window the burst needs is unprocessed (every stage is per pixel)
        side = geometry.window + (2 * geometry.downsample * local_margin(geometry, cfg.local) if local else 0)
        y = int(rng.integers(0, image.shape[0] - side + 1))
        x = int(rng.integers(0, image.shape[1] - side + 1))
        linear, _ = unprocess(display_crop(image, y, x, side), params=params, mosaicked=False)
        scene = make_colour_scene(linear.astype(np.float32), int(rng.integers(2**63)), geometry,
                                  cfg.local if local else None, exposure)
        level = sample_noise_level(rng, noise)
        valid = np.ones(cfg.burst.frames, np.float32)
        if cfg.short_fraction > 0 and cfg.min_frames < cfg.burst.frames and rng.random() < cfg.short_fraction:
            n = int(rng.integers(cfg.min_frames, cfg.burst.frames))
            valid[1 + rng.permutation(cfg.burst.frames - 1)[: cfg.burst.frames - n]] = 0
        black = cfg.black_clip_fraction > 0 and rng.random() < cfg.black_clip_fraction
        frames = scene.frames  # (N, S, S, 3) camera RGB at the exposure
        if self.colour == "bayer":
            from burstkpn.camera import mosaic

            clean_frames = mosaic(frames, "RGGB")  # (N, S, S)
            noisy = sensor_capture(clean_frames, level, rng, clip_white=saturated, clip_black=black)
            burst, clean = bayer_planes(noisy).transpose(1, 0, 2, 3), bayer_planes(clean_frames[0])
            shifts = scene.shifts / 2
        else:
            clean_frames = np.ascontiguousarray(frames.transpose(3, 0, 1, 2))  # (3, N, S, S)
            burst = sensor_capture(clean_frames, level, rng, clip_white=saturated, clip_black=black)
            clean, shifts = clean_frames[:, 0], scene.shifts
        burst, black = fill_black(burst, level, black, cfg)  # per plane (Bayer planes, not the mosaic)
        burst = tile_align_share(burst, cfg, rng)  # one alignment for all planes, as `denoise` does
        clean = clip_target(clean, level, saturated, black, cfg.clipped_target)
        white = scene.white_level
        return {
            "burst": torch.from_numpy(np.ascontiguousarray(burst, np.float32)),
            "clean": torch.from_numpy(np.ascontiguousarray(clean, np.float32)),
            "sigma_read": torch.tensor(level.sigma_read, dtype=torch.float32),
            "sigma_shot": torch.tensor(level.sigma_shot, dtype=torch.float32),
            "white_level": torch.tensor(min(white, 1.0), dtype=torch.float32),
            "exposure": torch.tensor(white, dtype=torch.float32),
            "clipped": torch.tensor(float(saturated or black), dtype=torch.float32),
            "shifts": torch.from_numpy(np.ascontiguousarray(shifts, np.float32)),
            "valid": torch.from_numpy(valid),
            "rgb2cam": torch.tensor(params.rgb2cam, dtype=torch.float32),
            "gains": torch.tensor((params.rgb_gain, params.red_gain, params.blue_gain), dtype=torch.float32),
        }
