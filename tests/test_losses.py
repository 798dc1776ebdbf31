"""Losses: gamma space, border, anneal schedule, per-frame term."""

from __future__ import annotations

import math

import pytest
import torch

from burstkpn.camera import srgb_curve
from burstkpn.losses import LossConfig, anneal_weight, basic_loss, to_gamma, total_loss


@pytest.mark.parametrize("step", [0, 1, 1000, 25_000])
def test_anneal_weight_is_beta_alpha_power_t(step):
    assert anneal_weight(step) == pytest.approx(100 * 0.9998**step, rel=1e-12)
    assert anneal_weight(step, LossConfig(beta=3.0, alpha=0.5)) == pytest.approx(3.0 * 0.5**step)
    assert anneal_weight(step, LossConfig(anneal=False)) == 0.0


def test_basic_loss_hand_computed():
    clean = torch.full((1, 20, 20), 0.25)
    est = clean.clone()
    est[0, 10, 10] = 0.5  # one pixel inside the 8-px crop (rows/cols 8..11)
    wl = torch.tensor([0.5])
    d = float(srgb_curve(torch.tensor(1.0)) - srgb_curve(torch.tensor(0.5)))  # white level divided out
    l2 = d**2 / 16
    grad = 2 * d / (4 * 3) + 2 * d / (3 * 4)  # one pixel: two horizontal + two vertical differences
    assert basic_loss(est, clean, wl).item() == pytest.approx(l2 + grad, rel=1e-5)
    assert basic_loss(est, clean, wl, LossConfig(gradient_weight=0.1)).item() == pytest.approx(l2 + 0.1 * grad, rel=1e-5)
    est[0, 2, 2] = 0.0  # in the cropped border: no effect
    assert basic_loss(est, clean, wl).item() == pytest.approx(l2 + grad, rel=1e-5)


def test_to_gamma_clips_and_divides_white_level():
    x = torch.tensor([[[-0.1, 0.05, 0.2, 0.3]]])
    g = to_gamma(x, torch.tensor([0.2]), border=0)
    torch.testing.assert_close(g, srgb_curve(torch.tensor([[[0.0, 0.25, 1.0, 1.0]]])))


def test_total_loss_adds_annealed_per_frame_term():
    torch.manual_seed(0)
    clean = torch.rand(2, 24, 24)
    per_frame = torch.rand(2, 3, 24, 24) / 3
    result = {"output": per_frame.sum(1), "per_frame": per_frame}
    wl = torch.tensor([1.0, 0.5])
    cfg = LossConfig()
    loss, parts = total_loss(result, clean, wl, step=10, cfg=cfg)
    frames = sum(basic_loss(3 * per_frame[:, i], clean, wl) for i in range(3))
    expected = basic_loss(result["output"], clean, wl) + 100 * 0.9998**10 * frames
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["loss_per_frame"] == pytest.approx(frames.item(), rel=1e-5)
    off, _ = total_loss(result, clean, wl, step=10, cfg=LossConfig(anneal=False))
    assert off.item() == pytest.approx(basic_loss(result["output"], clean, wl).item())
    assert not math.isclose(off.item(), loss.item())
