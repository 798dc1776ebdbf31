from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rawpy")

from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import (
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
    bad = tmp_path / "bad.dng"
    bad.write_bytes(paths[0].read_bytes()[:200])
    text = tmp_path / "text.dng"
    text.write_text("not a raw file")
    for path, match in ((bad, "cannot read raw"), (text, "cannot read raw"), (tmp_path / "no.dng", "no such file")):
        with pytest.raises(BurstKPNError, match=match) as info:
            read_raw(path)
        assert path.name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not RAW_SINGLE.is_dir(), reason="shared/data/raw_single is absent")
def test_real_kodak_raw_loads_with_right_pattern_and_levels():
    frame = read_raw(RAW_SINGLE / "RAW_KODAK_DC50.KDC")
    assert frame.pattern == "GRBG" and frame.black_levels == (0, 0, 0, 0) and frame.white_level == 16383
    assert frame.mosaic.shape == (512, 768) and 0 <= frame.mosaic.min() and frame.mosaic.max() <= 1
    assert frame.noise is None  # not a DNG: no NoiseProfile
