"""Reading images with clear errors, and writing any output atomically (temp file + rename).

`read_image` returns pixels the way a viewer shows them: an EXIF Orientation (portrait phone photos are
stored sideways with Orientation 6 or 8) is applied, and the source's EXIF (Orientation then reset to 1)
and ICC profile are kept on the `LoadedImage`, for `write_png` to embed in an 8-bit output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_PIXELS = 200_000_000  # refuse headers claiming more than this per frame


ORIENTATION = 274  # the EXIF/TIFF Orientation tag


@dataclass
class LoadedImage:
    """pixels: (H, W) or (H, W, 3) float32 in [0, 1], in display orientation; bit_depth: 8, 16 or 32 (float).

    orientation: the file's EXIF/TIFF Orientation (1-8), already applied to ``pixels``; exif: the file's
    EXIF block (``b"Exif\\0\\0..."``, Orientation reset to 1 since the pixels are upright) or None;
    icc_profile: the embedded ICC profile's bytes or None.
    """

    pixels: np.ndarray
    bit_depth: int
    path: Path
    orientation: int = 1
    exif: bytes | None = None
    icc_profile: bytes | None = None


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; a clear error if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise BurstKPNError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise BurstKPNError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise BurstKPNError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def read_image(path: str | Path) -> LoadedImage:
    """Decode a PNG/JPEG/TIFF/BMP into float32 [0, 1]; alpha dropped, gray-as-RGB kept as RGB; turned
    upright by its EXIF/TIFF Orientation, with its EXIF and ICC profile kept (see `LoadedImage`).

    Raises `BurstKPNError` naming the file for anything unreadable: missing, empty, truncated,
    not an image, absurd dimensions, unsupported dtype, NaN/Inf or out-of-range float values.
    """
    path = Path(path)
    if not path.exists():
        raise BurstKPNError(f"{path}: no such file")
    if not path.is_file():
        raise BurstKPNError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise BurstKPNError(f"{path}: empty file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            raw = _read_tiff(path)
            orientation, exif, icc = _tiff_metadata(path)
        else:
            raw, (orientation, exif, icc) = _read_pillow(path)
    except BurstKPNError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; the user needs the file and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BurstKPNError(f"{path}: cannot read image ({reason})") from None
    image = _to_float(raw, path)
    image.pixels = np.ascontiguousarray(orient(image.pixels, orientation))
    image.orientation, image.exif, image.icc_profile = orientation, exif, icc
    return image


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (H, W[, C]) -> as displayed under an EXIF Orientation (1-8; others leave them as
    stored), the transforms of Pillow's ``ImageOps.exif_transpose``: 6 turns a sideways portrait
    photo 90° clockwise, 8 counter-clockwise, 3 by 180°; 2, 4, 5, 7 mirror."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _orientation(value) -> int:
    try:
        value = int(value[0] if isinstance(value, (tuple, list)) else value)
    except (TypeError, ValueError, IndexError):
        return 1
    return value if 1 <= value <= 8 else 1


def _pillow_metadata(im) -> tuple[int, bytes | None, bytes | None]:
    """(Orientation, EXIF with Orientation reset to 1, ICC profile) of an opened (and loaded, so that a PNG's
    eXIf chunk after the pixels is seen) Pillow image; a broken EXIF block is ignored (the pixels were
    readable, so the image still is)."""
    icc = im.info.get("icc_profile") or None
    try:
        exif = im.getexif()
        orientation = _orientation(exif.get(ORIENTATION, 1))
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        return orientation, (exif.tobytes() if len(exif) else None), icc
    except Exception:  # noqa: BLE001 - a malformed EXIF block: keep the pixels (as stored) and the profile, drop the EXIF
        return 1, None, icc


def _tiff_metadata(path: Path) -> tuple[int, None, bytes | None]:
    """(Orientation, None, ICC profile) of a TIFF (its EXIF is not carried: TIFF inputs give TIFF outputs)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        orientation = _orientation(tags[ORIENTATION].value) if ORIENTATION in tags else 1
        icc = tags[34675].value if 34675 in tags else None  # InterColorProfile
    return orientation, None, (bytes(icc) if icc else None)


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24], head[25]
    return None


def _read_png16_colour(path: Path) -> np.ndarray:
    """16-bit RGB(A) PNG at full precision (Pillow silently reduces these to 8 bits)."""
    import png  # pypng

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    if width * height > MAX_PIXELS:
        raise BurstKPNError(f"{path}: header claims {width}x{height} px, more than {MAX_PIXELS} allowed")
    planes = info["planes"]
    return np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)


def _read_pillow(path: Path) -> tuple[np.ndarray, tuple[int, bytes | None, bytes | None]]:
    """The stored pixels and `_pillow_metadata` of a PNG/JPEG/BMP."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # header bombs raise DecompressionBombError
    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 6):
        pixels = _read_png16_colour(path)
        try:
            with Image.open(path) as im:  # only for the metadata (Pillow would reduce the pixels to 8 bits)
                im.load()
                return pixels, _pillow_metadata(im)
        except Exception:  # noqa: BLE001 - pypng read the pixels: an image without metadata, not an error
            return pixels, (1, None, None)

    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise BurstKPNError(f"{path}: header claims {im.width}x{im.height} px, more than {MAX_PIXELS} allowed")
        im.load()
        meta = _pillow_metadata(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im)
            return (arr.astype(np.uint16) if arr.max(initial=0) < 65536 else arr), meta
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        return np.asarray(im), meta


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if int(np.prod(page.shape[:2])) > MAX_PIXELS:
            raise BurstKPNError(f"{path}: header claims {page.shape[1]}x{page.shape[0]} px, more than {MAX_PIXELS} allowed")
        return page.asarray()


def _to_float(raw: np.ndarray, path: Path) -> LoadedImage:
    if raw.ndim == 3 and raw.shape[-1] in (2, 4):  # gray+alpha / RGBA: drop alpha
        raw = raw[..., :-1] if raw.shape[-1] == 4 else raw[..., 0]
    if not (raw.ndim == 2 or (raw.ndim == 3 and raw.shape[-1] == 3)):
        raise BurstKPNError(f"{path}: unsupported image shape {raw.shape} (expected gray or RGB)")
    if raw.dtype == np.uint8:
        return LoadedImage(raw.astype(np.float32) / 255.0, 8, path)
    if raw.dtype == np.uint16:
        return LoadedImage(raw.astype(np.float32) / 65535.0, 16, path)
    if raw.dtype in (np.float16, np.float32, np.float64):
        pixels = raw.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise BurstKPNError(f"{path}: image contains NaN or Inf values")
        if pixels.min() < 0 or pixels.max() > 1:
            raise BurstKPNError(
                f"{path}: float image values must lie in [0, 1], found [{pixels.min():.4g}, {pixels.max():.4g}]"
            )
        return LoadedImage(pixels, 32, path)
    raise BurstKPNError(f"{path}: unsupported pixel type {raw.dtype} (use 8/16-bit integers or float in [0, 1])")


def check_output_folder(path: str | Path) -> Path:
    """Raise a one-line error unless ``path`` is a folder or could be created as one; creates nothing.

    Commands call this before any work, so a mistyped output path fails at once, not after it.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise BurstKPNError(f"{p}: exists and is not a folder" if p == path
                                    else f"{path}: cannot create folder ({p} is a file)")
            break
    return path


def check_output_file(path: str | Path) -> Path:
    """Raise a one-line error if ``path`` is a folder or its folder cannot exist; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise BurstKPNError(f"{path}: is a folder, expected a file path")
    check_output_folder(path.parent if str(path.parent) else Path("."))
    return path


def make_folder(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents); a one-line error if that is impossible."""
    path = check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BurstKPNError(f"{path}: cannot create folder ({exc.strerror})") from None
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failed write leaves no file at ``path`` (or the previous complete one).
    """
    path = Path(path)
    if path.is_dir():
        raise BurstKPNError(f"{path}: is a folder, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BurstKPNError(f"{parent}: cannot create folder ({exc.strerror})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=parent)
    except OSError as exc:
        raise BurstKPNError(f"{path}: cannot write here ({exc.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_png(path: str | Path, image: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> None:
    """Write a uint8/uint16 (H, W) or (H, W, 3) array as PNG, atomically; an 8-bit image can carry an
    ICC profile (iCCP chunk) and an EXIF block (eXIf chunk), e.g. the source photo's (`LoadedImage`)."""
    if image.dtype == np.uint8 and (icc_profile or exif):
        from PIL import Image

        options = {k: v for k, v in (("icc_profile", icc_profile), ("exif", exif)) if v}
        with atomic_output(path) as tmp:
            Image.fromarray(image).save(tmp, format="PNG", **options)
        return
    import imageio.v3 as iio

    with atomic_output(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")
