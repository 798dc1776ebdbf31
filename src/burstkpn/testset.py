"""The seeded, versioned evaluation test set: builder, file format and reader.

Every scene (a crop of one source photo, its misalignment and white level) is drawn from
``(seed, image index, crop index)`` and reused at every gain; only the noise differs per gain
(drawn from ``(seed, image, crop, gain)``). The same arguments give the same file, byte for byte.

File: an ``.npz`` (zip, fixed timestamps) holding
  clean (M, S, S) float32, linear, white level applied   noisy (M, N, S, S) float32, not clipped
  sigma_read, sigma_shot, white_level (M,) float64       gain (M,) int64, scene (M,) int64
  shifts (M, N, 2) float32 (dy, dx) output pixels          source (M,) str (photo file name)
  meta () str: JSON with format, version, seed and the builder's arguments.

Colour sets (``colour="bayer"`` or ``"rgb"``, `burstkpn.colour`) are format version 2, with
``meta["colour"]``; each scene's photo is unprocessed into linear camera RGB with its own random camera
(`camera.unprocess`, Brooks et al. 2019; drawn from ``(seed, image, crop, 2)``) before the burst is cut,
and the noise goes onto what is stored:
  bayer: clean (M, S, S) the reference frame's clean mosaic, noisy (M, N, S, S) mosaics, S even,
         the CFA pattern in ``meta["pattern"]`` (top-left 2x2 block, e.g. "RGGB")
  rgb:   clean (M, S, S, 3), noisy (M, N, S, S, 3), linear camera RGB (no mosaic), channels last
and per burst the camera that `camera.process` needs to develop them (`TestSet.camera_params`):
  rgb2cam (M, 3, 3), rgb_gain, red_gain, blue_gain (M,) float64.
Grayscale sets are version 1 as before, byte for byte; the reader takes both.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from burstkpn import __version__
from burstkpn.data import image_paths, load_linear_gray
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.noise import gain_key, noise_level_for_gain
from burstkpn.synth import local_margin, make_scene, motion_geometry, sensor_capture

FORMAT = "burstkpn-testset"
VERSION = 1
COLOUR_VERSION = 2  # colour sets (meta["colour"]): the camera arrays below and colour layouts
ARRAYS = ("clean", "noisy", "sigma_read", "sigma_shot", "white_level", "gain", "scene", "shifts", "source")
KINDS = {"clean": "f", "noisy": "f", "sigma_read": "f", "sigma_shot": "f", "white_level": "f", "shifts": "f",
         "gain": "iu", "scene": "iu", "source": "US"}  # numpy dtype kinds each array may have
CAMERA_ARRAYS = ("rgb2cam", "rgb_gain", "red_gain", "blue_gain")  # colour sets only


@dataclass
class TestSet:
    """Rows are bursts; see the module docstring for the arrays' shapes."""

    clean: np.ndarray
    noisy: np.ndarray
    sigma_read: np.ndarray
    sigma_shot: np.ndarray
    white_level: np.ndarray
    gain: np.ndarray
    scene: np.ndarray
    shifts: np.ndarray
    source: np.ndarray
    meta: dict
    # colour sets only (None for grayscale): the camera of each burst, see the module docstring
    rgb2cam: np.ndarray | None = None
    rgb_gain: np.ndarray | None = None
    red_gain: np.ndarray | None = None
    blue_gain: np.ndarray | None = None

    __test__ = False  # not a pytest class

    def __len__(self) -> int:
        return len(self.gain)

    @property
    def gains(self) -> list[int]:
        return sorted(int(g) for g in np.unique(self.gain))

    def rows(self, gain: int) -> np.ndarray:
        """Indices of the bursts at one gain, in scene order."""
        return np.flatnonzero(self.gain == gain)

    @property
    def colour(self) -> str | None:
        """``"bayer"`` or ``"rgb"`` for a colour set, None for a grayscale one."""
        return self.meta.get("colour")

    def camera_params(self, row: int):
        """The `camera.CameraParams` burst ``row`` was unprocessed with (colour sets only)."""
        from burstkpn.camera import CameraParams

        if self.colour is None:
            raise BurstKPNError("a grayscale test set has no camera parameters")
        return CameraParams(tuple(map(tuple, self.rgb2cam[row])), float(self.rgb_gain[row]), float(self.red_gain[row]),
                            float(self.blue_gain[row]), self.meta.get("pattern", "RGGB"))


def build_testset(
    images,
    gains=(1, 2, 4, 8),
    size: int = 128,
    per_image: int = 1,
    seed: int = 0,
    frames: int = 8,
    motion: str = "global",
    progress: bool = True,
    downsample: int = 4,
    white_level: tuple[float, float] = (0.1, 1.0),
    clip_white: bool = False,
    clip_black: bool = False,
    colour: str | None = None,
    pattern: str = "RGGB",
) -> TestSet:
    """Synthesise ``per_image`` scenes from every photo large enough, at every gain.

    Photos too small for the protocol's window are skipped and listed in ``meta["skipped"]``;
    an unreadable photo, an unknown gain or no usable photo is an error. ``motion``: one of
    `synth.MOTIONS` (`synth.motion_geometry`: the paper's "global", "local", "static", "integer",
    "subpixel"); ``downsample``: the content scale (area downsampling 1, 2 or 4; the paper's is 4);
    ``white_level``: the exposure range (log-uniform; above 1 the scene is brighter than the sensor's
    range); ``clip_white`` / ``clip_black``: the noisy frames are clipped at 1 / at 0 after the noise, as a
    sensor does (the clean frame then holds the scene clipped to [0, 1] and ``white_level`` at most 1, the
    range metrics divide out). Gains: 1, 2, 4, 8 (the paper's) and "base" (base ISO, stored as 0).
    ``colour``: None (grayscale, the paper's), "bayer" (``pattern`` mosaics) or "rgb" (linear camera RGB):
    a colour set, see the module docstring. Defaults build the same file, byte for byte, as the builder always has.
    """
    from tqdm import tqdm

    if per_image < 1:
        raise BurstKPNError(f"--per-image must be at least 1, got {per_image}")
    if not gains:
        raise BurstKPNError("at least one gain is needed")
    named = [noise_level_for_gain(g) for g in gains]  # an unknown gain ("3", "high", "nan") is a one-line error
    gains = [gain_key(g) for g in gains]
    levels = dict(zip(gains, named))
    if len(set(gains)) != len(gains):
        raise BurstKPNError(f"gains repeat: {gains}")
    if frames < 2:
        raise BurstKPNError(f"a burst needs at least 2 frames, got --frames {frames}")
    if downsample not in (1, 2, 4):
        raise BurstKPNError(f"downsample (content scale) must be 1, 2 or 4, got {downsample}")
    low, high = (float(w) for w in white_level)
    if not 0 < low <= high:
        raise BurstKPNError(f"white level range must satisfy 0 < low <= high, got {white_level}")
    if colour is not None:
        from burstkpn.camera import BAYER_PATTERNS
        from burstkpn.colour import COLOURS

        if colour not in COLOURS:
            raise BurstKPNError(f"unknown colour mode {colour!r}: use one of {', '.join(COLOURS)}")
        if pattern not in BAYER_PATTERNS:
            raise BurstKPNError(f"unknown Bayer pattern {pattern!r}: use one of {', '.join(BAYER_PATTERNS)}")
        if colour == "bayer" and size % 2:
            raise BurstKPNError(f"Bayer bursts need an even size, got {size}")
    cfg, local = motion_geometry(motion, frames, size, downsample)
    window = cfg.window + (2 * cfg.downsample * local_margin(cfg, local) if local else 0)
    paths = image_paths(images)

    scenes, skipped = [], []
    cameras = []  # colour sets: one camera per scene
    for i, path in enumerate(tqdm(paths, desc="building test set", unit="img", disable=not progress)):
        if colour is not None:
            scenes_colour = _colour_scenes(path, i, seed, per_image, window, cfg, local, (low, high), colour, pattern)
            if scenes_colour is None:
                skipped.append(path.name)
            for c, scene, params in scenes_colour or ():
                scenes.append((i, c, path.name, scene.frames, scene.shifts, scene.white_level))
                cameras.append(params)
            continue
        image = load_linear_gray(path)
        if min(image.shape) < window:
            skipped.append(path.name)
            continue
        for c in range(per_image):
            rng = np.random.default_rng([seed, i, c])
            scene = make_scene(image, rng, cfg, local, (low, high))
            scenes.append((i, c, path.name, scene.frames, scene.shifts, scene.white_level))
    if not scenes:
        raise BurstKPNError(
            f"all {len(paths)} images are smaller than {window} px on the short side, "
            f"which {size}-px bursts need; use larger photos or a smaller --size"
        )

    rows = []
    for g in gains:
        for s, (i, c, name, frames_clean, shifts, white) in enumerate(scenes):
            rng = np.random.default_rng([seed, i, c, 1, int(g)])
            noisy = sensor_capture(frames_clean, levels[g], rng, clip_white, clip_black)
            clean = np.clip(frames_clean[0], 0.0, 1.0) if clip_white else frames_clean[0]
            rows.append((clean, noisy, levels[g], min(white, 1.0) if clip_white else white, g, s, shifts, name))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "builder": f"burstkpn {__version__}",
        "seed": int(seed),
        "gains": [int(g) for g in gains],
        "size": size,
        "frames": frames,
        "per_image": per_image,
        "downsample": cfg.downsample,
        "small_shift": cfg.small_shift,
        "large_shift": cfg.large_shift,
        "motion": motion,
        "images": [p.name for p in paths],
        "skipped": skipped,
        "space": "linear, white level applied, noise not clipped",
    }
    # options beyond the paper's protocol are recorded only when used, so default sets stay byte-identical
    extra = {"white_level": [low, high] if (low, high) != (0.1, 1.0) else None,
             "clip": ([] + ["white"] * clip_white + ["black"] * clip_black) or None,
             "whole_pixel": True if cfg.whole_pixel else None,
             "large_rate": cfg.large_rate if motion in ("static", "integer", "subpixel") else None}
    meta.update({k: v for k, v in extra.items() if v is not None})
    if clip_white or clip_black:
        meta["space"] = (f"linear, white level applied, noisy frames clipped to [{0 if clip_black else '-inf'}, "
                         f"{1 if clip_white else 'inf'}]" + (", clean clipped to [0, 1], white_level = min(exposure, 1)"
                                                             if clip_white else ""))
    camera_arrays = {}
    if colour is not None:
        meta["version"] = COLOUR_VERSION
        meta["colour"] = colour
        meta["space"] = (meta["space"].replace("linear", "linear camera RGB (Brooks et al. unprocessing, a camera per burst)", 1)
                         + (f", {pattern} Bayer mosaic, noise on the mosaic" if colour == "bayer" else ", channels last"))
        if colour == "bayer":
            meta["pattern"] = pattern
        per_row = [cameras[r[5]] for r in rows]
        camera_arrays = {"rgb2cam": np.array([p.rgb2cam for p in per_row], dtype=np.float64).reshape(-1, 3, 3),
                         "rgb_gain": np.array([p.rgb_gain for p in per_row], dtype=np.float64),
                         "red_gain": np.array([p.red_gain for p in per_row], dtype=np.float64),
                         "blue_gain": np.array([p.blue_gain for p in per_row], dtype=np.float64)}
    return TestSet(
        clean=np.stack([r[0] for r in rows]).astype(np.float32),
        noisy=np.stack([r[1] for r in rows]).astype(np.float32),
        sigma_read=np.array([r[2].sigma_read for r in rows]),
        sigma_shot=np.array([r[2].sigma_shot for r in rows]),
        white_level=np.array([r[3] for r in rows]),
        gain=np.array([r[4] for r in rows], dtype=np.int64),
        scene=np.array([r[5] for r in rows], dtype=np.int64),
        shifts=np.stack([r[6] for r in rows]).astype(np.float32),
        source=np.array([r[7] for r in rows]),
        meta=meta,
        **camera_arrays,
    )


def _colour_scenes(path, i, seed, per_image, window, cfg, local, white_level, colour, pattern):
    """The colour scenes of photo ``i``: [(crop index, `Scene` of stored clean frames, `CameraParams`)], or
    None when the photo is too small. Geometry from ``(seed, i, c)`` as for grayscale, camera from ``(seed, i, c, 2)``."""
    from burstkpn.colour import colour_frames, load_display_rgb, make_colour_scene, unprocess_photo

    photo = load_display_rgb(path)
    if min(photo.shape[:2]) < window:
        return None
    out = []
    for c in range(per_image):
        linear, params = unprocess_photo(photo, np.random.default_rng([seed, i, c, 2]), pattern)
        scene = make_colour_scene(linear, [seed, i, c], cfg, local, white_level)
        scene.frames = colour_frames(scene, colour, pattern)
        out.append((c, scene, params))
    return out


def save_testset(testset: TestSet, path: str | Path) -> None:
    """Write atomically as a deterministic .npz (fixed zip timestamps, no pickles)."""
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in ARRAYS:
                _write_array(zf, name, np.asarray(getattr(testset, name)))
            for name in CAMERA_ARRAYS if testset.meta.get("colour") is not None else ():
                _write_array(zf, name, np.asarray(getattr(testset, name)))
            _write_array(zf, "meta", np.array(json.dumps(testset.meta, sort_keys=True)))


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())


def load_testset(path: str | Path) -> TestSet:
    """Read and validate a file written by `save_testset`; a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise BurstKPNError(f"{path}: no such test-set file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in (*ARRAYS, "meta")}
            meta = json.loads(str(arrays.pop("meta")))
            if isinstance(meta, dict) and meta.get("version") == COLOUR_VERSION:
                arrays.update({name: npz[name] for name in CAMERA_ARRAYS})
    except KeyError as exc:
        raise BurstKPNError(f"{path}: not a burstkpn test set (missing {exc.args[0]})") from None
    except Exception as exc:
        raise BurstKPNError(f"{path}: not a readable burstkpn test set ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BurstKPNError(f"{path}: not a burstkpn test set (format is {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") not in (VERSION, COLOUR_VERSION):
        raise BurstKPNError(f"{path}: test-set version {meta.get('version')} is not supported "
                            f"(this burstkpn reads {VERSION}, and {COLOUR_VERSION} for colour sets)")
    colour = meta.get("colour") if meta["version"] == COLOUR_VERSION else None
    if meta["version"] == COLOUR_VERSION and colour not in ("bayer", "rgb"):
        raise BurstKPNError(f"{path}: test-set version {COLOUR_VERSION} needs meta colour 'bayer' or 'rgb', got {colour!r}")
    if meta["version"] == VERSION and "colour" in meta:
        raise BurstKPNError(f"{path}: a version {VERSION} test set is grayscale, but its meta names colour {meta['colour']!r}")
    for name, kinds in KINDS.items():  # shapes and types are checked before anything uses them
        a = arrays[name]
        if a.ndim == 0 or a.dtype.kind not in kinds:
            raise BurstKPNError(f"{path}: inconsistent test-set arrays ({name} is {a.dtype} of shape {a.shape})")
    for name in CAMERA_ARRAYS if colour else ():
        a = arrays[name]
        if a.dtype.kind != "f" or a.ndim != (3 if name == "rgb2cam" else 1) or (name == "rgb2cam" and a.shape[1:] != (3, 3)):
            raise BurstKPNError(f"{path}: inconsistent test-set arrays ({name} is {a.dtype} of shape {a.shape})")
    ts = TestSet(**arrays, meta=meta)
    m = len(ts.gain)
    if m == 0 or 0 in ts.noisy.shape:
        raise BurstKPNError(f"{path}: empty test set (noisy {ts.noisy.shape})")
    ndim = 5 if colour == "rgb" else 4
    if ts.noisy.ndim != ndim or ts.clean.shape != (m, *ts.noisy.shape[2:]) or ts.noisy.shape[0] != m \
            or (colour == "rgb" and ts.noisy.shape[-1] != 3) or (colour == "bayer" and (ts.noisy.shape[-1] % 2 or ts.noisy.shape[-2] % 2)):
        raise BurstKPNError(f"{path}: inconsistent test-set arrays (clean {ts.clean.shape}, noisy {ts.noisy.shape})")
    if any(len(getattr(ts, k)) != m for k in ("sigma_read", "sigma_shot", "white_level", "scene", "shifts", "source",
                                               *(CAMERA_ARRAYS if colour else ()))):
        raise BurstKPNError(f"{path}: inconsistent test-set arrays (row counts differ)")
    if not all(np.isfinite(getattr(ts, k)).all() for k, kinds in KINDS.items() if kinds == "f"):
        raise BurstKPNError(f"{path}: test set contains NaN or Inf values")
    if colour and not (all(np.isfinite(getattr(ts, k)).all() for k in CAMERA_ARRAYS)
                       and all((getattr(ts, k) > 0).all() for k in CAMERA_ARRAYS[1:])):
        raise BurstKPNError(f"{path}: test set's camera parameters are not finite and positive")
    if colour:
        try:
            for row in range(m):
                ts.camera_params(row)
        except (ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BurstKPNError(f"{path}: test set's camera parameters are unusable (row {row}: {reason[:100]})") from None
    return ts


def subset(testset: TestSet, rows: np.ndarray) -> TestSet:
    """The test set restricted to ``rows`` (same meta)."""
    names = (*ARRAYS, *(CAMERA_ARRAYS if testset.rgb2cam is not None else ()))
    return replace(testset, **{k: np.asarray(getattr(testset, k))[rows] for k in names})
