"""Camera raw in (rawpy / LibRaw, an optional extra), denoised DNG out (tifffile).

A raw frame is copied out of rawpy into a `RawFrame`: the visible Bayer mosaic normalised to
linear [0, 1] (black level subtracted per CFA position, divided by ``white - black``), the CFA
pattern named by its top-left 2x2 block (``"RGGB"``, ``"GRBG"``, ...), the levels, and the DNG
``NoiseProfile`` (tag 51041, read with tifffile because rawpy does not expose it).

Bayer planes are kept in *position* order (top-left, top-right, bottom-left, bottom-right), so the
mosaic helpers need no pattern: ``pattern[k]`` names the colour of plane ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.noise import NoiseLevel

RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".kdc", ".raw")
NOISE_PROFILE_TAG = 51041
_COLOUR_INDEX = {"R": 0, "G": 1, "B": 2}  # DNG CFAPattern codes


@dataclass
class RawFrame:
    """One raw frame. mosaic: (H, W) float32 linear, 0 = black level, 1 = white level (H, W even).

    pattern: e.g. ``"GRBG"`` (top-left, top-right, bottom-left, bottom-right);
    black_levels: per CFA position, same order; white_level: sensor units;
    noise: from the NoiseProfile tag, in the mosaic's [0, 1] units, or None.
    """

    mosaic: np.ndarray
    pattern: str
    black_levels: tuple[float, float, float, float]
    white_level: float
    path: Path
    noise: NoiseLevel | None = None
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # R, G, B multipliers (G = 1)
    extra: dict = field(default_factory=dict)  # colour matrix etc., passed on to the output DNG


def pattern_name(raw_pattern: np.ndarray, color_desc: bytes | str) -> str:
    """Name a Bayer pattern by its top-left 2x2 block: rawpy's indices into ``color_desc``.

    >>> pattern_name(np.array([[0, 1], [3, 2]]), b"RGBG")
    'RGGB'
    >>> pattern_name(np.array([[1, 0], [2, 3]]), b"RGBG")
    'GRBG'
    """
    desc = color_desc.decode() if isinstance(color_desc, bytes) else color_desc
    block = np.asarray(raw_pattern)[:2, :2]
    if block.shape != (2, 2):
        raise BurstKPNError(f"CFA pattern must be at least 2x2, got shape {np.asarray(raw_pattern).shape}")
    name = "".join(desc[int(i)] for i in block.ravel())
    if sorted(name) != ["B", "G", "G", "R"]:
        raise BurstKPNError(f"unsupported CFA pattern {name!r} (only Bayer RGGB/GRBG/GBRG/BGGR)")
    return name


def bayer_planes(mosaic: np.ndarray) -> np.ndarray:
    """(..., H, W) mosaic -> (..., 4, H/2, W/2) planes in position order (TL, TR, BL, BR)."""
    return np.stack([mosaic[..., i::2, j::2] for i in (0, 1) for j in (0, 1)], axis=-3)


def mosaic_from_planes(planes: np.ndarray) -> np.ndarray:
    """Inverse of `bayer_planes`: (..., 4, h, w) -> (..., 2h, 2w)."""
    *lead, four, h, w = planes.shape
    if four != 4:
        raise ValueError(f"expected 4 Bayer planes, got shape {planes.shape}")
    out = np.empty((*lead, 2 * h, 2 * w), dtype=planes.dtype)
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[..., i::2, j::2] = planes[..., k, :, :]
    return out


def bayer_to_gray(mosaic: np.ndarray) -> np.ndarray:
    """The paper's raw input: mean of each 2x2 Bayer block, (..., H, W) -> (..., H/2, W/2)."""
    return bayer_planes(mosaic).mean(axis=-3, dtype=np.float32)


def gray_noise(noise: NoiseLevel) -> NoiseLevel:
    """Noise of a 2x2 block mean of independent pixels: var/4, i.e. sigma_read/2, sigma_shot/4."""
    return NoiseLevel(noise.sigma_read / 2, noise.sigma_shot / 4)


def preview_rgb(mosaic: np.ndarray, pattern: str, white_balance=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Quick half-resolution linear RGB from a mosaic: (H, W) -> (H/2, W/2, 3), white balanced."""
    planes = bayer_planes(mosaic)
    channels = []
    for colour, gain in zip("RGB", white_balance):
        idx = [k for k, c in enumerate(pattern) if c == colour]
        channels.append(planes[idx].mean(axis=0) * gain)
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def _rawpy():
    try:
        import rawpy
    except ImportError:
        raise BurstKPNError("reading camera raw files needs rawpy: pip install 'burstkpn[raw]'") from None
    return rawpy


def read_raw(path: str | Path) -> RawFrame:
    """Open a raw/DNG file with rawpy, copy out what is needed, close it. See `RawFrame`."""
    path = Path(path)
    if not path.is_file():
        raise BurstKPNError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BurstKPNError(f"{path}: empty file")
    rawpy = _rawpy()
    try:
        with rawpy.imread(str(path)) as raw:
            data = np.array(raw.raw_image_visible, dtype=np.float32)
            raw_pattern = np.array(raw.raw_pattern)
            desc = raw.color_desc
            black_per_channel = list(raw.black_level_per_channel)
            white = float(raw.white_level)
            wb = list(raw.camera_whitebalance)
            colour_matrix = np.array(raw.rgb_xyz_matrix[:3], dtype=np.float64)
    except Exception as exc:  # LibRaw raises many types; the user needs the file and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BurstKPNError(f"{path}: cannot read raw file ({reason})") from None
    if raw_pattern is None or raw_pattern.size < 4:
        raise BurstKPNError(f"{path}: not a Bayer raw file (no CFA pattern)")
    try:
        pattern = pattern_name(raw_pattern, desc)
    except BurstKPNError as exc:
        raise BurstKPNError(f"{path}: {exc}") from None
    black = tuple(float(black_per_channel[int(i)]) for i in raw_pattern[:2, :2].ravel())
    if white <= max(black):
        raise BurstKPNError(f"{path}: white level {white:g} is not above the black level {max(black):g}")
    h, w = (data.shape[0] // 2) * 2, (data.shape[1] // 2) * 2
    if h < 2 or w < 2:
        raise BurstKPNError(f"{path}: raw image of {data.shape[1]}x{data.shape[0]} px is too small")
    planes = bayer_planes(data[:h, :w])
    levels = np.array(black, dtype=np.float32)[:, None, None]
    planes = (planes - levels) / (white - levels)
    wb_rgb = _white_balance(wb)
    extra = {"colour_matrix": colour_matrix} if np.abs(colour_matrix).sum() > 0 else {}
    return RawFrame(
        mosaic=mosaic_from_planes(planes.astype(np.float32)), pattern=pattern, black_levels=black,
        white_level=white, path=path, noise=read_noise_profile(path), white_balance=wb_rgb, extra=extra,
    )


def _white_balance(wb: list[float]) -> tuple[float, float, float]:
    """rawpy's (R, G, B, G2) as-shot multipliers -> (R, G, B) with G = 1; neutral if unknown."""
    r, g, b = (float(v) for v in wb[:3])
    if not (g > 0 and r > 0 and b > 0):
        return (1.0, 1.0, 1.0)
    return (r / g, 1.0, b / g)


def read_noise_profile(path: str | Path) -> NoiseLevel | None:
    """The DNG NoiseProfile (tag 51041) as one `NoiseLevel`, or None when absent / not a TIFF.

    DNG stores per-plane pairs (S, O) with variance = S * x + O on normalised raw values, the same
    linear model as `burstkpn.noise`: sigma_shot = S, sigma_read = sqrt(O). Planes are averaged.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(NOISE_PROFILE_TAG)
            values = None if tag is None else np.asarray(tag.value, dtype=np.float64).ravel()
    except Exception:  # not a TIFF-based raw (e.g. CR3) or no tag: no profile
        return None
    if values is None or values.size < 2 or values.size % 2 or not np.isfinite(values).all():
        return None
    pairs = values.reshape(-1, 2)
    shot, offset = pairs[:, 0].mean(), pairs[:, 1].mean()
    if shot < 0 or offset < 0:
        return None
    return NoiseLevel(float(np.sqrt(offset)), float(shot))


def write_dng(path: str | Path, mosaic: np.ndarray, reference: RawFrame, noise: NoiseLevel | None = None) -> None:
    """Write a [0, 1] mosaic (H, W) as a 16-bit Bayer DNG with ``reference``'s pattern and levels.

    The black level is added back per CFA position and the white level reapplied, so the file
    develops like the reference frame in any raw editor; ``noise`` becomes its NoiseProfile tag.
    Written atomically; rawpy / LibRaw read it back.
    """
    import tifffile

    mosaic = np.asarray(mosaic, dtype=np.float64)
    if mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise BurstKPNError(f"DNG mosaic must be (H, W) with even sides, got {mosaic.shape}")
    levels = np.array(reference.black_levels)[:, None, None]
    planes = bayer_planes(mosaic) * (reference.white_level - levels) + levels
    data = np.clip(np.round(mosaic_from_planes(planes)), 0, 65535).astype(np.uint16)
    r, _, b = reference.white_balance
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_COLOUR_INDEX[c] for c in reference.pattern), True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "burstkpn", True),  # UniqueCameraModel
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "2I", 4, _rational(reference.black_levels), True),  # BlackLevel
        (50717, "I", 1, int(round(reference.white_level)), True),  # WhiteLevel
        (50721, "2i", 9, _srational(reference.extra.get("colour_matrix", np.eye(3))), True),  # ColorMatrix1
        (50728, "2I", 3, _rational((1 / r, 1.0, 1 / b)), True),  # AsShotNeutral
    ]
    if noise is not None:
        tags.append((NOISE_PROFILE_TAG, "d", 2, (noise.sigma_shot, noise.sigma_read**2), True))
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric=32803, planarconfig=1, subfiletype=0, extratags=tags)


def _srational(matrix) -> tuple[int, ...]:
    flat = np.asarray(matrix, dtype=np.float64).ravel()[:9]
    return tuple(int(v) for x in flat for v in (round(x * 10000), 10000))


def _rational(values) -> tuple[int, ...]:
    return tuple(int(v) for x in values for v in (round(max(x, 0.0) * 1_000_000), 1_000_000))
