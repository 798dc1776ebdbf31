from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rawpy")

from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import (
    NOISE_PROFILE_TAG,
    SRGB_COLOR_MATRIX,
    bayer_planes,
    bayer_to_gray,
    gray_noise,
    mosaic_from_planes,
    pattern_name,
    read_raw,
    write_dng,
)
from burstkpn.noise import NoiseLevel, add_noise
from rawburst import write_raw_burst

RAW_SINGLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw_single"
HDRPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_bursts" / "hdrplus-window"

# A camera's colour tags, as a camera DNG (not burstkpn's writer) holds them: code -> (type, value)
CAMERA_DNG_TAGS = {
    271: (2, "Canon"),  # Make
    272: (2, "Canon EOS 5D Mark IV"),  # Model
    274: (3, 6),  # Orientation: rotate 90 CW
    50708: (2, "Canon EOS 5D Mark IV"),  # UniqueCameraModel
    50721: (10, (6446, 10000, -366, 10000, -864, 10000, -4436, 10000, 12204, 10000, 2513, 10000,
                 -952, 10000, 2496, 10000, 6348, 10000)),  # ColorMatrix1 (D65)
    50722: (10, (7170, 10000, -1278, 10000, -1041, 10000, -5180, 10000, 12913, 10000, 2476, 10000,
                 -1357, 10000, 2397, 10000, 7050, 10000)),  # ColorMatrix2 (StdA)
    50727: (5, (1, 1, 1, 1, 1, 1)),  # AnalogBalance
    50728: (5, (473, 1024, 1, 1, 601, 1024)),  # AsShotNeutral
    50730: (10, (-1, 4)),  # BaselineExposure
    50778: (3, 21),  # CalibrationIlluminant1: D65
    50779: (3, 17),  # CalibrationIlluminant2: standard light A
    50964: (10, (7, 10, 2, 10, 1, 10, 3, 10, 7, 10, 0, 10, 0, 10, 1, 10, 8, 10)),  # ForwardMatrix1
}
CAMERA_EXIF_TAGS = {  # in IFD0, TIFF/EP style; the output has them in an Exif IFD
    33434: (5, (1, 125)),  # ExposureTime
    33437: (5, (28, 10)),  # FNumber
    34855: (3, 800),  # ISOSpeedRatings
    36867: (2, "2021:06:01 12:34:56"),  # DateTimeOriginal
    37386: (5, (35, 1)),  # FocalLength
}


def write_camera_dng(path: Path, rng, size: int = 32) -> Path:
    """A GRBG colour DNG with `CAMERA_DNG_TAGS`, `CAMERA_EXIF_TAGS` and a NoiseProfile, via tifffile's extratags."""
    import tifffile

    data = (64 + rng.random((size, size)) * 3000).astype(np.uint16)
    tags = [(33421, 3, 2, (2, 2), True), (33422, 1, 4, (1, 0, 2, 1), True), (50706, 1, 4, (1, 4, 0, 0), True),
            (50714, 3, 1, 64, True), (50717, 3, 1, 4095, True), (NOISE_PROFILE_TAG, 12, 2, (1e-4, 4e-6), True)]
    for code, (dtype, value) in {**CAMERA_DNG_TAGS, **CAMERA_EXIF_TAGS}.items():
        count = 0 if dtype == 2 else len(value) // 2 if dtype in (5, 10) else 1
        tags.append((code, dtype, count, value, True))
    tifffile.imwrite(path, data, photometric=32803, extratags=tags)
    return path


def ifd0_tags(path: Path) -> dict:
    """code -> (TIFF type, value) of a file's first IFD, and its Exif IFD as a dict (code 34665)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return {tag.code: (int(tag.dtype), tag.value) for tag in tif.pages[0].tags.values()}


@pytest.mark.parametrize("raw_pattern,desc,name", [
    ([[0, 1], [3, 2]], b"RGBG", "RGGB"), ([[1, 0], [2, 3]], b"RGBG", "GRBG"),
    ([[3, 2], [0, 1]], b"RGBG", "GBRG"), ([[2, 3], [1, 0]], b"RGBG", "BGGR"),
    ([[0, 1], [1, 2]], "RGB", "RGGB"), ([[1, 0, 1], [2, 1, 2], [1, 0, 1]], b"RGBG", "GRBG"),
])
def test_pattern_name_by_top_left_block(raw_pattern, desc, name):
    assert pattern_name(np.array(raw_pattern), desc) == name


def test_pattern_name_rejects_non_bayer():
    with pytest.raises(BurstKPNError, match="unsupported CFA"):
        pattern_name(np.array([[0, 1], [1, 1]]), b"RGBG")


def test_planes_round_trip_and_gray_noise(rng):
    m = rng.random((6, 8)).astype(np.float32)
    planes = bayer_planes(m)
    assert planes.shape == (4, 3, 4) and planes[1, 0, 0] == m[0, 1] and planes[2, 0, 0] == m[1, 0]
    assert np.array_equal(mosaic_from_planes(planes), m)
    assert bayer_to_gray(m)[1, 1] == pytest.approx(m[2:4, 2:4].mean())
    # the 2x2 mean of pure noise has a quarter of its variance: the gray_noise rule, measured
    level = NoiseLevel(0.05, 0.02)
    noisy = add_noise(np.full((400, 400), 0.3, np.float32), level, rng)
    expect = gray_noise(level)
    assert bayer_to_gray(noisy).std() == pytest.approx(np.sqrt(expect.sigma_read**2 + expect.sigma_shot * 0.3), rel=0.03)


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_synthetic_dng_reads_back_pattern_levels_and_profile(tmp_path, pattern):
    black = (60, 62, 64, 66)
    level = NoiseLevel(0.01, 0.004)
    clean, paths = write_raw_burst(tmp_path, frames=2, size=32, pattern=pattern, black=black, white=1023, noise=level)
    frame = read_raw(paths[0])
    assert frame.pattern == pattern and frame.black_levels == black and frame.white_level == 1023
    assert frame.noise.sigma_read == pytest.approx(0.01) and frame.noise.sigma_shot == pytest.approx(0.004)
    assert frame.mosaic.shape == (32, 32)
    # normalised values: quantisation to 1023 - black levels, clipping at 0 in the darks
    assert np.abs(frame.mosaic - clean).mean() < 3 * 0.05
    # write the frame again: the levels and pattern survive, values to the quantisation step
    write_dng(tmp_path / "again.dng", frame.mosaic, frame)
    again = read_raw(tmp_path / "again.dng")
    assert again.pattern == pattern and again.black_levels == black and again.noise is None
    assert np.abs(again.mosaic - frame.mosaic).max() <= 0.5 / (1023 - 66) + 1e-6


def test_corrupt_and_missing_raw_give_one_line_errors(tmp_path):
    _, paths = write_raw_burst(tmp_path, frames=1, size=32)
    bad = tmp_path / "raw_truncated_7.dng"
    bad.write_bytes(paths[0].read_bytes()[:200])
    text = tmp_path / "raw_text_7.dng"
    text.write_text("not a raw file")
    for path, match in ((bad, "cannot read raw"), (text, "cannot read raw"), (tmp_path / "raw_absent_7.dng", "no such file")):
        with pytest.raises(BurstKPNError, match=match) as info:
            read_raw(path)
        assert path.name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not RAW_SINGLE.is_dir(), reason="shared/data/raw_single is absent")
def test_real_kodak_raw_loads_with_right_pattern_and_levels():
    frame = read_raw(RAW_SINGLE / "RAW_KODAK_DC50.KDC")
    assert frame.pattern == "GRBG" and frame.black_levels == (0, 0, 0, 0) and frame.white_level == 16383
    assert frame.mosaic.shape == (512, 768) and 0 <= frame.mosaic.min() and frame.mosaic.max() <= 1
    assert frame.noise is None  # not a DNG: no NoiseProfile


def test_camera_dng_tags_survive_read_raw_then_write_dng(tmp_path, rng):
    source = write_camera_dng(tmp_path / "camera.dng", rng)
    frame = read_raw(source)
    assert frame.extra["tags"]["ColorMatrix1"] == ("SRATIONAL", CAMERA_DNG_TAGS[50721][1])
    assert frame.extra["exif"]["ISOSpeedRatings"] == ("SHORT", (800,)) and frame.noise is not None
    write_dng(tmp_path / "out.dng", frame.mosaic, frame)  # a denoised output: no noise passed
    before, after = ifd0_tags(source), ifd0_tags(tmp_path / "out.dng")
    for code, (dtype, value) in CAMERA_DNG_TAGS.items():  # tag by tag: same type, same stored value
        assert after[code][0] == dtype and after[code][1] == before[code][1] == value, code
    exif_type, exif = after[34665]
    assert exif_type == 4
    assert exif["ExposureTime"] == (1, 125) and exif["FNumber"] == (28, 10) and exif["FocalLength"] == (35, 1)
    assert exif["ISOSpeedRatings"] == 800 and exif["DateTimeOriginal"] == "2021:06:01 12:34:56"
    assert NOISE_PROFILE_TAG in before and NOISE_PROFILE_TAG not in after  # the denoised file claims no noise
    again = read_raw(tmp_path / "out.dng")
    assert again.extra == frame.extra and again.pattern == "GRBG" and again.black_levels == (64.0,) * 4
    assert np.abs(again.mosaic - frame.mosaic).max() <= 0.5 / (4095 - 64) + 1e-6


def test_libraw_develops_the_output_with_the_input_colours(tmp_path, rng):
    import rawpy

    source = write_camera_dng(tmp_path / "camera.dng", rng)
    write_dng(tmp_path / "out.dng", read_raw(source).mosaic, read_raw(source))
    with rawpy.imread(str(source)) as a, rawpy.imread(str(tmp_path / "out.dng")) as b:
        assert np.array_equal(a.rgb_xyz_matrix, b.rgb_xyz_matrix)
        assert not np.allclose(b.rgb_xyz_matrix[:3], np.eye(3))
        assert np.allclose(a.color_matrix, b.color_matrix) and a.camera_whitebalance == b.camera_whitebalance
        rgb_cam = np.array(b.color_matrix)[:, :3]
        assert b.other.iso_speed == 800 and b.other.timestamp.year == 2021  # read from the Exif IFD
        assert b.other.shutter_speed == pytest.approx(1 / 125) and b.other.aperture == pytest.approx(2.8)
    # LibRaw's normalisation of ColorMatrix1: rgb_cam = inverse(row-normalised ColorMatrix1 @ sRGB->XYZ)
    xyz_rgb = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
    cam_rgb = np.array(CAMERA_DNG_TAGS[50721][1][::2]).reshape(3, 3) / 10000 @ xyz_rgb
    expect = np.linalg.inv(cam_rgb / cam_rgb.sum(axis=1, keepdims=True))
    assert np.allclose(rgb_cam, expect, atol=1e-5) and not np.allclose(rgb_cam, np.eye(3), atol=0.05)


def test_noise_profile_only_when_passed_and_synthetic_defaults(tmp_path):
    _, paths = write_raw_burst(tmp_path, frames=1, size=32, profile=False)
    frame = read_raw(paths[0])
    tags = ifd0_tags(paths[0])
    assert NOISE_PROFILE_TAG not in tags and 34665 not in tags  # no noise passed, no EXIF to write
    # no camera matrix known: raw colours are linear sRGB under D65, the camera is burstkpn
    assert frame.extra["tags"]["ColorMatrix1"][1][::2] == tuple(round(v * 10000) for row in SRGB_COLOR_MATRIX for v in row)
    assert tags[50778] == (3, 21) and tags[50708] == (2, "burstkpn")
    write_dng(tmp_path / "noisy.dng", frame.mosaic, frame, NoiseLevel(0.01, 0.004))
    assert ifd0_tags(tmp_path / "noisy.dng")[NOISE_PROFILE_TAG][1] == pytest.approx((0.004, 1e-4))
    assert read_raw(tmp_path / "noisy.dng").noise.sigma_read == pytest.approx(0.01)


@pytest.mark.skipif(not HDRPLUS.is_dir(), reason="shared/data/real_bursts/hdrplus-window is absent")
def test_real_dng_burst_frame_keeps_its_colour_tags(tmp_path):
    source = min(HDRPLUS.glob("*.dng"))
    frame = read_raw(source)
    write_dng(tmp_path / "out.dng", frame.mosaic, frame)
    before, after = ifd0_tags(source), ifd0_tags(tmp_path / "out.dng")
    for code in (50721, 50728, 50708):  # ColorMatrix1, AsShotNeutral, UniqueCameraModel
        assert code in before and after[code] == before[code], code


@pytest.mark.skipif(not RAW_SINGLE.is_dir(), reason="shared/data/raw_single is absent")
def test_real_kodak_raw_camera_and_exif_reach_the_dng(tmp_path):
    frame = read_raw(RAW_SINGLE / "RAW_KODAK_DC50.KDC")  # TIFF-based, not a DNG
    assert frame.extra["tags"]["Make"] == ("ASCII", "Eastman Kodak Company")
    assert frame.extra["exif"]["ExposureTime"] == ("RATIONAL", (435, 100000))
    write_dng(tmp_path / "out.dng", frame.mosaic, frame)
    tags = ifd0_tags(tmp_path / "out.dng")
    assert tags[272] == (2, "Kodak Digital Science DC50 Zoom Camera") and tags[34665][1]["FNumber"] == (62, 10)
