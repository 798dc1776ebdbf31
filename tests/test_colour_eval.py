"""Evaluation on colour test sets (`burstkpn.colour_eval`, ``burstkpn evaluate`` on ``synth --colour`` sets;
issue 22, part 5): tiny sets (3 photos, 4 frames, 32-48 px) and tiny untrained models."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from burstkpn import baselines, camera
from burstkpn.align import estimate_global_shifts, warp_frames
from burstkpn.baselines.hdrplus import merge
from burstkpn.cli import main
from burstkpn.colour_eval import (
    COLOUR_BASELINES,
    RAW_CAPTION,
    SRGB_CAPTION,
    burst_planes,
    evaluate_colour,
    from_planes,
    hdrplus_planes,
    raw_scores,
    resolve_colour_methods,
)
from burstkpn.errors import BurstKPNError
from burstkpn.evaluate import evaluate
from burstkpn.models.planar import PlanarConfig, bayer_to_planes, build_planar, planes_psnr
from burstkpn.noise import NoiseLevel
from burstkpn.testset import build_testset, save_testset
from burstkpn.weights import save_weights

# prealign global: an untrained (mean-initialised) joint model is the per-plane aligned mean
TINY = {"frames": 4, "kernel_size": 3, "widths": (4, 8), "convs_per_level": 1, "half_res_output": False,
        "prealign": "global"}
SIZES = {"bayer": 48, "rgb": 32}  # Bayer planes are half size: 24 px, 16 after the 4-px border (SSIM's 11-px window)


@pytest.fixture(scope="module")
def colour_sets(photo_dir, tmp_path_factory):
    """{"bayer": (TestSet, path), "rgb": ...}: 3 scenes x gains 1, 4; the Bayer set GRBG (flipped to RGGB planes)."""
    folder = tmp_path_factory.mktemp("colour_sets")
    sets = {}
    for colour, size in SIZES.items():
        ts = build_testset(photo_dir, gains=(1, 4), size=size, frames=4, colour=colour, pattern="GRBG", progress=False)
        path = folder / f"{colour}.npz"
        save_testset(ts, path)
        sets[colour] = (ts, path)
    return sets


@pytest.fixture(scope="module")
def planar_weights(tmp_path_factory):
    """{4: path, 3: path}: untrained joint models (init mean, global pre-alignment)."""
    folder = tmp_path_factory.mktemp("planar")
    paths = {}
    for planes in (4, 3):
        paths[planes] = folder / f"joint{planes}.safetensors"
        save_weights(build_planar(PlanarConfig(planes=planes, **TINY)), paths[planes])
    return paths


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def shared_aligned_mean(planes: np.ndarray, greens) -> np.ndarray:
    """(C, N, h, w) -> (C, h, w): one global alignment measured on the green planes' mean, each plane's mean."""
    x = torch.from_numpy(planes)
    shifts = estimate_global_shifts(x[list(greens)].mean(0)[None])
    aligned = torch.stack([warp_frames(x[c][None], shifts)[0] for c in range(len(x))])
    aligned[:, 0] = x[:, 0]
    return aligned.mean(1).numpy()


@pytest.mark.parametrize("colour", ["bayer", "rgb"])
def test_untrained_joint_model_is_the_per_plane_aligned_mean_through_evaluate(colour, colour_sets, planar_weights):
    ts, _ = colour_sets[colour]
    planes = 4 if colour == "bayer" else 3
    methods = resolve_colour_methods("aligned-average", colour, [planar_weights[planes]])
    assert [m.name for m in methods] == ["aligned-average", "kpn joint"]
    ev = evaluate_colour(ts, methods, gains=[4], progress=False)
    rows = {(r["method"], r["scene"]): r for r in ev.per_burst}
    assert len(rows) == 2 * 3
    for scene in range(3):
        mean, joint = rows[("aligned-average", scene)], rows[("kpn joint", scene)]
        for key in ("psnr_raw", "ssim_raw", "psnr_srgb", "ssim_srgb"):
            assert joint[key] == pytest.approx(mean[key], abs=2e-3), key
    # the estimates themselves, and both equal to the aligned mean computed here
    noisy, _ = burst_planes(ts, int(np.flatnonzero((ts.scene == ev.crop_scene) & (ts.gain == 4))[0]))
    want = from_planes(ts, shared_aligned_mean(noisy, (1, 2) if planes == 4 else (1,)))
    for name in ("aligned-average", "kpn joint"):
        np.testing.assert_allclose(ev.crops[(name, 4)], want, rtol=0, atol=2e-5)
    assert ev.crops[("kpn joint", 4)].shape == ts.clean.shape[1:]
    # the planes differ (a mix-up of planes would show) and denoising helped
    assert np.abs(want[..., 0::2, 0::2] - want[..., 0::2, 1::2]).max() > 0.01 if colour == "bayer" else \
        np.abs(want[..., 0] - want[..., 1]).max() > 0.01
    ref = evaluate_colour(ts, resolve_colour_methods("reference", colour), gains=[4], progress=False).results[0]
    assert ev.results[0].psnr > ref.psnr + 2 and ev.results[0].psnr_srgb > ref.psnr_srgb + 2


def test_srgb_scores_use_each_bursts_own_camera(colour_sets):
    ts, _ = colour_sets["bayer"]
    methods = resolve_colour_methods("reference", "bayer")
    before = {(r["scene"], r["gain"]): r for r in evaluate_colour(ts, methods, progress=False).per_burst}
    row = int(np.flatnonzero((ts.scene == 1) & (ts.gain == 1))[0])
    # the sRGB score is the burst's own processing of truth and output
    params, white = ts.camera_params(row), float(ts.white_level[row])
    develop = [camera.process(x / np.float32(white), params)[8:-8, 8:-8].astype(np.float64)
               for x in (ts.clean[row], ts.noisy[row, 0])]
    want = 10 * np.log10(1 / np.mean((develop[0] - develop[1]) ** 2))
    assert before[(1, 1)]["psnr_srgb"] == pytest.approx(want, abs=1e-4)
    # another camera for that one burst: its sRGB scores change, its raw ones and every other burst's do not
    changed = replace(ts, rgb_gain=ts.rgb_gain.copy(), red_gain=ts.red_gain.copy())
    changed.rgb_gain[row] *= 1.6
    changed.red_gain[row] *= 0.7
    after = {(r["scene"], r["gain"]): r for r in evaluate_colour(changed, methods, progress=False).per_burst}
    for key, r in before.items():
        assert after[key]["psnr_raw"] == r["psnr_raw"] and after[key]["ssim_raw"] == r["ssim_raw"]
        if key == (1, 1):
            assert abs(after[key]["psnr_srgb"] - r["psnr_srgb"]) > 0.1 and after[key]["ssim_srgb"] != r["ssim_srgb"]
        else:
            assert after[key]["psnr_srgb"] == r["psnr_srgb"] and after[key]["ssim_srgb"] == r["ssim_srgb"]


@pytest.mark.parametrize("colour", ["bayer", "rgb"])
def test_raw_scores_are_linear_planes_and_the_curve_option_is_the_planar_protocol(colour, colour_sets):
    ts, _ = colour_sets[colour]
    ev = evaluate_colour(ts, resolve_colour_methods("reference", colour), gains=[1], progress=False)
    curve = evaluate_colour(ts, resolve_colour_methods("reference", colour), gains=[1], progress=False, raw_curve=True)
    for r, rc in zip(ev.per_burst, curve.per_burst):
        i = int(np.flatnonzero((ts.scene == r["scene"]) & (ts.gain == 1))[0])
        noisy, clean = burst_planes(ts, i)
        white = float(ts.white_level[i])
        b = 4 if colour == "bayer" else 8
        a, e = (np.clip(x[:, b:-b, b:-b].astype(np.float64) / white, 0, 1) for x in (clean, noisy[:, 0]))
        assert r["psnr_raw"] == pytest.approx(10 * np.log10(1 / np.mean((a - e) ** 2)), abs=1e-6)
        assert rc["psnr_raw"] == pytest.approx(planes_psnr(noisy[:, 0], clean, white), abs=1e-6)
        assert r["psnr_srgb"] == rc["psnr_srgb"]
    if colour == "bayer":  # GRBG mosaics are flipped left-right to RGGB: plane 0 is red (the mosaic's top right pixels)
        np.testing.assert_array_equal(burst_planes(ts, 0)[1][0], ts.clean[0][0::2, 1::2][:, ::-1])
        np.testing.assert_array_equal(from_planes(ts, burst_planes(ts, 0)[1]), ts.clean[0])


def test_raw_scores_pool_the_planes():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 0.5, (4, 24, 24))
    est = clean + rng.normal(0, 0.01, clean.shape) * np.array([1, 2, 3, 4])[:, None, None]
    p, s = raw_scores(est, clean, 0.5)
    mse = np.mean([np.mean((np.clip(e / 0.5, 0, 1) - c / 0.5)[4:-4, 4:-4] ** 2) for e, c in zip(est, clean)])
    assert p == pytest.approx(10 * np.log10(1 / mse), abs=1e-9) and 0 < s < 1


def test_hdrplus_planes_share_one_alignment_and_one_plane_is_hdrplus(colour_sets):
    ts, _ = colour_sets["bayer"]
    noisy, _ = burst_planes(ts, int(ts.rows(4)[0]))
    noise = NoiseLevel(float(ts.sigma_read[ts.rows(4)[0]]), float(ts.sigma_shot[ts.rows(4)[0]]))
    one, factor = hdrplus_planes(noisy[1:2], noise)
    want, want_factor = merge(noisy[1], noise)
    np.testing.assert_array_equal(one[0], want)
    assert factor[0] == want_factor
    four, factors = hdrplus_planes(noisy, noise)
    assert four.shape == noisy[:, 0].shape and factors.shape == (4,) and np.all((0 < factors) & (factors <= 1))


@pytest.mark.parametrize("colour", ["bayer", "rgb"])
def test_cbm3d_on_the_merge_runs_and_beats_the_reference(colour, colour_sets):
    pytest.importorskip("bm3d")
    if colour == "bayer":
        pytest.importorskip("colour_demosaicing")
    ts, _ = colour_sets[colour]
    methods = resolve_colour_methods("reference,cbm3d-merged", colour, max_bursts=["cbm3d-merged=1"])
    ev = evaluate_colour(ts, methods, gains=[4], progress=False)
    by = {r.method: r for r in ev.results}
    assert by["cbm3d-merged"].n_bursts == 1 and by["cbm3d-merged"].note == "subset: 1 of 3 scenes"
    ref = next(r for r in ev.per_burst if r["method"] == "reference" and r["scene"] == ev.crop_scene)
    got = next(r for r in ev.per_burst if r["method"] == "cbm3d-merged")
    assert got["psnr_raw"] > ref["psnr_raw"] + 3 and got["psnr_srgb"] > ref["psnr_srgb"] + 3


def test_methods_for_colour_sets(colour_sets, planar_weights, tiny_weights, monkeypatch):
    names = [m.name for m in resolve_colour_methods("all", "bayer")]
    assert names[: len(COLOUR_BASELINES)] == list(COLOUR_BASELINES)
    # a joint model for the other plane count is a row that does not run; a gray model runs per plane
    methods = resolve_colour_methods("reference", "bayer", [planar_weights[3], tiny_weights], tile_aligned=True,
                                     ensemble=True)
    by = {m.name: m for m in methods}
    assert list(by) == ["reference", "kpn joint", "kpn per-plane", "kpn per-plane x8", "kpn per-plane tile-aligned"]
    assert by["kpn joint"].denoise is None and "takes 3 planes" in by["kpn joint"].unavailable
    joint = {m.name: m for m in resolve_colour_methods("reference", "rgb", [planar_weights[3]], ensemble=True)}
    assert joint["kpn joint"].denoise and joint["kpn joint x8"].denoise is None
    # any other grayscale baseline runs per plane
    monkeypatch.setitem(baselines.REGISTRY, "mean-again", baselines.Entry("average:average"))
    ts, _ = colour_sets["rgb"]
    ev = evaluate_colour(ts, resolve_colour_methods("average,mean-again", "rgb"), gains=[1], progress=False)
    assert ev.results[0].psnr == ev.results[1].psnr and ev.results[0].psnr_srgb == ev.results[1].psnr_srgb
    with pytest.raises(BurstKPNError, match="unknown method"):
        resolve_colour_methods("no-such", "rgb")
    with pytest.raises(BurstKPNError, match="colour"):  # the grayscale protocol refuses a colour set
        evaluate(ts, resolve_colour_methods("average", "rgb"), progress=False)
    from burstkpn.weights import shipped_weights

    if any(p.stem == "kpn" for p in shipped_weights()):  # a shipped model by name, as the grayscale protocol takes it
        assert [m.name for m in resolve_colour_methods("reference", "bayer", ["kpn"])] == ["reference", "kpn per-plane"]


def test_cli_detects_a_colour_set(colour_sets, planar_weights, tmp_path, capsys):
    _, path = colour_sets["bayer"]
    out = tmp_path / "eval"
    assert main(["evaluate", "--testset", str(path), "--methods", "reference,aligned-average",
                 "--model", str(planar_weights[4]), "--gains", "4", "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["method", "gain", "psnr_raw", "ssim_raw", "psnr_srgb", "ssim_srgb",
                             "seconds_per_burst", "n_bursts", "note"]
    assert [(r["method"], r["gain"]) for r in rows] == [("reference", "4"), ("aligned-average", "4"), ("kpn joint", "4")]
    assert float(rows[2]["psnr_srgb"]) == pytest.approx(float(rows[1]["psnr_srgb"]), abs=2e-3)
    table = (out / "results.md").read_text()
    assert table.count("| method | gain 4 | s / burst |") == 2 and RAW_CAPTION in table and SRGB_CAPTION in table
    assert "GRBG Bayer mosaics" in table and "48x48" in table
    assert len(read_csv(out / "per_burst.csv")) == 3 * 3
    assert (out / "crops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kpn joint" in capsys.readouterr().out


def test_bayer_planes_of_the_set_match_the_models_layout(colour_sets):
    ts, _ = colour_sets["bayer"]
    noisy, _ = burst_planes(ts, 0)
    np.testing.assert_array_equal(noisy, bayer_to_planes(ts.noisy[0], "GRBG").transpose(1, 0, 2, 3))
