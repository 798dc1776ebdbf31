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
