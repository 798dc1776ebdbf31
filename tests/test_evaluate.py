"""``burstkpn evaluate`` end to end on a tiny test set built from scikit-image's bundled photos."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from burstkpn import baselines
from burstkpn.cli import main
from burstkpn.evaluate import evaluate, markdown_table, resolve_methods
from burstkpn.metrics import CAPTION, psnr
from burstkpn.testset import build_testset, load_testset, save_testset


@pytest.fixture(scope="module")
def testset_file(photo_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("ts") / "tiny.npz"
    save_testset(build_testset(photo_dir, gains=(1, 4), size=32, progress=False), path)
    return path  # 3 scenes x 2 gains


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("burstkpn: error: "), err
    return err


def test_csv_has_one_row_per_method_and_gain(testset_file, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--testset", str(testset_file), "--methods", "reference,average,hdrplus",
               "--max-bursts", "hdrplus=2", "--out", str(out), "--quiet"])
    assert rc == 0
    rows = read_csv(out / "results.csv")
    assert [(r["method"], r["gain"]) for r in rows] == [
        (m, g) for m in ("reference", "average", "hdrplus") for g in ("1", "4")
    ]
    assert list(rows[0]) == ["method", "gain", "psnr", "ssim", "seconds_per_burst", "n_bursts", "note"]
    assert [r["n_bursts"] for r in rows] == ["3", "3", "3", "3", "2", "2"]
    assert rows[-1]["note"] == "subset: 2 of 3 scenes"
    # the reference row is exactly the protocol's PSNR of the noisy frames, averaged
    ts = load_testset(testset_file)
    want = np.mean([psnr(ts.noisy[i, 0], ts.clean[i], ts.white_level[i]) for i in ts.rows(1)])
    assert float(rows[0]["psnr"]) == pytest.approx(want, abs=1e-3)
    table = (out / "results.md").read_text()
    assert "| method | gain 1 | gain 4 | s / burst |" in table and CAPTION in table and "hdrplus †" in table
    assert len(read_csv(out / "per_burst.csv")) == 3 * 2 * 2 + 2 * 2
    for png in ("psnr_vs_gain.png", "crops.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_extra_is_a_row_not_a_crash(testset_file, monkeypatch):
    monkeypatch.setitem(baselines.REGISTRY, "needs-extra", baselines.Entry("average:average", ("no_such_package_x",), "no-such"))
    ts = load_testset(testset_file)
    ev = evaluate(ts, resolve_methods("reference,needs-extra"), progress=False)
    missing = [r for r in ev.results if r.method == "needs-extra"]
    assert len(missing) == 2 and all(r.n_bursts == 0 and r.note == "not installed (pip install no-such)" for r in missing)
    assert "| needs-extra | not installed (pip install no-such) |" in markdown_table(ev, "tiny")


def test_unknown_method_is_one_line_error(testset_file, tmp_path, capsys):
    err = one_line_error(capsys, ["evaluate", "--testset", str(testset_file), "--methods", "reference,vbm4d", "--out", str(tmp_path)])
    assert "unknown method 'vbm4d'" in err


def test_corrupt_testset_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "testset_corrupt_7.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    err = one_line_error(capsys, ["evaluate", "--testset", str(bad), "--methods", "reference", "--out", str(tmp_path / "o")])
    assert "testset_corrupt_7.npz" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--gains", "2"], "gain(s) [2] not in the test set"),
    (["--max-bursts", "bm3d=2"], "'bm3d' is not one of the methods"),
    (["--max-bursts", "0"], "K must be at least 1"),
    (["--model", "no-such-weights.safetensors"], "no-such-weights.safetensors"),
])
def test_bad_arguments_are_one_line_errors(testset_file, tmp_path, capsys, argv, message):
    err = one_line_error(capsys, ["evaluate", "--testset", str(testset_file), "--methods", "reference", "--out", str(tmp_path), *argv])
    assert message in err


def test_weights_file_is_a_method_named_from_its_card(testset_file, tmp_path, capsys):
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    weights = tmp_path / "fresh.safetensors"  # an untrained KPN with init "mean" outputs the plain mean
    save_weights(build_model(ModelConfig(widths=(4, 8), convs_per_level=1)), weights)
    out = tmp_path / "eval"
    # a repeated --model adds a method (it does not replace the earlier one)
    assert main(["evaluate", "--testset", str(testset_file), "--methods", "average", "--model", str(weights),
                 "--model", str(weights), "--out", str(out), "--quiet", "--ensemble"]) == 0
    rows = {(r["method"], r["gain"]): float(r["psnr"]) for r in read_csv(out / "results.csv")}
    names = ("average", "kpn", "kpn x8", "kpn (fresh)", "kpn (fresh) x8")
    assert set(rows) == {(m, g) for m in names for g in ("1", "4")}
    for g in ("1", "4"):
        assert rows[("kpn", g)] == pytest.approx(rows[("average", g)], abs=1e-3)
        assert rows[("kpn x8", g)] == pytest.approx(rows[("average", g)], abs=1e-3)  # the mean is flip-invariant


def test_tile_aligned_twin_runs_the_model_on_tile_aligned_frames(tmp_path):
    """An untrained mean-initialised KPN without pre-alignment outputs the mean of what it is given, so
    its tile-aligned twin is the mean of `tile_align`'s frames."""
    from burstkpn.align import tile_align
    from burstkpn.evaluate import resolve_methods
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.noise import NoiseLevel
    from burstkpn.weights import save_weights

    weights = tmp_path / "fresh.safetensors"
    save_weights(build_model(ModelConfig(frames=4, widths=(4, 8), convs_per_level=1, half_res_output=False)), weights)
    methods = resolve_methods("", [str(weights)], tile_aligned=True)
    assert [m.name for m in methods] == ["kpn", "kpn tile-aligned"]
    rng = np.random.default_rng(0)
    scene = rng.random((80, 80)).astype(np.float32)
    burst = np.stack([np.roll(scene, (dy, 2 * dy), (0, 1))[8:72, 8:72] for dy in range(4)])
    out = methods[1].denoise(burst, NoiseLevel(0.01, 0.001))
    expected = tile_align(burst).mean(axis=0)
    np.testing.assert_allclose(out[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1e-5)
    assert np.abs(expected[8:-8, 8:-8] - burst[0][8:-8, 8:-8]).mean() < 0.2 * np.abs(burst.mean(0) - burst[0]).mean()


def test_every_method_gets_its_bursts_own_noise_level(testset_file):
    """`evaluate` hands each method the burst and *that burst's* (sigma_read, sigma_shot), not swapped, not
    another row's: a spy method records what it receives."""
    from burstkpn.evaluate import Method
    from burstkpn.noise import NoiseLevel

    ts = load_testset(testset_file)
    seen = []

    def spy(burst, noise):
        seen.append((burst.copy(), noise))
        return burst[0]

    ev = evaluate(ts, [Method("spy", spy)], progress=False)
    order = [r["scene"] for r in ev.per_burst]
    assert len(seen) == len(ts) == 6 and len(set(order)) == 3
    assert ts.sigma_read[ts.rows(1)[0]] != ts.sigma_shot[ts.rows(1)[0]]  # a swap would show
    rows = [int(np.flatnonzero((ts.scene == r["scene"]) & (ts.gain == r["gain"]))[0]) for r in ev.per_burst]
    for (burst, noise), i in zip(seen, rows):
        assert noise == NoiseLevel(float(ts.sigma_read[i]), float(ts.sigma_shot[i]))
        np.testing.assert_array_equal(burst, ts.noisy[i])


def test_a_model_method_sees_the_noise_map_of_each_bursts_level(testset_file, tmp_path):
    """A weights file as a method, end to end through `evaluate`: the network's noise-map input is
    sqrt(sigma_read² + sigma_shot·max(reference, 0)) of that burst's level, exactly (a forward pre-hook
    records it; a mean-initialised model's output alone would not tell)."""
    from burstkpn.evaluate import model_method
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    ts = load_testset(testset_file)
    weights = tmp_path / "fresh.safetensors"
    save_weights(build_model(ModelConfig(frames=ts.noisy.shape[1], widths=(4, 8), convs_per_level=1)), weights)
    method = model_method(weights)
    maps = []
    method.model.register_forward_pre_hook(lambda module, args: maps.append(args[1].clone()))
    ev = evaluate(ts, [method], progress=False)
    assert len(maps) == len(ts)
    for noise_map, r in zip(maps, ev.per_burst):
        i = int(np.flatnonzero((ts.scene == r["scene"]) & (ts.gain == r["gain"]))[0])
        want = np.sqrt(ts.sigma_read[i] ** 2 + ts.sigma_shot[i] * np.clip(ts.noisy[i, 0], 0, None))
        assert noise_map.shape == (1, 1, *want.shape)
        np.testing.assert_allclose(noise_map[0, 0].numpy(), want, rtol=1e-5)


def test_a_joint_model_on_a_grayscale_set_is_a_clear_error(tmp_path):
    """A joint colour/raw model cannot denoise grayscale bursts: `model_method` says where to evaluate it."""
    import torch

    from burstkpn.errors import BurstKPNError
    from burstkpn.evaluate import model_method
    from burstkpn.models import ModelConfig, build_model
    from burstkpn.models.planar import planar_from_gray
    from burstkpn.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path / "joint.safetensors"
    save_weights(planar_from_gray(build_model(ModelConfig(kind="kpn", widths=(8, 16), frames=8)), 4), path)
    with pytest.raises(BurstKPNError, match="joint 4-plane model.*--colour bayer"):
        model_method(path)
