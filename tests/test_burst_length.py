"""Bursts of any length (issue 11): validity channels, frame selection, growing a fixed-length model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from burstkpn.align import align_global, select_frames
from burstkpn.data import BurstDataset, TrainingDataConfig
from burstkpn.errors import BurstKPNError
from burstkpn.models import ModelConfig, build_model, predict
from burstkpn.models.kpn import validity_scale
from burstkpn.synth import BurstConfig

TINY = {"widths": (4, 8), "convs_per_level": 1, "frames": 4, "kernel_size": 3}


def _scene(seed: int = 0, size: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 5, 1)[0, 0]


def test_validity_scale_keeps_the_mean_of_valid_frames():
    valid = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    scale = validity_scale(valid)
    torch.testing.assert_close(scale, torch.tensor([[2.0, 2, 0, 0], [1, 1, 1, 1], [4, 0, 0, 0]]))
    # weights 1/N on the centre tap times the scale = 1/n on valid frames
    torch.testing.assert_close((scale / 4).sum(1), torch.ones(3))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_untrained_variable_model_outputs_aligned_mean_of_given_frames(n):
    scene = _scene()
    offsets = [(4, 4), (6, 3), (2, 7), (5, 5)]
    burst = torch.stack([scene[y : y + 48, x : x + 48] for y, x in offsets])[None, :n]
    model = build_model(ModelConfig(**TINY, prealign="global", variable_frames=True))
    with torch.no_grad():
        result = predict(model, burst, 0.01, 0.001)
    expected = align_global(burst)[0].mean(1) if n > 1 else burst[:, 0]
    torch.testing.assert_close(result["output"], expected, rtol=0, atol=1e-6)
    assert result["valid"][0].tolist() == [1.0] * n + [0.0] * (4 - n)
    assert result["frames"][0].tolist() == list(range(n)) + [-1] * (4 - n)
    # missing frames: zero pixels in, zero kernels out
    assert float(result["burst"][0, n:].abs().sum()) == 0
    assert float(result["kernels"][0, n:].abs().sum()) == 0


def test_missing_training_frames_are_ignored_whatever_their_pixels():
    model = build_model(replace(ModelConfig(**TINY, variable_frames=True), init="random"))
    burst = torch.rand(1, 4, 24, 24)
    valid = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    other = burst.clone()
    other[:, 2:] = torch.rand(1, 2, 24, 24) * 5
    with torch.no_grad():
        a = predict(model, burst, 0.01, 0.001, valid=valid)["output"]
        b = predict(model, other, 0.01, 0.001, valid=valid)["output"]
        c = predict(model, burst[:, :2], 0.01, 0.001)["output"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-6)


def test_fixed_length_model_rejects_short_bursts_with_a_clear_error():
    model = build_model(ModelConfig(**TINY))
    with pytest.raises(BurstKPNError, match="exactly 4 frames"):
        predict(model, torch.rand(1, 3, 16, 16), 0.01, 0.001)


def test_long_burst_keeps_reference_and_best_aligned_frames():
    scene, other = _scene(0), _scene(1)
    good = [scene[y : y + 48, x : x + 48] for y, x in [(4, 4), (6, 3), (2, 7), (5, 5)]]
    bad = [other[10:58, 10:58], other[20:68, 5:53]]
    burst = torch.stack([good[0], bad[0], good[1], good[2], bad[1], good[3]])[None]
    burst = burst + 0.01 * torch.randn(burst.shape, generator=torch.Generator().manual_seed(2))
    assert select_frames(burst, 4)[0].tolist() == [0, 2, 3, 5]
    model = build_model(ModelConfig(**TINY, prealign="global"))  # also for fixed-length models
    with torch.no_grad():
        result = predict(model, burst, 0.01, 0.001)
    assert result["frames"][0].tolist() == [0, 2, 3, 5]
    assert result["output"].shape == (1, 48, 48)


def test_training_sampler_draws_short_and_locally_moving_bursts(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((260, 260)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    cfg = TrainingDataConfig(burst=BurstConfig(size=16), local_fraction=0.5, short_fraction=0.4, min_frames=2)
    ds = BurstDataset(tmp_path, cfg, progress=False)
    valid = np.stack([ds[k]["valid"].numpy() for k in range(400)])
    counts = valid.sum(1).astype(int)
    missing = (valid == 0).sum(0)
    assert missing[0] == 0  # the reference is always there; every alternate slot is missing about as often
    assert missing[1:].min() > 0.6 * missing[1:].mean() and missing[1:].max() < 1.4 * missing[1:].mean()
    assert counts.min() == 2 and counts.max() == 8
    assert abs((counts < 8).mean() - 0.4) < 0.08  # ±3.3 standard errors
    assert set(np.unique(counts[counts < 8])) == set(range(2, 8))
    torch.testing.assert_close(ds[7]["burst"], ds[7]["burst"])  # deterministic per index
    with pytest.raises(BurstKPNError, match="min_frames"):
        TrainingDataConfig(min_frames=9)
