import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from burstkpn.camera import gamma_expand
from burstkpn.errors import BurstKPNError
from burstkpn.io.bursts import load_burst


def write_frames(folder, n=3, shape=(12, 16, 3), dtype=np.uint8, suffix=".png", seed=0):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    frames = [rng.integers(0, top, shape, dtype=dtype) for _ in range(n)]
    for i, f in enumerate(frames):
        (tifffile.imwrite if suffix == ".tif" else iio.imwrite)(folder / f"f{i}{suffix}", f)
    return frames


def test_folder_of_8bit_colour_is_linearised_and_reference_first(tmp_path):
    frames = write_frames(tmp_path, 4)
    (tmp_path / "notes.txt").write_text("stray file, ignored")
    burst = load_burst([tmp_path], reference=2)
    assert burst.kind == "8bit" and burst.frames.shape == (4, 12, 16, 3) and burst.is_colour
    assert [p.name for p in burst.paths] == ["f2.png", "f0.png", "f1.png", "f3.png"]
    np.testing.assert_allclose(burst.frames[0], gamma_expand(frames[2] / 255.0), rtol=1e-5)


def test_16bit_tiff_is_linear_unless_told(tmp_path):
    frames = write_frames(tmp_path, 2, shape=(8, 8), dtype=np.uint16, suffix=".tif")
    linear = load_burst(sorted(tmp_path.iterdir()))
    assert linear.kind == "16bit" and linear.frames.shape == (2, 8, 8)
    np.testing.assert_allclose(linear.frames[1], frames[1] / 65535.0, rtol=1e-5)
    encoded = load_burst([tmp_path], linear16=False)
    np.testing.assert_allclose(encoded.frames[1], gamma_expand(frames[1] / 65535.0), rtol=1e-4)


def test_a_single_frame_is_a_burst(tmp_path):
    frames = write_frames(tmp_path, 1)
    burst = load_burst([tmp_path])
    assert burst.frames.shape[0] == 1 and burst.frames.shape[1:3] == frames[0].shape[:2]


# the file each error must name: unique names, so no other path in the message can match by accident
OFFENDING = {"sizes": "frame_badsize_9.png", "depths": "frame_baddepth_9.tif", "unreadable": "frame_garbage_9.png",
             "nan": "frame_nan_9.tif", "colour": "frame_gray_9.png", "mixed": "frame_raw_9.dng"}


@pytest.mark.parametrize("case,match", [
    ("sizes", "frames of one burst must match"), ("depths", "mixed bit depths"),
    ("unreadable", "cannot read image"), ("nan", "NaN"),
    ("colour", "frames of one burst must match"), ("reference", "out of range"), ("empty", "no images"),
    ("mixed", "mixed formats"),
])
def test_bad_bursts_give_one_line_errors(tmp_path, case, match):
    reference = 0
    bad = tmp_path / OFFENDING.get(case, "unused")
    if case == "sizes":
        write_frames(tmp_path, 2)
        iio.imwrite(bad, np.zeros((12, 17, 3), np.uint8))
    elif case == "depths":
        write_frames(tmp_path, 2)
        tifffile.imwrite(bad, np.zeros((12, 16, 3), np.uint16))
    elif case == "unreadable":
        write_frames(tmp_path, 2)
        bad.write_bytes(b"\x89PNG garbage")
    elif case == "nan":
        tifffile.imwrite(tmp_path / "frame_0.tif", np.full((4, 4), 0.5, np.float32))
        tifffile.imwrite(bad, np.full((4, 4), np.nan, np.float32))
    elif case == "colour":
        write_frames(tmp_path, 2)
        iio.imwrite(bad, np.zeros((12, 16), np.uint8))
    elif case == "reference":
        write_frames(tmp_path, 2)
        reference = 5
    elif case == "mixed":
        write_frames(tmp_path, 2)
        bad.write_bytes(b"II*\x00")
    with pytest.raises(BurstKPNError, match=match) as info:
        load_burst([tmp_path], reference=reference)
    assert "\n" not in str(info.value)
    if case in OFFENDING:
        assert OFFENDING[case] in str(info.value)


def test_portrait_phone_burst_is_upright_and_keeps_the_reference_metadata(tmp_path):
    """Frames stored sideways with EXIF Orientation 6 (how phones save portrait photos) load portrait, can
    mix with a frame stored upright, and the burst carries the reference's EXIF and ICC profile."""
    from PIL import Image, ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    stored = np.zeros((12, 16, 3), np.uint8)
    stored[:3] = 200  # the top of the stored frame: the right edge of the portrait picture
    exif = Image.Exif()
    exif[274] = 6
    exif[271] = "PhoneMake"
    for i in range(3):
        Image.fromarray(stored).save(tmp_path / f"f{i}.jpg", exif=exif, icc_profile=icc, quality=95)
    Image.fromarray(np.rot90(stored, -1).copy()).save(tmp_path / "f3.jpg", quality=95)  # already upright, no EXIF
    burst = load_burst([tmp_path], reference=1)
    assert burst.frames.shape == (4, 16, 12, 3)
    assert burst.frames[:, :, -3:].mean() > 0.4 and burst.frames[:, :, :6].mean() < 0.05
    assert burst.icc_profile == icc
    kept = Image.Exif()
    kept.load(burst.exif)
    assert kept[274] == 1 and kept[271] == "PhoneMake"
    assert load_burst([tmp_path], reference=3).exif is None  # the reference's own metadata, not another frame's
