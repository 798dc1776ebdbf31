"""Camera raw in (rawpy / LibRaw, an optional extra), denoised DNG out (tifffile).

A raw frame is copied out of rawpy into a `RawFrame`: the visible Bayer mosaic normalised to
linear [0, 1] (black level subtracted per CFA position, divided by ``white - black``), the CFA
pattern named by its top-left 2x2 block (``"RGGB"``, ``"GRBG"``, ...), the levels, and the DNG
``NoiseProfile`` (tag 51041, read with tifffile because rawpy does not expose it), and the colour,
calibration, camera and exposure tags (`CAMERA_TAGS`, `EXIF_TAGS`, also read with tifffile) that
`write_dng` copies unchanged into the output DNG, so raw editors develop it like the input.

Bayer planes are kept in *position* order (top-left, top-right, bottom-left, bottom-right), so the
mosaic helpers need no pattern: ``pattern[k]`` names the colour of plane ``k``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.noise import NoiseLevel

RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".kdc", ".raw")
NOISE_PROFILE_TAG = 51041
_COLOUR_INDEX = {"R": 0, "G": 1, "B": 2}  # DNG CFAPattern codes

# TIFF type codes, and the names RawFrame.extra stores them by
TIFF_TYPES = {1: "BYTE", 2: "ASCII", 3: "SHORT", 4: "LONG", 5: "RATIONAL", 6: "SBYTE", 7: "UNDEFINED",
              8: "SSHORT", 9: "SLONG", 10: "SRATIONAL", 11: "FLOAT", 12: "DOUBLE"}
_TYPE_CODES = {name: code for code, name in TIFF_TYPES.items()}
_STRUCT = {1: "B", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i", 11: "f", 12: "d"}
_RATIONALS = {5, 10}
_INTS = {1, 3, 4, 6, 7, 8, 9}

# IFD0 tags copied from the reference DNG into the output: name -> (code, accepted TIFF types, count or None)
CAMERA_TAGS = {
    "Make": (271, {2}, None),
    "Model": (272, {2}, None),
    "Orientation": (274, {3}, 1),
    "UniqueCameraModel": (50708, {2}, None),
    "ColorMatrix1": (50721, {10}, 9),
    "ColorMatrix2": (50722, {10}, 9),
    "CameraCalibration1": (50723, {10}, 9),
    "CameraCalibration2": (50724, {10}, 9),
    "AnalogBalance": (50727, {5}, 3),
    "AsShotNeutral": (50728, {3, 5}, 3),
    "AsShotWhiteXY": (50729, {5}, 2),
    "BaselineExposure": (50730, {10}, 1),
    "CalibrationIlluminant1": (50778, {3}, 1),
    "CalibrationIlluminant2": (50779, {3}, 1),
    "ForwardMatrix1": (50964, {10}, 9),
    "ForwardMatrix2": (50965, {10}, 9),
}
# EXIF exposure tags: read from the Exif IFD (or IFD0, TIFF/EP style), written to the output's Exif IFD
EXIF_TAGS = {
    "ExposureTime": (33434, {5}, 1),
    "FNumber": (33437, {5}, 1),
    "ISOSpeedRatings": (34855, {3, 4}, None),  # PhotographicSensitivity since Exif 2.3
    "DateTimeOriginal": (36867, {2}, None),
    "FocalLength": (37386, {5}, 1),
}
EXIF_IFD_TAG = 34665
_EXIF_PLACEHOLDER = 34666  # tifffile will not write 34665: write this (same sort position), then rename it
D65 = 21  # CalibrationIlluminant code
# XYZ (D65) -> linear sRGB: the ColorMatrix1 of a "camera" whose raw colours are linear sRGB, as in
# burstkpn.raw_synth's bursts (and what LibRaw assumes for a camera it has no matrix for)
SRGB_COLOR_MATRIX = ((3.2405, -1.5371, -0.4985), (-0.9693, 1.8760, 0.0416), (0.0556, -0.2040, 1.0572))


@dataclass
class RawFrame:
    """One raw frame. mosaic: (H, W) float32 linear, 0 = black level, 1 = white level (H, W even).

    pattern: e.g. ``"GRBG"`` (top-left, top-right, bottom-left, bottom-right);
    black_levels: per CFA position, same order; white_level: sensor units;
    noise: from the NoiseProfile tag, in the mosaic's [0, 1] units, or None.

    extra: the tags `write_dng` copies into the output, as plain values::

        {"tags": {"ColorMatrix1": ("SRATIONAL", (32405, 10000, -15371, 10000, ...)),
                  "AsShotNeutral": ("RATIONAL", (1, 2, 1, 1, 2, 3)), "Make": ("ASCII", "Canon"),
                  "CalibrationIlluminant1": ("SHORT", (21,)), ...},     # `CAMERA_TAGS` names
         "exif": {"ExposureTime": ("RATIONAL", (1, 100)), "ISOSpeedRatings": ("SHORT", (400,)), ...}}

    Each value is (TIFF type name, value as stored): rationals as flat (numerator, denominator, ...)
    integer tuples, so they are written back bit for bit; other numbers as tuples; text as str.
    Only the tags the file has are present (see `read_raw` for non-DNG files).
    """

    mosaic: np.ndarray
    pattern: str
    black_levels: tuple[float, float, float, float]
    white_level: float
    path: Path
    noise: NoiseLevel | None = None
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)  # R, G, B multipliers (G = 1)
    extra: dict = field(default_factory=dict)  # {"tags": ..., "exif": ...}, see above; copied into the output DNG


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
    """Open a raw/DNG file with rawpy, copy out what is needed, close it. See `RawFrame`.

    From a DNG every `CAMERA_TAGS` / `EXIF_TAGS` tag it has is copied exactly (tifffile reads IFD0
    and the Exif IFD). From other raw files only part is known: TIFF-based ones (NEF, CR2, ARW,
    KDC, ...) give Make, Model, Orientation and the EXIF tags the same way; then rawpy fills the rest
    it can: ColorMatrix1 from ``rgb_xyz_matrix`` (LibRaw's D65 matrix, so CalibrationIlluminant1 =
    21; absent when LibRaw has no matrix for the camera), AsShotNeutral from
    ``camera_whitebalance``, and ExposureTime / FNumber / ISO / FocalLength / DateTimeOriginal from
    ``raw.other``. Missing for non-DNG files: ColorMatrix2, CameraCalibration, ForwardMatrix,
    AnalogBalance, BaselineExposure, the second illuminant, UniqueCameraModel, and Make / Model
    for non-TIFF raws (CR3, RAF, ...: rawpy does not expose them).
    """
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
            other = raw.other
    except Exception as exc:  # noqa: BLE001 - LibRaw raises many types; the user needs the file and the reason
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
    extra = read_camera_tags(path)
    _fill_from_rawpy(extra, colour_matrix, wb, other)
    return RawFrame(
        mosaic=mosaic_from_planes(planes.astype(np.float32)), pattern=pattern, black_levels=black,
        white_level=white, path=path, noise=read_noise_profile(path), white_balance=wb_rgb, extra=extra,
    )


def read_camera_tags(path: str | Path) -> dict:
    """The `CAMERA_TAGS` and `EXIF_TAGS` of a TIFF-based raw file as ``{"tags": {...}, "exif": {...}}``.

    Values are copied as stored (see `RawFrame`); a tag of an unexpected type or count is left out.
    Not a TIFF, or unreadable: both dicts empty.
    """
    import tifffile

    found: dict[str, dict] = {"tags": {}, "exif": {}}
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            for name, spec in CAMERA_TAGS.items():
                _keep(found["tags"], name, spec, tags.get(spec[0]))
            for name, spec in EXIF_TAGS.items():  # TIFF/EP style, in IFD0
                _keep(found["exif"], name, spec, tags.get(spec[0]))
            pointer = tags.get(EXIF_IFD_TAG)
            if pointer is not None:
                for tag in _exif_ifd_tags(tif, pointer):
                    for name, spec in EXIF_TAGS.items():
                        if tag.code == spec[0]:
                            _keep(found["exif"], name, spec, tag)
    except Exception:  # noqa: BLE001 - not TIFF-based (CR3, RAF, ...) or damaged: rawpy's values only
        return {"tags": {}, "exif": {}}
    return found


def _exif_ifd_tags(tif, pointer) -> list:
    """The entries of the Exif IFD that IFD0's ``pointer`` tag (34665) points to, with their types."""
    import tifffile

    fmt = tif.tiff
    tif.filehandle.seek(pointer.offset + 4 + fmt.offsetsize)  # the entry's value field: code, type, count first
    (offset,) = struct.unpack(fmt.offsetformat, tif.filehandle.read(fmt.offsetsize))
    tif.filehandle.seek(offset)
    (count,) = struct.unpack(fmt.tagnoformat, tif.filehandle.read(fmt.tagnosize))
    out = []
    for i in range(min(count, 1000)):
        try:
            out.append(tifffile.TiffTag.fromfile(tif, offset=offset + fmt.tagnosize + i * fmt.tagsize))
        except Exception:  # noqa: BLE001, S112 - one bad entry: skip it
            continue
    return out


def _keep(into: dict, name: str, spec, tag) -> None:
    """Store ``tag`` as (type name, plain value) under ``name`` if its type and count fit ``spec``."""
    if tag is None:
        return
    _, types, count = spec
    dtype = int(tag.dtype)
    if dtype not in types:
        return
    value = tag.value
    if dtype == 2:
        text = str(value).split("\0", 1)[0]
        if text.strip():
            into[name] = ("ASCII", text)
        return
    if isinstance(value, bytes):
        value = tuple(value)
    flat = tuple(np.asarray(value).ravel().tolist())
    n = len(flat) // 2 if dtype in _RATIONALS else len(flat)
    if not flat or (count is not None and n != count) or (dtype in _RATIONALS and len(flat) % 2):
        return
    into[name] = (TIFF_TYPES[dtype], tuple(int(v) if dtype in _RATIONALS | _INTS else float(v) for v in flat))


def _fill_from_rawpy(extra: dict, colour_matrix: np.ndarray, wb: list[float], other) -> None:
    """Add what LibRaw knows and the file's tags did not give (non-DNG raws; see `read_raw`)."""
    tags, exif = extra["tags"], extra["exif"]
    if "ColorMatrix1" not in tags and np.isfinite(colour_matrix).all() and np.abs(colour_matrix).sum() > 0:
        tags["ColorMatrix1"] = ("SRATIONAL", _srational(colour_matrix))
        tags.setdefault("CalibrationIlluminant1", ("SHORT", (D65,)))
    r, g, b = (float(v) for v in wb[:3])
    if "AsShotNeutral" not in tags and "AsShotWhiteXY" not in tags and min(r, g, b) > 0:
        tags["AsShotNeutral"] = ("RATIONAL", _rational((g / r, 1.0, g / b)))
    if other is None:
        return
    for name, value in (("ExposureTime", other.shutter_speed), ("FNumber", other.aperture),
                        ("FocalLength", other.focal_length)):
        if name not in exif and np.isfinite(value) and value > 0:
            frac = Fraction(float(value)).limit_denominator(100_000)
            exif[name] = ("RATIONAL", (frac.numerator, frac.denominator))
    if "ISOSpeedRatings" not in exif and np.isfinite(other.iso_speed) and 0 < other.iso_speed < 65536:
        exif["ISOSpeedRatings"] = ("SHORT", (round(other.iso_speed),))
    stamp = other.timestamp
    if "DateTimeOriginal" not in exif and stamp is not None and stamp.year > 1970:
        exif["DateTimeOriginal"] = ("ASCII", stamp.strftime("%Y:%m:%d %H:%M:%S"))


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
    except Exception:  # noqa: BLE001 - not a TIFF-based raw (e.g. CR3) or no tag: no profile
        return None
    if values is None or values.size < 2 or values.size % 2 or not np.isfinite(values).all():
        return None
    pairs = values.reshape(-1, 2)
    shot, offset = pairs[:, 0].mean(), pairs[:, 1].mean()
    if shot < 0 or offset < 0:
        return None
    return NoiseLevel(float(np.sqrt(offset)), float(shot))


def write_dng(path: str | Path, mosaic: np.ndarray, reference: RawFrame, noise: NoiseLevel | None = None) -> None:
    """Write a [0, 1] mosaic (H, W) as a 16-bit Bayer DNG with ``reference``'s pattern, levels and tags.

    The black level is added back per CFA position and the white level reapplied; the colour,
    calibration and camera tags of ``reference.extra`` (ColorMatrix1/2, CalibrationIlluminant1/2,
    AsShotNeutral, Make, Model, UniqueCameraModel, BaselineExposure, ...) are written unchanged, and
    its EXIF exposure tags go into an Exif IFD, so the file develops like the reference frame in
    LibRaw and raw editors. A reference without them (e.g. `burstkpn.raw_synth`) gets ColorMatrix1 =
    `SRGB_COLOR_MATRIX` (raw colours are linear sRGB) under D65, AsShotNeutral from its
    ``white_balance`` and UniqueCameraModel "Make Model" or "burstkpn".

    ``noise`` becomes the NoiseProfile tag. A *denoised* output must not claim the input's noise:
    pass None, or the residual noise if it is known; never ``reference.noise`` for a denoised mosaic.
    Written atomically; rawpy / LibRaw read it back.
    """
    import tifffile

    mosaic = np.asarray(mosaic, dtype=np.float64)
    if mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise BurstKPNError(f"DNG mosaic must be (H, W) with even sides, got {mosaic.shape}")
    levels = np.array(reference.black_levels)[:, None, None]
    planes = bayer_planes(mosaic) * (reference.white_level - levels) + levels
    data = np.clip(np.round(mosaic_from_planes(planes)), 0, 65535).astype(np.uint16)
    copied = dict(reference.extra.get("tags", {}))
    if "ColorMatrix1" not in copied:
        copied["ColorMatrix1"] = ("SRATIONAL", _srational(SRGB_COLOR_MATRIX))
        copied.setdefault("CalibrationIlluminant1", ("SHORT", (D65,)))
    if "AsShotNeutral" not in copied and "AsShotWhiteXY" not in copied:
        r, _, b = reference.white_balance
        copied["AsShotNeutral"] = ("RATIONAL", _rational((1 / r, 1.0, 1 / b)))
    if "UniqueCameraModel" not in copied:
        name = " ".join(copied[k][1] for k in ("Make", "Model") if k in copied) or "burstkpn"
        copied["UniqueCameraModel"] = ("ASCII", name)
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_COLOUR_INDEX[c] for c in reference.pattern), True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "2I", 4, _rational(reference.black_levels), True),  # BlackLevel
        (50717, "I", 1, round(reference.white_level), True),  # WhiteLevel
    ]
    tags += [_extratag(CAMERA_TAGS[name][0], *copied[name]) for name in CAMERA_TAGS if name in copied]
    exif = [(EXIF_TAGS[n][0], *v) for n, v in reference.extra.get("exif", {}).items() if n in EXIF_TAGS]
    if exif:
        tags.append((_EXIF_PLACEHOLDER, "I", 1, 0, True))  # the Exif IFD pointer, set by _append_exif_ifd
    if noise is not None:
        tags.append((NOISE_PROFILE_TAG, "d", 2, (noise.sigma_shot, noise.sigma_read**2), True))
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, data, photometric=32803, planarconfig=1, subfiletype=0, extratags=tags,
                         bigtiff=False, byteorder="<")
        if exif:
            _append_exif_ifd(tmp, exif)


def _extratag(code: int, type_name: str, value) -> tuple:
    """One tifffile ``extratags`` entry from a (type name, plain value) pair of `RawFrame.extra`."""
    dtype = _TYPE_CODES[type_name]
    if dtype == 2:
        return (code, 2, 0, str(value), True)
    count = len(value) // 2 if dtype in _RATIONALS else len(value)
    return (code, dtype, count, tuple(value) if count > 1 or dtype in _RATIONALS else value[0], True)


def _append_exif_ifd(path: Path, entries: list[tuple[int, str, object]]) -> None:
    """Append an Exif IFD holding ``entries`` (code, type name, plain value) to a little-endian classic
    TIFF and make IFD0's placeholder tag the ExifIFD pointer (34665) to it. ExifVersion 0230 is added."""
    import tifffile

    entries = sorted([*entries, (36864, "UNDEFINED", tuple(b"0230"))])
    with tifffile.TiffFile(path) as tif:
        placeholder = tif.pages[0].tags[_EXIF_PLACEHOLDER]
        entry_at = placeholder.offset
    pointer_at = entry_at + 8  # classic TIFF entry: code, type, count, then the inline LONG
    with open(path, "r+b") as fh:
        start = fh.seek(0, 2)
        start += start % 2  # IFDs start on a word boundary
        data_at = start + 2 + 12 * len(entries) + 4
        ifd, blob = [struct.pack("<H", len(entries))], b""
        for code, type_name, value in entries:
            dtype = _TYPE_CODES[type_name]
            if dtype == 2:
                raw = str(value).encode("ascii", "replace") + b"\0"
                count = len(raw)
            else:
                raw = struct.pack(f"<{len(value)}{_STRUCT[dtype]}", *value)
                count = len(value) // 2 if dtype in _RATIONALS else len(value)
            if len(raw) <= 4:
                field_ = raw.ljust(4, b"\0")
            else:
                field_ = struct.pack("<I", data_at + len(blob))
                blob += raw + b"\0" * (len(raw) % 2)
            ifd.append(struct.pack("<HHI", code, dtype, count) + field_)
        ifd.append(struct.pack("<I", 0))  # no next IFD
        fh.seek(start)
        fh.write(b"".join(ifd) + blob)
        fh.seek(entry_at)
        fh.write(struct.pack("<H", EXIF_IFD_TAG))
        fh.seek(pointer_at)
        fh.write(struct.pack("<I", start))


def _srational(matrix) -> tuple[int, ...]:
    flat = np.asarray(matrix, dtype=np.float64).ravel()[:9]
    return tuple(int(v) for x in flat for v in (round(x * 10000), 10000))


def _rational(values) -> tuple[int, ...]:
    return tuple(int(v) for x in values for v in (round(max(x, 0.0) * 1_000_000), 1_000_000))
