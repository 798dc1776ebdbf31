"""The joint colour/raw model (`burstkpn.models.planar`, issue 22 part 3), its colour training stream
(`data.ColourBurstDataset`) and its training run (`burstkpn train` with ``[colour]``): tiny models, 16-32 px."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from burstkpn import camera
from burstkpn.align import estimate_global_shifts, warp_frames
from burstkpn.config import from_dict
from burstkpn.data import ColourBurstDataset, TrainingDataConfig
from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import bayer_planes
from burstkpn.losses import LossConfig, total_loss
from burstkpn.models import ModelConfig, build_model, predict
from burstkpn.models.planar import (
    PlanarConfig,
    PlanarKPN,
    bayer_to_planes,
    build_planar,
    planar_from_gray,
    planar_loss,
    planes_to_bayer,
    predict_planar,
    process_planes,
)
from burstkpn.noise import noise_variance
from burstkpn.synth import BurstConfig
from burstkpn.weights import load_model, save_weights

TINY = {"frames": 4, "kernel_size": 3, "widths": (4, 8), "convs_per_level": 1, "half_res_output": False}
ALL_PARTS = {**TINY, "prealign": "global", "normalize_kernels": True, "dc_bound": 1.0, "mean_blend": True, "difference_inputs": True,
             "robust_gate": True, "variable_frames": True}
BURST = BurstConfig(frames=4, size=32, downsample=2, small_shift=1, large_shift=4)


def shifted_planes(planes: int, frames: int = 4, side: int = 16, seed: int = 0) -> torch.Tensor:
    """(2, C, N, side, side): smooth random planes, frames shifted by whole pixels (the same for every plane)."""
    g = torch.Generator().manual_seed(seed)
    big = torch.nn.functional.avg_pool2d(torch.rand(2, planes, side + 8, side + 8, generator=g), 3, 1, 1)
    moves = [(0, 0), (1, -1), (-2, 0), (0, 2), (1, 1), (-1, 0), (2, -2), (0, -1)]
    return torch.stack([big[:, :, 4 + dy : 4 + dy + side, 4 + dx : 4 + dx + side] for dy, dx in moves[:frames]], dim=2)


def aligned_mean(burst: torch.Tensor, config: PlanarConfig) -> torch.Tensor:
    """The per-plane mean of the frames after one global alignment measured on the green planes' mean."""
    shifts = estimate_global_shifts(burst[:, list(config.guide_planes)].mean(1))
    aligned = torch.stack([warp_frames(burst[:, c], shifts) for c in range(burst.shape[1])], dim=1)
    aligned[:, :, 0] = burst[:, :, 0]
    return aligned.mean(2)


def perturbed_gray(config: ModelConfig, seed: int = 0, scale: float = 0.05):
    """A mean-initialised grayscale KPN with every weight nudged: kernels differ per frame and pixel, sums near 1."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


@pytest.mark.parametrize("planes", [4, 3])
def test_shapes_for_bayer_and_rgb_planes(planes):
    model = build_planar(PlanarConfig(planes=planes, **ALL_PARTS))
    burst = torch.rand(2, planes, 4, 16, 16)
    with torch.no_grad():
        result = predict_planar(model, burst, 0.01, torch.tensor([1e-3, 2e-3]))
    assert result["output"].shape == (2, planes, 16, 16)
    assert result["per_frame"].shape == (2, planes, 4, 16, 16)
    assert result["kernels"].shape == (2, planes, 4, 3, 3, 16, 16)
    assert result["blend"].shape == (2, planes, 16, 16) and result["gate"].shape == (2, planes, 4, 16, 16)
    assert result["burst"].shape == (2, planes, 4, 16, 16) and result["shifts"].shape == (2, 4, 2)
    with pytest.raises(BurstKPNError, match="shape"):
        predict_planar(model, torch.rand(2, 4 if planes == 3 else 3, 4, 16, 16), 0.01, 0.001)
    with pytest.raises(BurstKPNError):
        PlanarConfig(planes=planes, kind="dpn")


def test_per_plane_kernels_differ_from_shared_ones():
    torch.manual_seed(0)
    own = build_planar(PlanarConfig(planes=4, init="random", **TINY)).eval()
    torch.manual_seed(0)
    shared = build_planar(PlanarConfig(planes=4, init="random", shared_kernels=True, **TINY)).eval()
    assert own.unet.head.out_channels == 4 * shared.unet.head.out_channels
    burst = torch.rand(1, 4, 4, 16, 16)
    with torch.no_grad():
        k_own = predict_planar(own, burst, 0.01, 0.001)["kernels"]
        k_shared = predict_planar(shared, burst, 0.01, 0.001)["kernels"]
    assert all(not torch.allclose(k_own[:, 0], k_own[:, c]) for c in range(1, 4))
    assert all(torch.equal(k_shared[:, 0], k_shared[:, c]) for c in range(1, 4))


@pytest.mark.parametrize("planes", [4, 3])
def test_untrained_output_is_the_per_plane_aligned_mean(planes):
    config = PlanarConfig(planes=planes, **ALL_PARTS)
    model = build_planar(config).eval()
    burst = shifted_planes(planes)
    with torch.no_grad():
        out = predict_planar(model, burst, 0.01, 0.001)["output"]
    torch.testing.assert_close(out, aligned_mean(burst, config), rtol=0, atol=1e-5)
    # the planes really differ (so a mix-up of planes would show)
    assert (aligned_mean(burst, config)[:, 0] - aligned_mean(burst, config)[:, 1]).abs().max() > 0.05


@pytest.mark.parametrize("shared", [False, True])
def test_planar_from_gray_is_the_gray_model_on_equal_planes(shared):
    gray = perturbed_gray(ModelConfig(**ALL_PARTS))
    joint = planar_from_gray(gray, 4, shared_kernels=shared).eval()
    assert isinstance(joint, PlanarKPN) and joint.config.base == gray.config and joint.config.shared_kernels == shared
    burst = shifted_planes(1, seed=3)[:, 0]  # (2, N, H, W)
    with torch.no_grad():
        for n in (4, 2):  # full and short bursts
            want = predict(gray, burst[:, :n], 0.02, 0.002)["output"]
            got = predict_planar(joint, burst[:, None, :n].expand(2, 4, n, 16, 16), 0.02, 0.002)["output"]
            assert want.std() > 0.01
            torch.testing.assert_close(got, want[:, None].expand_as(got), rtol=0, atol=2e-5)
    # untrained gray -> untrained joint: the per-plane aligned mean
    fresh = planar_from_gray(build_model(ModelConfig(**ALL_PARTS)), 4, shared_kernels=shared).eval()
    planes = shifted_planes(4, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(predict_planar(fresh, planes, 0.01, 0.001)["output"],
                                   aligned_mean(planes, fresh.config), rtol=0, atol=1e-5)


def test_planar_from_gray_keeps_the_agreement_blend_and_its_brightness_input():
    """A gray model with the agreement blend and its brightness input (the shipped default's parts) grows into a
    joint model that is the gray one on equal planes; each plane's blend sees its own plane's brightness."""
    gray = perturbed_gray(ModelConfig(**ALL_PARTS, agreement_blend=True, brightness_input=True), scale=0.2)
    with torch.no_grad():
        gray.agree.mlp[-1].bias.fill_(1.5)  # a blend partly open (in (0, 1) here), moved by its features
    joint = planar_from_gray(gray, 4).eval()
    assert joint.config.brightness_input and joint.agree.brightness
    burst = shifted_planes(1, seed=3)[:, 0]
    with torch.no_grad():
        want = predict(gray, burst, 0.02, 0.002)
        got = predict_planar(joint, burst[:, None].expand(2, 4, 4, 16, 16), 0.02, 0.002)
    assert float(want["agreement"].std()) > 1e-3  # the blend is live, so a wrong input to it would show
    # (float32 sums over 4 planes' quarter weights; the blend's log features amplify them to a few 1e-4)
    torch.testing.assert_close(got["output"], want["output"][:, None].expand_as(got["output"]), rtol=0, atol=5e-4)
    # planes of different brightness get different blends from the same frames' agreement
    planes = burst[:, None].expand(2, 4, 4, 16, 16) * torch.tensor([0.3, 1.0, 1.0, 0.5])[None, :, None, None, None]
    with torch.no_grad():
        agreement = predict_planar(joint, planes, 0.02, 0.002)["agreement"]
    assert float((agreement[:, 0] - agreement[:, 1]).abs().max()) > 1e-4


def test_predict_per_plane_runs_the_gray_model_on_each_plane_with_the_given_shifts():
    """The per-plane path a colour run's teacher takes: plane p of the output is the gray model on plane p,
    aligned with the shifts given (one set for every plane), not each plane's own estimate."""
    from burstkpn.models.planar import predict_per_plane

    gray = perturbed_gray(ModelConfig(**ALL_PARTS))
    burst = shifted_planes(4, seed=7)
    shifts = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.0], [0.0, 2.0]]).expand(2, 4, 2)
    with torch.no_grad():
        out = predict_per_plane(gray, burst, 0.02, torch.tensor([0.002, 0.004]), shifts=shifts)
        for p in range(4):
            want = predict(gray, burst[:, p], 0.02, torch.tensor([0.002, 0.004]), shifts=shifts)["output"]
            torch.testing.assert_close(out[:, p], want, rtol=0, atol=1e-6)
        other = predict_per_plane(gray, burst, 0.02, 0.002, shifts=torch.zeros(2, 4, 2))
    assert float((other - predict_per_plane(gray, burst, 0.02, 0.002, shifts=shifts)).abs().max()) > 1e-3


def test_variable_frames_one_to_n_and_long_bursts():
    config = PlanarConfig(planes=4, **ALL_PARTS)
    model = build_planar(config).eval()
    burst = shifted_planes(4, frames=8)
    with torch.no_grad():
        for n in range(1, 5):
            result = predict_planar(model, burst[:, :, :n], 0.01, 0.001)
            assert result["valid"].tolist() == [[1.0] * n + [0.0] * (4 - n)] * 2
            assert result["frames"][0].tolist() == list(range(n)) + [-1] * (4 - n)
            assert not result["kernels"][:, :, n:].any()  # missing frames get no weight
            torch.testing.assert_close(result["output"], aligned_mean(burst[:, :, :n], config), rtol=0, atol=1e-5)
        # 8 frames into a 4-frame model: the reference and the 3 best-aligned (chosen on the green mean)
        result = predict_planar(model, burst, 0.01, 0.001)
        assert result["frames"].shape == (2, 4) and (result["frames"][:, 0] == 0).all()
        assert torch.isfinite(result["output"]).all()
        # missing frames of a full-length training burst
        valid = torch.tensor([[1.0, 0.0, 1.0, 1.0]] * 2)
        result = predict_planar(model, burst[:, :, :4], 0.01, 0.001, valid=valid)
        assert not result["kernels"][:, :, 1].any()
    fixed = build_planar(PlanarConfig(planes=4, **TINY))
    with pytest.raises(BurstKPNError, match="exactly 4 frames"):
        predict_planar(fixed, burst[:, :, :2], 0.01, 0.001)


def _digest(dataset, indices) -> str:
    h = hashlib.sha256()
    for k in indices:
        for name, value in sorted(dataset[k].items()):
            h.update(name.encode())
            h.update(value.numpy().tobytes())
    return h.hexdigest()


# the grayscale stream as it was before the colour stream existed (same photos as conftest's photo_dir)
GRAY_STREAM = {
    3: ({}, "88ce74c19cae00a1046269f2d2da06ae38ad0847c8f02d674935f9fcfe190661"),
    5: ({"static_fraction": 0.25, "integer_fraction": 0.15, "saturated_fraction": 0.3, "black_clip_fraction": 0.3,
         "short_fraction": 0.5, "local_fraction": 0.2}, "fb545335222dae8fa6f779a13ff44497e1fffd0f016942a034f942f3e1992674"),
}


@pytest.mark.parametrize("seed", list(GRAY_STREAM))
def test_grayscale_stream_is_unchanged(photo_dir, seed):
    """On AVX2 code paths (`conftest.run_portably`): numpy's AVX-512 exp/log/power round the last bit otherwise."""
    import inspect

    from conftest import run_portably

    extra, digest = GRAY_STREAM[seed]
    code = (f"import hashlib\nfrom burstkpn.data import BurstDataset, TrainingDataConfig\nfrom burstkpn.synth import BurstConfig\n"
            f"{inspect.getsource(_digest)}\n"
            f"burst = BurstConfig(frames=4, size=32, downsample=2, small_shift=1, large_shift=4)\n"
            f"dataset = BurstDataset({str(photo_dir)!r}, TrainingDataConfig(burst=burst, **{extra!r}), seed={seed}, progress=False)\n"
            f"print(_digest(dataset, [*range(6), 2**61 + 1]))")
    assert BURST == BurstConfig(frames=4, size=32, downsample=2, small_shift=1, large_shift=4)
    assert run_portably(code) == digest


MIX = {"static_fraction": 0.25, "integer_fraction": 0.15, "saturated_fraction": 0.15, "black_clip_fraction": 0.1,
       "local_fraction": 0.2, "short_fraction": 0.3}


@pytest.mark.parametrize("colour", ["bayer", "rgb"])
def test_colour_stream_is_deterministic(photo_dir, colour):
    cfg = TrainingDataConfig(burst=BURST, **MIX)
    a = ColourBurstDataset(photo_dir, cfg, seed=7, colour=colour, progress=False)
    b = ColourBurstDataset(photo_dir, cfg, seed=7, colour=colour, progress=False)
    other = ColourBurstDataset(photo_dir, cfg, seed=8, colour=colour, progress=False)
    first = b[5]  # asked before any other item: no state carries over between items
    assert _digest(a, [0, 5, 2**61]) == _digest(b, [0, 5, 2**61])
    assert all(torch.equal(first[k], a[5][k]) for k in first)
    assert _digest(a, [3]) != _digest(other, [3])
    item = a[3]
    c, side = (4, 16) if colour == "bayer" else (3, 32)
    assert item["burst"].shape == (c, 4, side, side) and item["clean"].shape == (c, side, side)
    assert item["rgb2cam"].shape == (3, 3) and item["gains"].shape == (3,) and item["shifts"].shape == (4, 2)
    torch.testing.assert_close(item["rgb2cam"].sum(1), torch.ones(3))  # rows of rgb2cam sum to 1
    with pytest.raises(BurstKPNError, match="even"):
        ColourBurstDataset(photo_dir, TrainingDataConfig(burst=BurstConfig(frames=4, size=31, downsample=2, large_shift=4)),
                           colour="bayer", progress=False)


@pytest.mark.parametrize("colour", ["bayer", "rgb"])
def test_colour_stream_noise_has_the_model_variance_per_plane(photo_dir, colour):
    """Reference frame minus clean, over static unclipped bursts: N(0, sigma_read² + sigma_shot·clean) in every plane."""
    static = BurstConfig(frames=4, size=32, downsample=2, small_shift=0, large_shift=0, large_rate=0.0)
    dataset = ColourBurstDataset(photo_dir, TrainingDataConfig(burst=static), seed=2, colour=colour, progress=False)
    z = []
    for k in range(12):
        item = dataset[k]
        var = noise_variance(item["clean"].double(), float(item["sigma_read"]), float(item["sigma_shot"]))
        z.append(((item["burst"][:, 0].double() - item["clean"].double()) / var.sqrt()).flatten(1))
        # static burst: every frame is the clean reference plus its own noise
        assert not torch.equal(item["burst"][:, 0], item["burst"][:, 1])
    z = torch.cat(z, dim=1)  # (C, samples)
    assert z.shape[1] >= 3000
    assert z.mean(1).abs().max() < 0.1 and (z.var(1) - 1).abs().max() < 0.1, (z.mean(1), z.var(1))
    # bayer: the planes are the RGGB mosaic's, in bayer_planes order (green planes alike, red and blue not)
    if colour == "bayer":
        clean = dataset[0]["clean"]
        assert (clean[1] - clean[2]).abs().mean() < (clean[0] - clean[3]).abs().mean()


def test_bayer_patterns_pack_to_rggb_planes():
    rgb = np.broadcast_to(np.array([0.1, 0.5, 0.9], np.float32), (4, 6, 3))
    for pattern in camera.BAYER_PATTERNS:
        mosaic = camera.mosaic(rgb, pattern)
        planes = bayer_to_planes(mosaic, pattern)
        np.testing.assert_allclose(planes[:, 0, 0], [0.1, 0.5, 0.5, 0.9])
        np.testing.assert_array_equal(planes_to_bayer(planes, pattern), mosaic)
    np.testing.assert_array_equal(bayer_to_planes(camera.mosaic(rgb), "RGGB"), bayer_planes(camera.mosaic(rgb)))


def test_process_planes_is_the_cameras_processing_and_the_losses_run():
    rng = np.random.default_rng(0)
    params = camera.sample_camera_params(rng)
    cam = rng.uniform(0.0, 0.6, size=(8, 8, 3)).astype(np.float32)
    want = camera.process(cam, params, mosaicked=False)
    planes = torch.from_numpy(np.stack([cam[..., 0], cam[..., 1], cam[..., 1], cam[..., 2]]))[None] * 0.5
    got = process_planes(planes, torch.tensor([0.5]), torch.tensor([params.rgb2cam]),
                         torch.tensor([[params.rgb_gain, params.red_gain, params.blue_gain]]))
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, atol=1e-5)
    # the raw loss is the grayscale loss on every plane; the processed one runs and has gradients
    cfg = LossConfig(border=2, reduction="log")
    out = torch.rand(2, 4, 12, 12, requires_grad=True)
    batch = {"clean": torch.rand(2, 4, 12, 12), "white_level": torch.tensor([1.0, 0.5]),
             "rgb2cam": torch.tensor([params.rgb2cam] * 2), "gains": torch.tensor([[1.2, 2.0, 1.7]] * 2)}
    raw, _ = planar_loss({"output": out}, batch, 0, cfg, "raw")
    want, _ = total_loss({"output": out.reshape(8, 12, 12)}, batch["clean"].reshape(8, 12, 12),
                         batch["white_level"].repeat_interleave(4), 0, cfg)
    torch.testing.assert_close(raw, want)
    processed, parts = planar_loss({"output": out, "per_frame": torch.rand(2, 4, 3, 12, 12)}, batch, 0,
                                   LossConfig(border=2), "processed")
    processed.backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0 and "loss_per_frame" in parts


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_planar(PlanarConfig(planes=3, init="random", shared_kernels=True, align_planes=(0, 1), **ALL_PARTS))
    save_weights(model, tmp_path / "p.safetensors", info={"name": "planar"})
    back = load_model(tmp_path / "p.safetensors")
    assert isinstance(back, PlanarKPN) and back.config == model.config and back.info == {"name": "planar"}
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    burst = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(predict_planar(back, burst, 0.01, 0.001)["output"],
                                   predict_planar(model.eval(), burst, 0.01, 0.001)["output"], rtol=0, atol=0)


def tiny_colour_config(**top):
    from burstkpn.train import TrainConfig

    values = {"batch_size": 2, "lr": 1e-3, "bf16": False, "log_every": 1, "val_every": 1000, "val_bursts": 2,
              "threads": 1, "model": {**TINY, "widths": [4, 8], "prealign": "global", "normalize_kernels": True,
                                      "mean_blend": True},
              "colour": {"mode": "bayer"}, "loss": {"border": 2, "reduction": "log", "beta": 0.0},
              "data": {"burst": {"frames": 4, "size": 32, "downsample": 2, "small_shift": 1, "large_shift": 4},
                       "static_fraction": 0.25, "saturated_fraction": 0.15}}
    for key, value in top.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(TrainConfig, values)


def test_train_three_steps_from_gray_weights_and_resume(photo_dir, tmp_path):
    from burstkpn.config import read_toml, to_toml
    from burstkpn.train import TrainConfig, train

    gray = ModelConfig(**TINY)  # fixed length, no normalisation or blend: grown on the way
    save_weights(perturbed_gray(gray), tmp_path / "gray.safetensors")
    cfg = tiny_colour_config(steps=3)
    summary = train(cfg, photo_dir, tmp_path / "run", init=tmp_path / "gray.safetensors", progress=False)
    assert summary["steps"] == 3 and isinstance(summary["model"], PlanarKPN)
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert isinstance(model, PlanarKPN) and model.config.planes == 4 and model.config.normalize_kernels
    assert model.info["init"]["weights"] == str(tmp_path / "gray.safetensors")
    saved = from_dict(TrainConfig, read_toml(tmp_path / "run" / "config.toml"))
    assert saved.colour.mode == "bayer" and saved.model == cfg.model
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and all(np.isfinite(r.get("loss", 0)) for r in rows)
    # resumable: 2 more steps continue the run
    resumed = train(tiny_colour_config(steps=5), photo_dir, tmp_path / "run", resume=True, progress=False)
    assert resumed["steps"] == 5
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1] == 5
    # a gray config still reads and writes as before, with the colour table at its default
    assert from_dict(TrainConfig, read_toml(tmp_path / "run" / "config.toml")).colour.planar
    assert not TrainConfig().colour.planar and "[colour]" in to_toml(TrainConfig())


def test_a_gray_teacher_holds_every_plane_of_a_colour_run(photo_dir, tmp_path):
    """``teacher`` on a colour run: the grayscale teacher runs per plane; its regret is logged and moves the
    weights (a run without it ends elsewhere)."""
    from burstkpn.train import train

    gray = ModelConfig(**{**TINY, "prealign": "global"})
    save_weights(build_model(gray), tmp_path / "teacher.safetensors")  # the aligned mean of each plane
    save_weights(perturbed_gray(gray, scale=0.3), tmp_path / "start.safetensors")  # worse than it on most planes
    runs = {}
    for weight in (0.0, 10.0):
        cfg = tiny_colour_config(steps=3, teacher=str(tmp_path / "teacher.safetensors"), loss={"regret_weight": weight})
        runs[weight] = train(cfg, photo_dir, tmp_path / f"r{weight}", init=tmp_path / "start.safetensors",
                             progress=False)["model"].state_dict()
        rows = [json.loads(line) for line in (tmp_path / f"r{weight}" / "metrics.jsonl").read_text().splitlines()]
        assert all(np.isfinite(row["regret_db"]) and 0 <= row["worse_than_teacher"] <= 1 for row in rows if "loss" in row)
        assert any(row.get("regret_db", 0) > 0 for row in rows)
    assert any(not torch.equal(runs[0.0][k], runs[10.0][k]) for k in runs[0.0])


def test_planar_weights_grow_an_agreement_blend_fitted_alone(photo_dir, tmp_path):
    """Joint weights + a run config that adds ``agreement_blend`` with ``trainable = ["agree."]``: the grown model
    starts as the joint model it grew from, only the blend's weights move, and a part that would change the
    inputs (validity maps) is not grown onto planar weights (the stored config is used)."""
    from burstkpn.train import train

    first = train(tiny_colour_config(steps=2), photo_dir, tmp_path / "joint", progress=False)["model"]
    cfg = tiny_colour_config(steps=3, trainable=["agree."], lr=1e-2, model={"agreement_blend": True})
    fitted = train(cfg, photo_dir, tmp_path / "agree", init=tmp_path / "joint" / "model.safetensors", progress=False)["model"]
    assert fitted.config.agreement_blend and isinstance(fitted, PlanarKPN)
    for name, value in first.state_dict().items():
        assert torch.equal(value, fitted.state_dict()[name]), name
    assert float(fitted.agree.mlp[-1].weight.detach().abs().sum()) > 0
    burst = torch.rand(1, 4, 4, 16, 16)
    with torch.no_grad():  # the blend shut (its last layer back at zero): the joint model's output exactly
        fitted.agree.mlp[-1].weight.zero_(), fitted.agree.mlp[-1].bias.zero_()
        torch.testing.assert_close(predict_planar(fitted.eval(), burst, 0.01, 0.001)["output"],
                                   predict_planar(first.eval(), burst, 0.01, 0.001)["output"], rtol=0, atol=0)
    other = train(tiny_colour_config(steps=1, model={"variable_frames": True}), photo_dir, tmp_path / "v",
                  init=tmp_path / "joint" / "model.safetensors", progress=False)["model"]
    assert not other.config.variable_frames


def test_train_fresh_rgb_with_processed_loss(photo_dir, tmp_path):
    from burstkpn.train import train

    cfg = tiny_colour_config(steps=2, colour={"mode": "rgb", "shared_kernels": True, "loss": "processed"},
                             val_bursts=1)
    summary = train(cfg, photo_dir, tmp_path / "rgb", progress=False)
    assert summary["steps"] == 2 and summary["model"].config.planes == 3 and summary["model"].config.shared_kernels
    with pytest.raises(BurstKPNError, match="colour mode"):
        tiny_colour_config(colour={"mode": "cmyk"})
