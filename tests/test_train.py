"""Training loop: the loss falls, every model kind trains, resume-after-SIGKILL is exact, config errors,
the CLI end to end, and 2-process DDP (gloo) keeps identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from burstkpn.cli import main
from burstkpn.config import from_dict, read_toml, to_toml
from burstkpn.errors import BurstKPNError
from burstkpn.train import TrainConfig, batch_indices, train
from burstkpn.weights import load_model

# tiny: 4 frames of 32x32 at 2x downsampling, a 2-level width-8 U-Net, 3x3 kernels
TINY = {
    "batch_size": 4, "lr": 3e-3, "bf16": False, "log_every": 5, "val_every": 1000, "val_bursts": 2,
    "threads": 1, "fixed_bursts": 8,
    "model": {"frames": 4, "kernel_size": 3, "widths": [8, 16], "convs_per_level": 2, "half_res_output": False},
    "data": {"burst": {"frames": 4, "size": 32, "downsample": 2, "small_shift": 1, "large_shift": 4}},
}


def tiny_config(**top) -> TrainConfig:
    values = json.loads(json.dumps(TINY))
    for key, value in top.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return from_dict(TrainConfig, values)


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.parametrize("kind", ["kpn", "kpn-blind", "dpn"])
def test_loss_falls_on_fixed_bursts_for_every_kind(photo_dir, tmp_path, kind):
    # KPNs start at the frame mean (the default); the direct DPN has no such start
    cfg = tiny_config(steps=40, model={"kind": kind})
    summary = train(cfg, photo_dir, tmp_path / "run", progress=False)
    curve = losses(tmp_path / "run")
    assert summary["steps"] == 40 and len(curve) == 8
    assert curve[-1] < 0.5 * curve[0], curve
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.config.kind == kind and model.info["steps"] == 40


def _kill_when_checkpointed(cmd: list[str], ckpt: Path) -> int:
    """Start ``cmd``, SIGKILL it as soon as its first checkpoint exists; return the checkpoint's step."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode()[-2000:])
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(torch.load(ckpt, weights_only=False)["step"])


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(photo_dir, tmp_path):
    cfg = tiny_config(steps=60, checkpoint_every=4, bf16=True, fixed_bursts=0)
    (tmp_path / "cfg.toml").write_text(to_toml(cfg))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "burstkpn.cli", "train", "--images", str(photo_dir), "--out", str(run),
           "--config", str(tmp_path / "cfg.toml"), "--quiet"]
    killed_at = _kill_when_checkpointed(cmd, run / "checkpoint.pt")
    assert 0 < killed_at < 60
    resumed = train(cfg, photo_dir, run, resume=True, progress=False)["model"]
    straight = train(cfg, photo_dir, tmp_path / "straight", progress=False)["model"]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # rows after the checkpoint were not duplicated


def test_existing_run_needs_resume_and_unchanged_config(photo_dir, tmp_path):
    cfg = tiny_config(steps=2)
    train(cfg, photo_dir, tmp_path / "run", progress=False)
    with pytest.raises(BurstKPNError, match="--resume"):
        train(cfg, photo_dir, tmp_path / "run", progress=False)
    with pytest.raises(BurstKPNError, match="changed config.*lr"):
        train(tiny_config(steps=4, lr=1e-2), photo_dir, tmp_path / "run", resume=True, progress=False)
    assert train(tiny_config(steps=4), photo_dir, tmp_path / "run", resume=True, progress=False)["steps"] == 4


def test_init_from_weights_takes_their_config_and_values(photo_dir, tmp_path):
    first = train(tiny_config(steps=2), photo_dir, tmp_path / "a", progress=False)["model"]
    other_width = tiny_config(steps=0, model={"widths": [4, 8]})
    second = train(other_width, photo_dir, tmp_path / "b", init=tmp_path / "a" / "model.safetensors", progress=False)
    assert second["model"].config == first.config
    for (name, a), b in zip(first.state_dict().items(), second["model"].state_dict().values()):
        assert torch.equal(a, b), name
    assert from_dict(TrainConfig, read_toml(tmp_path / "b" / "config.toml")).model.widths == (8, 16)


def test_init_records_lineage_and_grows_a_fixed_length_model(photo_dir, tmp_path):
    from burstkpn.models import predict
    from burstkpn.weights import load_model

    train(tiny_config(steps=3), photo_dir, tmp_path / "a", progress=False)
    fixed = load_model(tmp_path / "a" / "model.safetensors")
    grow = tiny_config(steps=2, model={"variable_frames": True}, data={"short_fraction": 0.5})
    second = train(grow, photo_dir, tmp_path / "b", init=tmp_path / "a" / "model.safetensors", progress=False)
    grown = load_model(tmp_path / "b" / "model.safetensors")
    assert grown.config.variable_frames and grown.info["init"]["total_steps"] == 3
    assert grown.info["steps"] == second["steps"] == 2
    # a third generation adds up both: 3 + 2
    third = train(tiny_config(steps=1, model={"variable_frames": True}), photo_dir, tmp_path / "c",
                  init=tmp_path / "b" / "model.safetensors", progress=False)
    assert load_model(tmp_path / "c" / "model.safetensors").info["init"]["total_steps"] == 5 and third["steps"] == 1
    # growing itself is exact: the grown model at step 0 is the fixed one
    start = train(tiny_config(steps=0, model={"variable_frames": True}), photo_dir, tmp_path / "d",
                  init=tmp_path / "a" / "model.safetensors", progress=False)["model"]
    burst = torch.rand(1, fixed.config.frames, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(predict(start.eval(), burst, 0.01, 0.001)["output"],
                                   predict(fixed, burst, 0.01, 0.001)["output"], rtol=0, atol=1e-6)


def test_batches_differ_per_rank_and_step():
    seen = [tuple(batch_indices(t, 4, r, 2)) for t in range(3) for r in range(2)]
    assert len(set(sum(seen, ()))) == 24
    assert batch_indices(5, 4, 0, 1, fixed=8) == [4, 5, 6, 7]


def test_config_toml_round_trip_and_errors(tmp_path):
    cfg = tiny_config(steps=7, lr_schedule="cosine")
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert from_dict(TrainConfig, read_toml(tmp_path / "c.toml")) == cfg
    with pytest.raises(BurstKPNError, match="unknown config key.*model.widht"):
        from_dict(TrainConfig, {"model": {"widht": [8]}})
    with pytest.raises(BurstKPNError, match="expected int"):
        from_dict(TrainConfig, {"batch_size": "4"})
    (tmp_path / "bad.toml").write_text("steps = = 3")
    with pytest.raises(BurstKPNError, match="malformed TOML"):
        read_toml(tmp_path / "bad.toml")
    with pytest.raises(BurstKPNError, match="must equal model.frames"):
        from_dict(TrainConfig, {"model": {"frames": 4}})


def test_cli_end_to_end_and_small_image_hint(photo_dir, tmp_path, capsys):
    (tmp_path / "c.toml").write_text(to_toml(tiny_config()))
    out = tmp_path / "run"
    code = main(["train", "--images", str(photo_dir), "--out", str(out), "--config", str(tmp_path / "c.toml"),
                 "--steps", "3", "--kind", "kpn-blind", "--prealign", "global", "--workers", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    resolved = from_dict(TrainConfig, read_toml(out / "config.toml"))
    assert resolved.steps == 3 and resolved.model.kind == "kpn-blind" and resolved.model.prealign == "global"
    assert resolved.workers == 1  # bursts synthesised in a worker process, as on a GPU
    assert load_model(out / "model.safetensors").config == resolved.model
    assert "done: step 3" in capsys.readouterr().out
    code = main(["train", "--images", str(photo_dir), "--out", str(tmp_path / "big"), "--steps", "1",
                 "--patch-size", "200", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "fits --patch-size 96 or less" in err and len(err.strip().splitlines()) == 2  # warning + error


DDP_SCRIPT = """
import json, os, sys, torch
from burstkpn.config import from_dict
from burstkpn.train import TrainConfig, train
cfg = from_dict(TrainConfig, json.loads(sys.argv[3]))
model = train(cfg, sys.argv[1], sys.argv[2], progress=False)["model"]
torch.save(model.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_weights(photo_dir, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    values = json.loads(json.dumps(TINY)) | {"steps": 30}
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(script), str(photo_dir), str(run), json.dumps(values)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(run / "rank0.pt"), torch.load(run / "rank1.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    curve = losses(run)
    assert curve[-1] < 0.7 * curve[0], curve


def test_lr_warmup_ramps_linearly_then_follows_the_schedule():
    from burstkpn.train import lr_at

    cfg = tiny_config(steps=1000, lr=1e-3, lr_schedule="cosine", lr_min=1e-5, lr_warmup=100)
    plain = tiny_config(steps=1000, lr=1e-3, lr_schedule="cosine", lr_min=1e-5)
    assert lr_at(0, cfg) == pytest.approx(lr_at(0, plain) / 100)
    assert lr_at(49, cfg) == pytest.approx(lr_at(49, plain) / 2)
    assert all(lr_at(t, cfg) == lr_at(t, plain) for t in (99, 100, 500, 999))
    assert lr_at(0, tiny_config(lr=2e-3, lr_warmup=4)) == pytest.approx(5e-4)
    with pytest.raises(BurstKPNError, match="lr_warmup"):
        tiny_config(lr_warmup=-1)


@pytest.mark.parametrize("prefix, part, module", [("gate.", "robust_gate", "gate"), ("agree.", "agreement_blend", "agree")])
def test_trainable_fits_a_grown_gate_alone(photo_dir, tmp_path, prefix, part, module):
    """``trainable = ["gate."]`` (or ``["agree."]``): a robustness gate (agreement blend) grown onto trained
    weights moves, nothing else does; a prefix that names no parameter is a clear error."""
    base = train(tiny_config(steps=2), photo_dir, tmp_path / "a", progress=False)["model"]
    gated = tiny_config(steps=4, trainable=[prefix], model={part: True}, ema_decay=0.9,  # frozen stays exact
                        data={"local_fraction": 0.5, "static_fraction": 0.5, "local": {"intruder_rate": 0.5}})
    fitted = train(gated, photo_dir, tmp_path / "b", init=tmp_path / "a" / "model.safetensors", progress=False)["model"]
    for name, value in base.state_dict().items():
        assert torch.equal(value, fitted.state_dict()[name]), name
    last = getattr(fitted, module).mlp[-1]
    assert float(last.weight.detach().abs().sum()) > 0  # it started at zero
    with pytest.raises(BurstKPNError, match="no model parameter starts with"):
        train(tiny_config(steps=1, trainable=["nothing."]), photo_dir, tmp_path / "c", progress=False)


def test_weight_average_follows_its_formula():
    from burstkpn.train import WeightAverage

    layer = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(layer.weight)
    average = WeightAverage(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update(layer, step=1)  # d = min(0.9, 2/11)
    assert average.state["weight"][0, 0].item() == pytest.approx(1 - 2 / 11)
    for step in range(2, 200):
        average.update(layer, step)
    assert average.state["weight"][0, 0].item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    with average.applied(layer) as shown:
        assert shown.weight[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert layer.weight[0, 0].item() == 3.0  # its own weights back
    with pytest.raises(BurstKPNError, match="ema_decay"):
        tiny_config(ema_decay=1.0)


def test_ema_run_delivers_its_averaged_weights_and_resumes_them(photo_dir, tmp_path):
    cfg = tiny_config(steps=12, ema_decay=0.99, checkpoint_every=6)
    train(cfg, photo_dir, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    final = load_model(tmp_path / "run" / "model.safetensors").state_dict()
    assert any(not torch.equal(final[k], ckpt["model"][k]) for k in final)  # not the raw weights
    for name, value in final.items():
        torch.testing.assert_close(value, ckpt["ema"][name].to(value.dtype)), name
    # stopped at step 6 and resumed: the same averaged weights as the straight run
    half = tiny_config(steps=6, ema_decay=0.99, checkpoint_every=6)
    train(half, photo_dir, tmp_path / "split", progress=False)
    resumed = train(cfg, photo_dir, tmp_path / "split", resume=True, progress=False)["model"].state_dict()
    for name, value in final.items():
        assert torch.equal(value, resumed[name]), name


def test_the_loop_hands_the_annealed_term_its_own_step(photo_dir, tmp_path, monkeypatch):
    """Each step's loss gets that step's index (so the per-frame term decays as β·α^t), also after a resume;
    the logged anneal_weight is the window's mean of β·α^t."""
    import burstkpn.train as train_module
    from burstkpn.losses import total_loss

    seen = []

    def spy(result, clean, white_level, step, cfg):
        seen.append(step)
        return total_loss(result, clean, white_level, step, cfg)

    monkeypatch.setattr(train_module, "total_loss", spy)
    cfg = tiny_config(steps=4, log_every=2, val_bursts=0, loss={"alpha": 0.5, "beta": 8.0})
    train(cfg, photo_dir, tmp_path / "run", progress=False)
    assert seen == [0, 1, 2, 3]
    train(tiny_config(steps=6, log_every=2, val_bursts=0, loss={"alpha": 0.5, "beta": 8.0}), photo_dir,
          tmp_path / "run", resume=True, progress=False)
    assert seen == [0, 1, 2, 3, 4, 5]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # steps 1-2: (8 + 4) / 2; steps 3-4: (2 + 1) / 2; steps 5-6: (0.5 + 0.25) / 2
    assert [(r["step"], r["anneal_weight"]) for r in rows] == [(2, 6.0), (4, 1.5), (6, 0.375)]


def test_validation_leaves_out_bursts_reproduced_exactly():
    """A validation burst clipped white everywhere (target and output both 1) has infinite PSNR: the mean
    is over the others (it read inf for a whole run of configs/kpn-mix2.toml before)."""
    from burstkpn.metrics import psnr
    from burstkpn.models import ModelConfig, build_model
    from burstkpn.train import validate

    model = build_model(ModelConfig(widths=(4, 8), convs_per_level=1, frames=4, kernel_size=3))  # the mean
    g = torch.Generator().manual_seed(0)
    clean = 0.2 + 0.5 * torch.rand(2, 32, 32, generator=g)
    burst = clean[:, None] + 0.02 * torch.randn(2, 4, 32, 32, generator=g)
    burst[1], clean[1] = 1.0, 1.0  # blown out: every frame and the target at white
    batch = {"burst": burst, "clean": clean, "sigma_read": torch.full((2,), 0.02), "sigma_shot": torch.zeros(2),
             "white_level": torch.ones(2), "valid": torch.ones(2, 4)}
    alone = psnr(burst[0].mean(0).numpy(), clean[0].numpy())
    assert psnr(burst[1].mean(0).numpy(), clean[1].numpy()) == float("inf")
    assert validate(model, [batch], amp=False) == pytest.approx(alone, abs=1e-4)


def test_teacher_regret_enters_the_loss(photo_dir, tmp_path):
    """``teacher`` + ``loss.regret_weight``: the teacher's per-burst error is logged and the regret moves the
    weights (a run without it ends elsewhere); the teacher is frozen; its weights are recorded, and resuming
    against other weights under the same path is a clear error; a weight without a teacher is one too."""
    import shutil

    from burstkpn.train import load_teacher
    from burstkpn.weights import state_digest

    good = tmp_path / "good" / "model.safetensors"
    train(tiny_config(steps=40), photo_dir, tmp_path / "good", progress=False)
    start = tmp_path / "start" / "model.safetensors"
    train(tiny_config(steps=1), photo_dir, tmp_path / "start", progress=False)  # worse than `good` on most bursts
    teacher = tmp_path / "teacher.safetensors"
    shutil.copy(good, teacher)
    runs = {}
    for weight in (0.0, 10.0):
        cfg = tiny_config(steps=3, log_every=1, teacher=str(teacher), loss={"regret_weight": weight})
        runs[weight] = train(cfg, photo_dir, tmp_path / f"r{weight}", init=start, progress=False)["model"].state_dict()
        rows = [json.loads(line) for line in (tmp_path / f"r{weight}" / "metrics.jsonl").read_text().splitlines()]
        assert all(row["regret_db"] > 0 and row["worse_than_teacher"] > 0 for row in rows if "loss" in row)
    assert any(not torch.equal(runs[0.0][k], runs[10.0][k]) for k in runs[0.0])
    frozen = load_teacher(str(teacher), torch.device("cpu"))
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    recorded = json.loads((tmp_path / "r10.0" / "teacher.json").read_text())
    assert recorded["digest"] == state_digest(frozen.state_dict())
    assert load_model(tmp_path / "r10.0" / "model.safetensors").info["teacher"] == recorded
    shutil.copy(start, teacher)  # other weights under the teacher's path
    longer = tiny_config(steps=4, log_every=1, teacher=str(teacher), loss={"regret_weight": 10.0})
    with pytest.raises(BurstKPNError, match="not the weights this run started with"):
        train(longer, photo_dir, tmp_path / "r10.0", resume=True, progress=False)
    with pytest.raises(BurstKPNError, match="needs a teacher"):
        tiny_config(loss={"regret_weight": 1.0})
    with pytest.raises(BurstKPNError, match="regret_weight must be >= 0"):
        tiny_config(teacher=str(teacher), loss={"regret_weight": float("nan")})
