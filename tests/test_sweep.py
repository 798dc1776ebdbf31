import numpy as np
import pytest

from burstkpn.evaluate import resolve_methods
from burstkpn.sweep import Cell, grid, linear_psnr, markdown, run_sweep


def test_linear_psnr_by_hand():
    clean = np.full((20, 20), 0.5)
    est = clean + 0.01
    assert linear_psnr(est, clean, border=2) == pytest.approx(40.0)
    assert linear_psnr(est * 2, clean * 2, white_level=2.0, border=0) == pytest.approx(40.0)  # white level divided out


def test_sweep_cells_ask_their_questions(photo_dir):
    cells = grid(["static", "global"], [2], ["1"])
    assert [c.label for c in cells] == ["static s2 g1", "global s2 g1"]
    methods = resolve_methods("reference,average", ())
    sweep = run_sweep(photo_dir, cells, methods, size=32, progress=False)
    rows = sweep["rows"]
    ref, avg = rows["reference"], rows["average"]
    # on a static burst the plain mean of 8 frames gains ~9 dB (sqrt(8) less noise); with the paper's
    # motion it blurs and gains far less
    assert avg["static s2 g1"][1] - ref["static s2 g1"][1] > 6
    assert avg["global s2 g1"][1] - ref["global s2 g1"][1] < avg["static s2 g1"][1] - ref["static s2 g1"][1] - 3
    table = markdown(sweep)
    assert table.count("\n") == 4 and "static s2 g1" in table and "| average |" in table


def test_exposure_label():
    assert Cell("static", 1, "base", (0.2, 0.5)).label == "static s1 gbase wl0.2-0.5"


def test_exposure_is_an_axis_of_the_grid(photo_dir):
    """Several white-level ranges make several cells of the same motion, scale and gain; a dark cell's bursts
    really are dark (the mean of its clean frames scales with the white level) and the mean there gains what
    the noise allows."""
    from burstkpn.errors import BurstKPNError
    from burstkpn.testset import build_testset

    cells = grid(["static"], [2], ["1"], exposures=[(1, 1), (0.1, 0.1)])
    assert [c.label for c in cells] == ["static s2 g1", "static s2 g1 wl0.1-0.1"]
    bright, dark = (build_testset(photo_dir, gains=["1"], size=32, motion="static", downsample=2, progress=False,
                                  white_level=c.white_level) for c in cells)
    np.testing.assert_allclose(dark.clean.mean(), 0.1 * bright.clean.mean(), rtol=1e-4)
    sweep = run_sweep(photo_dir, cells, resolve_methods("reference,average", ()), size=32, progress=False)
    ref, avg = sweep["rows"]["reference"], sweep["rows"]["average"]
    assert ref[cells[1].label][1] < ref[cells[0].label][1] - 3  # same noise, a tenth of the signal
    assert avg[cells[1].label][1] - ref[cells[1].label][1] > 6
    with pytest.raises(BurstKPNError):
        grid(["static"], [2], ["1"], exposures=[(0.5, 0.2)])
    with pytest.raises(BurstKPNError):
        grid(["static"], [2], ["1"], exposures=[(0.1, 0.3), (0.1, 0.3)])


def test_clipped_table_measures_the_clipped_region(photo_dir):
    from burstkpn.sweep import clipped_markdown, run_clipped

    methods = resolve_methods("reference,average,aligned-average", ())
    result = run_clipped(photo_dir, methods, gains=["1"], white_level=(3.0, 3.0), size=32, progress=False)
    assert result["saturated_share"] > 0.01 and result["bursts"] == 3
    ref, avg = result["rows"]["reference"][1], result["rows"]["aligned-average"][1]
    # the clipped reference frame sits at white where the truth does (bar pixels just above white that the noise pulls below)
    assert -0.01 < ref["highlight_bias"] <= 0.0
    # averaging aligned clipped frames keeps blown highlights near white; the unaligned mean blends them with
    # their darker surroundings (the frames move by whole pixels)
    assert -0.1 < avg["highlight_bias"] <= 0.0
    assert result["rows"]["average"][1]["highlight_bias"] < avg["highlight_bias"] - 0.05
    # on the unclipped pixels the clip changes the reference frame only next to the highlights
    assert abs(ref["psnr_clipped"] - ref["psnr_unclipped"]) < 1.0
    assert "g1: PSNR clipped / twin" in clipped_markdown(result)


def test_clipped_table_declip_rows_take_the_black_clip_bias_out(photo_dir):
    """``declip=True`` adds "NAME declip" rows computed from the same outputs: on black-clipped dark bursts at
    gain 4 the declipped aligned average is closer to the truth than the merge, about as close as the merge of
    the unclipped twin (`noise.declip` with the burst's own noise level)."""
    from burstkpn.sweep import run_clipped

    methods = resolve_methods("aligned-average", ())
    result = run_clipped(photo_dir, methods, gains=["4"], clip="black", white_level=(0.05, 0.1), size=32,
                         declip=True, impute=True, progress=False)
    plain, fixed = result["rows"]["aligned-average"][4], result["rows"]["aligned-average declip"][4]
    filled = result["rows"]["aligned-average imputed"][4]  # the merge of frames whose cut values were filled in
    assert filled["psnr_clipped"] > plain["psnr_clipped"] + 0.5
    assert fixed["psnr_unclipped"] == plain["psnr_unclipped"]  # the twin's figure is not declipped (no clip)
    assert fixed["psnr_clipped"] > plain["psnr_clipped"] + 1.0
    assert abs(fixed["psnr_clipped"] - fixed["psnr_unclipped"]) < 1.0
