"""Models: any size and batch 1, mean initialisation, σ-blind / DPN inputs, shape errors, weights files."""

from __future__ import annotations

import pytest
import torch

from burstkpn.align import align_global
from burstkpn.errors import BurstKPNError
from burstkpn.models import ModelConfig, build_model, predict
from burstkpn.weights import load_model, save_weights

TINY = {"widths": (4, 8), "convs_per_level": 1, "frames": 4, "kernel_size": 3}


@pytest.mark.parametrize("half_res", [False, True])
@pytest.mark.parametrize("size", [(1, 17, 23), (2, 16, 16)])
def test_kpn_shapes_any_size(size, half_res):
    b, h, w = size
    model = build_model(ModelConfig(**TINY, half_res_output=half_res, init="random"))
    burst = torch.rand(b, 4, h, w)
    result = model(burst, torch.rand(b, 1, h, w))
    assert result["output"].shape == (b, h, w)
    assert result["per_frame"].shape == (b, 4, h, w)
    assert result["kernels"].shape == (b, 4, 3, 3, h, w)
    torch.testing.assert_close(result["output"], result["per_frame"].sum(1))


def test_untrained_kpn_outputs_plain_mean():
    model = build_model(ModelConfig(**TINY))
    burst = torch.rand(1, 4, 21, 19)
    with torch.no_grad():
        out = predict(model, burst, 0.01, 0.001)["output"]
    torch.testing.assert_close(out, burst.mean(1), rtol=0, atol=1e-6)


def test_untrained_prealigned_kpn_outputs_aligned_mean():
    torch.manual_seed(0)
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 72, 72), 5, 1)[0, 0]
    burst = torch.stack([scene[4:52, 4:52], scene[6:54, 3:51], scene[2:50, 7:55], scene[5:53, 5:53]])[None]
    model = build_model(ModelConfig(**TINY, prealign="global"))
    with torch.no_grad():
        result = predict(model, burst, 0.01, 0.001)
    aligned, _ = align_global(burst)
    torch.testing.assert_close(result["output"], aligned.mean(1), rtol=0, atol=1e-6)
    torch.testing.assert_close(result["burst"], aligned)


@pytest.mark.parametrize("kind", ["kpn", "dpn"])
def test_predict_feeds_the_network_the_noise_std_of_its_noisy_reference(kind):
    """The noise-map input is sqrt(sigma_read² + sigma_shot·max(frame 0, 0)) per burst of the batch, at exactly
    that scale (a forward pre-hook records it: a mean-initialised model's output would not tell)."""
    model = build_model(ModelConfig(**TINY, kind=kind, init="random"))
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    burst = torch.rand(2, 4, 12, 10) * 1.2 - 0.1  # some negative pixels: max(x, 0) in the shot term
    sigma_read, sigma_shot = torch.tensor([0.02, 0.005]), torch.tensor([0.001, 0.03])
    with torch.no_grad():
        predict(model, burst, sigma_read, sigma_shot)
        predict(model, burst[:1], 0.02, 0.001)  # scalars
    ref = burst[:, :1].clamp(min=0)
    want = (sigma_read.view(2, 1, 1, 1) ** 2 + sigma_shot.view(2, 1, 1, 1) * ref).sqrt()
    torch.testing.assert_close(seen[0], want, rtol=1e-6, atol=0)
    torch.testing.assert_close(seen[1], want[:1], rtol=1e-6, atol=0)


def test_residual_dpn_starts_at_mean_and_direct_dpn_does_not():
    burst = torch.rand(2, 4, 16, 16)
    noise = torch.rand(2, 1, 16, 16)
    residual = build_model(ModelConfig(**TINY, kind="dpn", residual=True))
    direct = build_model(ModelConfig(**TINY, kind="dpn"))
    with torch.no_grad():
        torch.testing.assert_close(residual(burst, noise)["output"], burst.mean(1))
        assert direct(burst, noise)["output"].shape == (2, 16, 16)
        assert "per_frame" not in direct(burst, noise)


def test_blind_kpn_needs_no_noise_map_and_has_fewer_inputs():
    blind = build_model(ModelConfig(**TINY, kind="kpn-blind"))
    aware = build_model(ModelConfig(**TINY))
    assert blind.unet.encoder[0][0].in_channels == 4 and aware.unet.encoder[0][0].in_channels == 5
    assert blind(torch.rand(1, 4, 8, 8))["output"].shape == (1, 8, 8)


@pytest.mark.parametrize(
    "burst_shape,noise_shape",
    [((4, 8, 8), (1, 1, 8, 8)), ((1, 3, 8, 8), (1, 1, 8, 8)), ((1, 4, 8, 8), None), ((1, 4, 8, 8), (1, 1, 8, 9))],
)
def test_wrong_shapes_give_one_line_error(burst_shape, noise_shape):
    model = build_model(ModelConfig(**TINY))
    noise = None if noise_shape is None else torch.rand(noise_shape)
    with pytest.raises(BurstKPNError) as info:
        model(torch.rand(burst_shape), noise)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [{"kind": "cnn"}, {"kernel_size": 4}, {"prealign": "local"}, {"widths": (8,)}])
def test_bad_config_is_rejected(bad):
    with pytest.raises(BurstKPNError):
        ModelConfig(**{**TINY, **bad})


def test_default_config_is_the_authors_released_variant():
    cfg = ModelConfig()
    assert (cfg.kind, cfg.frames, cfg.kernel_size, cfg.widths, cfg.half_res_output) == ("kpn", 8, 5, (64, 128, 256), True)
    assert build_model(cfg).unet.head.out_channels == 200


def test_load_model_round_trips_weights_and_config(tmp_path):
    cfg = ModelConfig(**TINY, kind="kpn-blind", init="random", prealign="global")
    model = build_model(cfg)
    save_weights(model, tmp_path / "m.safetensors", info={"steps": 3})
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == cfg and loaded.info == {"steps": 3}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_model_errors(tmp_path):
    with pytest.raises(BurstKPNError, match="no such weights file"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(BurstKPNError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BurstKPNError, match="not a burstkpn weights file"):
        load_model(tmp_path / "other.safetensors")
    # a file whose tensors belong to another architecture than its config says
    small = build_model(ModelConfig(**TINY))
    save_weights(small, tmp_path / "m.safetensors")
    tensors = {k: v for k, v in small.state_dict().items() if "head" not in k}
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(tmp_path / "mismatch.safetensors"), metadata=meta)
    with pytest.raises(BurstKPNError, match="do not match the architecture"):
        load_model(tmp_path / "mismatch.safetensors")


def test_half_precision_snapshot_loads_back_as_float32(tmp_path):
    import torch

    from burstkpn.models.kpn import ModelConfig, build_model, predict
    from burstkpn.weights import load_model, save_weights

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 8), frames=4, normalize_kernels=True, mean_blend=True))
    with torch.no_grad():  # a trained-looking model: the mean-initialised one, perturbed
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_weights(model, tmp_path / "full.safetensors")
    save_weights(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    half, full = load_model(tmp_path / "half.safetensors"), load_model(tmp_path / "full.safetensors")
    assert all(p.dtype == torch.float32 for p in half.parameters()) and half.config == full.config
    burst = torch.rand(1, 4, 16, 16)
    a = predict(full, burst, 0.01, 0.001)["output"]
    b = predict(half, burst, 0.01, 0.001)["output"]
    assert torch.allclose(a, b, atol=2e-3) and not torch.equal(a, b)


def test_blend_starts_at_zero_and_cannot_die():
    """The blend toward the mean is exactly 0 at first (a grown model computes what it did before) and keeps a
    gradient below 0, so a head pushed negative early can come back (a plain clamp would stop it for good)."""
    import torch

    from burstkpn.models.kpn import blend_weight

    raw = torch.tensor([-0.5, 0.0, 0.3, 1.7], requires_grad=True)
    b = blend_weight(raw)
    assert torch.equal(b.detach(), torch.tensor([0.0, 0.0, 0.3, 1.0]))
    b.sum().backward()
    assert torch.equal(raw.grad, torch.ones(4))  # the identity's gradient everywhere


def test_a_part_fitted_on_frozen_weights_ships_alone_and_loads_back_onto_them(tmp_path):
    """`save_weights(..., base=FILE)`: only the grown part's tensors are written (with the base's name and
    digest); loading puts them on the base beside it, equal to the whole model. A base that changed, a base
    that is missing, and a model whose old weights moved give one-line errors."""
    from burstkpn.models.kpn import grow_state

    tiny = {"widths": (4, 8), "convs_per_level": 1, "frames": 4, "kernel_size": 3}
    base = build_model(ModelConfig(**tiny, init="random"))
    save_weights(base, tmp_path / "base.safetensors", info={"name": "base"})
    grown = build_model(ModelConfig(**tiny, init="random", agreement_blend=True))
    grown.load_state_dict(grow_state(base.state_dict(), grown, base.config))
    with torch.no_grad():
        for p in grown.agree.parameters():
            p.normal_(0, 0.3)
        grown.agree.mlp[-1].weight.abs_(), grown.agree.mlp[-1].bias.fill_(0.5)  # open: b >= 0.5 everywhere
    save_weights(grown, tmp_path / "part.safetensors", info={"name": "part"}, base=tmp_path / "base.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "part.safetensors"), framework="pt") as f:
        assert f.keys() and all(k.startswith("agree.") for k in f.keys())
    loaded = load_model(tmp_path / "part.safetensors")
    for name, value in grown.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.info["name"] == "part"
    burst = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        assert float(predict(loaded, burst, 0.01, 0.001)["agreement"].abs().sum()) > 0
    moved = build_model(grown.config)
    moved.load_state_dict(grown.state_dict())
    with torch.no_grad():
        moved.unet.head.bias.add_(1e-3)
    with pytest.raises(BurstKPNError, match="not a part grown on"):
        save_weights(moved, tmp_path / "moved.safetensors", base=tmp_path / "base.safetensors")
    assert not (tmp_path / "moved.safetensors").exists()
    with torch.no_grad():
        base.unet.head.bias.add_(1e-3)
    save_weights(base, tmp_path / "base.safetensors")  # the base changed after the part was fitted
    with pytest.raises(BurstKPNError, match="fitted on other weights"):
        load_model(tmp_path / "part.safetensors")
    (tmp_path / "base.safetensors").unlink()
    with pytest.raises(BurstKPNError, match="neither beside it nor shipped"):
        load_model(tmp_path / "part.safetensors")
