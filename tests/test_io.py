import functools
import os

import numpy as np
import pytest
import tifffile

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output, list_images, read_image


def test_reads_8_and_16_bit_and_float(tmp_path):
    import imageio.v3 as iio
    iio.imwrite(tmp_path / "a.png", np.full((4, 5, 3), 255, np.uint8))
    iio.imwrite(tmp_path / "b.png", np.full((4, 5), 65535 // 2, np.uint16))
    tifffile.imwrite(tmp_path / "c.tif", np.full((4, 5), 0.25, np.float32))
    a, b, c = (read_image(tmp_path / n) for n in ("a.png", "b.png", "c.tif"))
    assert a.bit_depth == 8 and a.pixels.shape == (4, 5, 3) and a.pixels.max() == 1.0
    assert b.bit_depth == 16 and b.pixels[0, 0] == pytest.approx(0.5, abs=1e-4)
    assert c.bit_depth == 32 and c.pixels[0, 0] == 0.25
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png", "c.tif"]


def test_16_bit_colour_png_keeps_full_precision(tmp_path):
    import png

    a = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000 + 7).astype(np.uint16)
    png.from_array(a.reshape(4, 15), "RGB;16").save(str(tmp_path / "rgb16.png"))
    img = read_image(tmp_path / "rgb16.png")
    assert img.bit_depth == 16 and img.pixels.shape == (4, 5, 3)
    assert np.array_equal(np.round(img.pixels * 65535).astype(np.uint16), a)


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file"), ("empty", "empty file"), ("text", "cannot read image"),
    ("truncated", "cannot read image"), ("nan", "NaN"), ("negative", r"\[0, 1\]"),
])
def test_bad_files_give_one_line_errors_naming_the_file(case, match, tmp_path):
    import imageio.v3 as iio
    path = tmp_path / f"image_{case}_7.png"  # a unique name: only the file itself can match it
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case == "truncated":
        iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        path.write_bytes(path.read_bytes()[:100])
    elif case in ("nan", "negative"):
        path = tmp_path / f"image_{case}_7.tif"
        tifffile.imwrite(path, np.array([[0.5, np.nan if case == "nan" else -0.2]], np.float32))
    with pytest.raises(BurstKPNError, match=match) as info:
        read_image(path)
    assert path.name in str(info.value) and "\n" not in str(info.value)


def test_empty_folder_and_atomic_output(tmp_path):
    with pytest.raises(BurstKPNError, match="no images found"):
        list_images(tmp_path)
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    umask = os.umask(0o022)
    try:
        with atomic_output(target) as tmp:
            tmp.write_text("again")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644


def _exif(orientation: int, **tags):
    from PIL import Image

    exif = Image.Exif()
    exif[274] = orientation
    exif[271] = "TestMake"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal, in the Exif sub-IFD
    return exif


@functools.cache  # built once: lcms stamps each profile with the current second, so two builds can differ
def _icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    """Every EXIF Orientation gives the pixels Pillow's exif_transpose shows (a viewer's), and the kept
    EXIF says Orientation 1 with the other tags (sub-IFD included) intact."""
    from PIL import Image, ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=_exif(orientation))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    img = read_image(path)
    assert img.orientation == orientation
    np.testing.assert_array_equal(np.round(img.pixels * 255).astype(np.uint8), shown)
    exif = Image.Exif()
    exif.load(img.exif)
    assert exif[274] == 1 and exif[271] == "TestMake" and exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"


def test_portrait_jpeg_is_upright_with_its_exif_and_icc_profile(tmp_path):
    from PIL import Image

    stored = np.zeros((30, 40, 3), np.uint8)  # stored landscape with a bright top: Orientation 6 (90° clockwise)
    stored[:4] = 255  # shows it portrait, bright on the right
    Image.fromarray(stored).save(tmp_path / "p.jpg", exif=_exif(6), icc_profile=_icc(), quality=95)
    img = read_image(tmp_path / "p.jpg")
    assert img.pixels.shape == (40, 30, 3) and img.pixels[:, -2:].mean() > 0.9 and img.pixels[:, :20].mean() < 0.1
    assert img.icc_profile == _icc() and img.exif.startswith(b"Exif\x00\x00")
    plain = tmp_path / "plain.png"
    Image.fromarray(stored).save(plain)
    assert read_image(plain).exif is None and read_image(plain).icc_profile is None and read_image(plain).orientation == 1


def test_16_bit_files_are_turned_upright_too(tmp_path):
    import png
    from PIL import Image

    stored = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 1000 + 7).astype(np.uint16)
    writer = png.Writer(6, 4, greyscale=False, bitdepth=16)
    with open(tmp_path / "rgb16.png", "wb") as f:  # an eXIf chunk before IDAT, as phones write it
        chunks = list(png.Reader(bytes=_png_bytes(writer, stored)).chunks())
        exif = _exif(8).tobytes()[6:]
        png.write_chunks(f, [chunks[0], (b"eXIf", exif), *chunks[1:]])
    img = read_image(tmp_path / "rgb16.png")
    assert img.bit_depth == 16 and img.orientation == 8
    np.testing.assert_array_equal(np.round(img.pixels * 65535).astype(np.uint16), np.rot90(stored, 1))
    gray = np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000
    Image.fromarray(gray).save(tmp_path / "g16.png", exif=_exif(3))
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "g16.png").pixels * 65535).astype(np.uint16), gray[::-1, ::-1])
    tifffile.imwrite(tmp_path / "t.tif", stored, photometric="rgb", extratags=[(274, "H", 1, 6, True), (34675, "B", len(_icc()), _icc(), True)])
    tif = read_image(tmp_path / "t.tif")
    assert tif.orientation == 6 and tif.icc_profile == _icc() and tif.pixels.shape == (6, 4, 3)
    np.testing.assert_array_equal(np.round(tif.pixels * 65535).astype(np.uint16), np.rot90(stored, -1))


def _png_bytes(writer, array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    writer.write(buffer, array.reshape(array.shape[0], -1))
    return buffer.getvalue()


def test_write_png_embeds_icc_profile_and_exif(tmp_path):
    from PIL import Image

    from burstkpn.io.images import write_png

    exif = _exif(1).tobytes()
    write_png(tmp_path / "m.png", np.full((6, 8, 3), 128, np.uint8), icc_profile=_icc(), exif=exif)
    with Image.open(tmp_path / "m.png") as im:
        im.load()
        assert im.info["icc_profile"] == _icc() and im.getexif()[271] == "TestMake"
    write_png(tmp_path / "plain.png", np.zeros((6, 8), np.uint16))  # no metadata: as before
    with Image.open(tmp_path / "plain.png") as im:
        assert "icc_profile" not in im.info and len(im.getexif()) == 0
