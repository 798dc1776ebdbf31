"""Many bursts (issue 23, part 3): ``burstkpn denoise BURSTS_DIR -o OUT_DIR`` and `batch.denoise_bursts`.

Tiny 8-bit bursts (4 gray frames of 24x24), the `tiny_weights` model, noise given (no estimation):
one output per burst, resume (a second run rewrites nothing), a broken burst's one-line error in the
summary, ``--workers 2`` and ranks (simulated, and real torchrun) byte-identical to one process, and a
run SIGKILLed half-way then rerun.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from burstkpn.batch import denoise_bursts, find_bursts, is_burst_collection, read_burst_list, remove_stale_temps
from burstkpn.cli import main
from burstkpn.errors import BurstKPNError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NOISE = "0.01,0.001"


def make_bursts(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` bursts burst0 .. burstN-1 in ``folder``, 4 noisy 8-bit frames of 24x24 each."""
    rng = np.random.default_rng(seed)
    made = []
    for b in range(count):
        burst = folder / f"burst{b}"
        burst.mkdir(parents=True)
        scene = rng.integers(20, 235, (24, 24))
        for i in range(4):
            iio.imwrite(burst / f"frame{i}.png", np.clip(scene + rng.integers(-12, 13, (24, 24)), 0, 255).astype(np.uint8))
        made.append(burst)
    return made


def cli_args(bursts: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return ["denoise", str(bursts), "-o", str(out), "--model", str(weights), "--noise", NOISE, "--quiet", *extra]


def images(out: Path) -> dict[str, bytes]:
    """The main outputs in ``out``, by name."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("burst*.png"))}


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "summary.json"}


def done_bursts(summary: dict) -> list[str]:
    return [Path(e["burst"]).name for e in summary["done"]]


@pytest.fixture(scope="module")
def bursts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bursts")
    make_bursts(folder, 6)
    return folder


@pytest.fixture(scope="module")
def reference(bursts, tiny_weights, tmp_path_factory) -> Path:
    """One process, one worker, through the command: the outputs every other way must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(cli_args(bursts, out, tiny_weights)) == 0
    return out


def test_a_folder_of_bursts_gives_one_output_each_and_a_second_run_rewrites_nothing(bursts, reference, tiny_weights, capsys):
    names = [f"burst{i}" for i in range(6)]
    assert sorted(p.name for p in reference.iterdir()) == sorted([f"{n}.png" for n in names] + [f"{n}.json" for n in names] + ["summary.json"])
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["counts"] == {"done": 6, "skipped": 0, "failed": 0}
    assert done_bursts(summary) == names
    assert iio.imread(reference / "burst0.png").shape == (24, 24)
    before = mtimes(reference)
    capsys.readouterr()
    assert main(cli_args(bursts, reference, tiny_weights)) == 0
    assert "0 done, 6 skipped" in capsys.readouterr().out
    assert mtimes(reference) == before  # nothing rewritten
    assert json.loads((reference / "summary.json").read_text())["counts"] == {"done": 0, "skipped": 6, "failed": 0}


def test_a_broken_burst_fails_with_its_one_line_error_and_the_others_are_done(tmp_path, tiny_weights, capsys):
    make_bursts(tmp_path / "in", 4)
    (tmp_path / "in" / "burst2" / "frame1.png").write_bytes(b"not a png")
    assert main(cli_args(tmp_path / "in", tmp_path / "out", tiny_weights)) == 2
    captured = capsys.readouterr()
    assert "1 burst(s) failed" in captured.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 1}
    (failure,) = summary["failed"]
    assert Path(failure["burst"]).name == "burst2"
    assert "frame1.png: cannot read image" in failure["error"] and "\n" not in failure["error"]
    assert sorted(images(tmp_path / "out")) == ["burst0.png", "burst1.png", "burst3.png"]
    assert not list((tmp_path / "out").glob("burst2*"))


def test_a_list_file_names_the_bursts_relative_to_itself(tmp_path, tiny_weights):
    make_bursts(tmp_path / "data", 2)
    (tmp_path / "data" / "list.txt").write_text("# two bursts and a missing one\nburst1\n\nburst0\nnowhere\n")
    assert read_burst_list(tmp_path / "data" / "list.txt") == [tmp_path / "data" / n for n in ("burst1", "burst0", "nowhere")]
    assert main(["denoise", "--list", str(tmp_path / "data" / "list.txt"), "-o", str(tmp_path / "out"), "--model",
                 str(tiny_weights), "--noise", NOISE, "--quiet"]) == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert done_bursts(summary) == ["burst0", "burst1"]
    assert "no such file or folder" in summary["failed"][0]["error"]


def test_what_counts_as_many_bursts_and_refusals_before_any_work(tmp_path, tiny_weights, capsys):
    make_bursts(tmp_path / "in", 2)
    (tmp_path / "in" / "notes").mkdir()  # a subfolder without frames is no burst
    assert is_burst_collection(tmp_path / "in") and find_bursts(tmp_path / "in") == [tmp_path / "in" / "burst0", tmp_path / "in" / "burst1"]
    assert not is_burst_collection(tmp_path / "in" / "burst0")  # one burst: the single-burst command as before
    # two bursts writing one name, a burst named like the summary: refused, nothing written
    make_bursts(tmp_path / "other", 1)
    with pytest.raises(BurstKPNError, match="would both write burst0"):
        denoise_bursts([tmp_path / "in" / "burst0", tmp_path / "other" / "burst0"], tmp_path / "out", noise=(0.01, 0.001))
    (tmp_path / "in" / "burst1").rename(tmp_path / "in" / "summary")
    with pytest.raises(BurstKPNError, match="summary file"):
        denoise_bursts(find_bursts(tmp_path / "in"), tmp_path / "out", noise=(0.01, 0.001))
    assert not (tmp_path / "out").exists()
    assert main(["denoise", str(tmp_path / "in" / "burst0"), "-o", str(tmp_path / "x.png"), "--workers", "2"]) == 2
    assert "--workers is for many bursts" in capsys.readouterr().err


def test_simulated_ranks_do_each_burst_once_byte_identical_to_one_process(bursts, reference, tiny_weights, tmp_path, monkeypatch):
    from burstkpn import weights

    loads = []
    original = weights.load_model
    monkeypatch.setattr(weights, "load_model", lambda *a, **k: loads.append(a) or original(*a, **k))
    counting = weights.load_model
    out = tmp_path / "out"
    ranks = [denoise_bursts(find_bursts(bursts), out, rank=r, world=2, model=str(tiny_weights), noise=(0.01, 0.001)) for r in (0, 1)]
    assert len(loads) == 2  # the model is loaded once per batch, not once per burst
    assert weights.load_model is counting  # put back as it was
    assert [done_bursts(s) for s in ranks] == [["burst0", "burst2", "burst4"], ["burst1", "burst3", "burst5"]]
    assert sorted(p.name for p in out.glob("summary*")) == ["summary-rank0.json", "summary-rank1.json"]
    assert images(out) == images(reference)


@pytest.mark.slow  # two spawned worker processes import torch: ~10 s on 2 cores
def test_two_workers_give_byte_identical_outputs(bursts, reference, tiny_weights, tmp_path):
    summary = denoise_bursts(find_bursts(bursts), tmp_path / "out", workers=2, model=str(tiny_weights), noise=(0.01, 0.001))
    assert summary["counts"] == {"done": 6, "skipped": 0, "failed": 0}
    assert images(tmp_path / "out") == images(reference)


@pytest.mark.slow  # a real process killed and rerun
def test_killed_half_way_a_rerun_finishes_the_rest_and_redoes_nothing(tmp_path, tiny_weights):
    make_bursts(tmp_path / "in", 8)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "burstkpn.cli", *cli_args(tmp_path / "in", out, tiny_weights)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(p.name.startswith("burst") and p.suffix == ".json" for p in out.iterdir())):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    finished = sorted(p.stem for p in out.glob("burst*.json"))
    assert 1 <= len(finished) < 8, finished
    kept = mtimes(out)
    # what a kill can leave besides finished bursts: a hidden temporary file, a main output without its .json
    (out / ".burst7.png.k1ll3d_x.tmp.png").write_bytes(b"partial")
    (out / "burst7.png").write_bytes(b"a main output whose .json was never written")
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(Path(e["burst"]).name for e in summary["skipped"]) == finished
    assert sorted(done_bursts(summary) + finished) == [f"burst{i}" for i in range(8)]
    finished_files = {name: t for name, t in kept.items() if name.split(".")[0] in finished}
    after = mtimes(out)
    assert {name: after[name] for name in finished_files} == finished_files  # nothing finished was redone
    names = [f"burst{i}" for i in range(8)]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names] + [f"{n}.json" for n in names] + ["summary.json"])
    assert iio.imread(out / "burst7.png").shape == (24, 24)


def test_stale_temporary_files_of_other_names_are_left_alone(tmp_path):
    for name in (".a.png.abc123.tmp.png", ".a.json.x_y.tmp.json", ".a.b.png.zzz.tmp.png", "a.png", ".ab.png.q1.tmp.png"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.name for p in remove_stale_temps(tmp_path, ["a"])) == [".a.json.x_y.tmp.json", ".a.png.abc123.tmp.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.b.png.zzz.tmp.png", ".ab.png.q1.tmp.png", "a.png"]


def _torchrun() -> str | None:
    beside = Path(sys.executable).parent / "torchrun"
    return str(beside) if beside.exists() else shutil.which("torchrun")


@pytest.mark.slow  # two torchrun ranks: ~10 s
@pytest.mark.skipif(_torchrun() is None, reason="torchrun is not on PATH")
def test_torchrun_ranks_do_each_burst_once_byte_identical_to_one_process(bursts, reference, tiny_weights, tmp_path):
    out = tmp_path / "out"
    cmd = [_torchrun(), "--standalone", "--nproc_per_node=2", "-m", "burstkpn.cli", *cli_args(bursts, out, tiny_weights)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((out / f"summary-rank{r}.json").read_text()) for r in (0, 1)]
    assert [done_bursts(s) for s in ranks] == [["burst0", "burst2", "burst4"], ["burst1", "burst3", "burst5"]]
    assert images(out) == images(reference)
