"""SIGKILL tests (issue 10): long jobs lose at most the work since their last checkpoint, never a file.

Training: a tiny run is killed several times, at random moments and at the moment a checkpoint is
being written (its temporary file appears), and resumed each time; the checkpoint always loads,
the step count only grows, and the finished run has exactly the configured steps.
Denoise: killed mid-computation and mid-write, it leaves no output file or a complete one
(byte-identical to an uninterrupted run's).

The only thing a SIGKILL may leave behind is an ``atomic_output`` temporary file (a hidden
``.NAME.*.tmp*`` beside the output), which no reader mistakes for the output.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from burstkpn.config import from_dict, to_toml
from burstkpn.train import TrainConfig
from burstkpn.weights import load_model

pytestmark = pytest.mark.slow  # real processes killed and restarted: tens of seconds

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STEPS = 60
TINY = {  # as in test_train.py: 4 frames of 32x32 at 2x downsampling, a 2-level width-8 U-Net
    "steps": STEPS, "batch_size": 2, "lr": 3e-3, "bf16": False, "log_every": 5, "val_every": 1000, "val_bursts": 2,
    "threads": 1, "checkpoint_every": 1,
    "model": {"frames": 4, "kernel_size": 3, "widths": [8, 16], "convs_per_level": 1, "half_res_output": False},
    "data": {"burst": {"frames": 4, "size": 32, "downsample": 2, "small_shift": 1, "large_shift": 4}},
}


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "burstkpn.cli", *argv]


def temp_files(folder: Path, name: str) -> list[Path]:
    """``atomic_output``'s temporary files for ``name`` in ``folder``."""
    return list(folder.glob(f".{name}.*.tmp*"))


def run_and_kill(cmd: list[str], ready, delay: float, timeout: float = 60) -> int | None:
    """Start ``cmd``; once ``ready()`` is true wait ``delay`` s and SIGKILL it. None if killed, else its exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                break
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.001)
        time.sleep(delay)
        if proc.poll() is not None:  # finished first: fine, but it must have succeeded
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            return proc.returncode
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory):
    """One 128x128 photo: enough for 32-px bursts at 2x, quick to load at every restart."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    iio.imwrite(folder / "camera.png", data.camera()[100:228, 200:328])
    return folder


def test_training_survives_repeated_sigkill(small_photos, tmp_path):
    cfg = from_dict(TrainConfig, TINY)
    (tmp_path / "cfg.toml").write_text(to_toml(cfg))
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    rng = random.Random(10)
    steps_seen = [0]
    # random moments after a fresh checkpoint, and the very moment a checkpoint is being written
    for attempt, mode in enumerate(["random", "writing", "random", "writing"]):
        resume = ["--resume"] if attempt else []
        cmd = cli("train", "--images", str(small_photos), "--out", str(run), "--config", str(tmp_path / "cfg.toml"),
                  "--quiet", *resume)
        mtime = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        if mode == "random":
            def ready(mtime=mtime):
                return ckpt.exists() and ckpt.stat().st_mtime_ns != mtime
            delay = rng.uniform(0, 0.3)
        else:
            def ready():
                return bool(temp_files(run, "checkpoint.pt"))
            delay = 0.0
        rc = run_and_kill(cmd, ready, delay)
        state = torch.load(ckpt, map_location="cpu", weights_only=False)  # always a whole checkpoint
        assert set(state) >= {"model", "optimizer", "step", "config", "rng"}
        assert steps_seen[-1] <= state["step"] <= STEPS
        steps_seen.append(int(state["step"]))
        stray = {p.name for p in run.iterdir()} - {"checkpoint.pt", "config.toml", "metrics.jsonl", "model.safetensors"}
        assert all(name.startswith((".checkpoint.pt.", ".metrics.jsonl.", ".config.toml.")) for name in stray), stray
        if rc == 0:
            break
    assert 0 < steps_seen[1] < STEPS, steps_seen  # the first kill did interrupt the run
    done = subprocess.run(cli("train", "--images", str(small_photos), "--out", str(run), "--config",
                              str(tmp_path / "cfg.toml"), "--quiet", "--resume"), capture_output=True, text=True,
                          env=ENV, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.load(ckpt, weights_only=False)["step"] == STEPS
    model = load_model(run / "model.safetensors")
    assert model.info["steps"] == STEPS
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # no duplicated rows from redone steps


def write_burst(folder: Path, side: int = 384, frames: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(frames):
        iio.imwrite(folder / f"{i}.png", rng.integers(0, 255, (side, side), dtype=np.uint8))
    return folder


def test_denoise_killed_leaves_nothing_or_a_complete_file(tmp_path, tiny_weights):
    burst = write_burst(tmp_path / "in")

    def cmd(out: Path) -> list[str]:
        return cli("denoise", str(burst), "-o", str(out / "clean.png"), "--model", str(tiny_weights), "--quiet",
                   "--tile", "128", "--noise", "0.01,0.01")

    start = time.monotonic()
    whole = subprocess.run(cmd(tmp_path / "whole"), capture_output=True, text=True, env=ENV, timeout=120, check=False)
    seconds = time.monotonic() - start
    assert whole.returncode == 0, whole.stderr[-2000:]
    reference = (tmp_path / "whole" / "clean.png").read_bytes()
    rng = random.Random(11)
    moments = [("random", rng.uniform(0.4, 0.9) * seconds), ("writing", 0.0)]
    for i, (mode, delay) in enumerate(moments):
        out = tmp_path / f"killed{i}"
        ready = (lambda: True) if mode == "random" else (lambda out=out: out.is_dir() and bool(temp_files(out, "clean.png")))
        run_and_kill(cmd(out), ready, delay)
        if not out.exists():
            continue
        names = {p.name for p in out.iterdir()}
        assert all(n in ("clean.png", "clean.json") or n.startswith((".clean.png.", ".clean.json.")) for n in names), names
        if (out / "clean.png").exists():
            assert (out / "clean.png").read_bytes() == reference
        if (out / "clean.json").exists():
            assert json.loads((out / "clean.json").read_text())["outputs"] == [str(out / "clean.png")]
