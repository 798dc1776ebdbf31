"""Losses: gamma space, border, anneal schedule, per-frame term."""

from __future__ import annotations

import math

import pytest
import torch

from burstkpn.camera import srgb_curve
from burstkpn.errors import BurstKPNError
from burstkpn.losses import (
    LossConfig,
    anneal_weight,
    basic_loss,
    per_burst_loss,
    to_gamma,
    total_loss,
)


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


def test_log_reduction_is_mean_of_log_per_burst_losses():
    torch.manual_seed(1)
    clean = torch.rand(3, 24, 24) * 0.5
    est = clean + 0.02 * torch.randn(3, 24, 24) * torch.tensor([1.0, 4.0, 16.0]).reshape(3, 1, 1)
    wl = torch.ones(3)
    per = per_burst_loss(est, clean, wl)
    assert per.shape == (3,)
    assert per[0] < per[1] < per[2]  # noisier estimate, larger loss
    assert basic_loss(est, clean, wl).item() == pytest.approx(per.mean().item(), rel=1e-6)
    assert basic_loss(est, clean, wl, LossConfig(reduction="log")).item() == pytest.approx(per.log().mean().item(), rel=1e-6)


def test_log_reduction_weighs_every_burst_by_its_relative_error():
    # Pure L2: doubling one burst's (small) error adds log(4)/B under "log", whether that burst's error
    # is tiny or 100x larger; under "mean" the change scales with the error's size.
    clean = torch.full((2, 24, 24), 0.3)
    sign = torch.ones(24, 24)
    sign[::2] = -1.0
    changes = {"log": [], "mean": []}
    for reduction, found in changes.items():
        cfg = LossConfig(gradient_weight=0.0, reduction=reduction)
        for burst, size in ((0, 1e-4), (1, 1e-2)):
            est = 0.3 + 1e-3 * sign.expand(2, 24, 24).clone()
            est[burst] = 0.3 + size * sign
            twice = est.clone()
            twice[burst] = 0.3 + 2 * size * sign
            found.append((basic_loss(twice, clean, torch.ones(2), cfg) - basic_loss(est, clean, torch.ones(2), cfg)).item())
    assert changes["log"] == pytest.approx([math.log(4) / 2] * 2, rel=0.02)
    assert changes["mean"][1] > 1000 * changes["mean"][0]


def test_unknown_reduction_is_a_clear_error():
    with pytest.raises(BurstKPNError, match="reduction"):
        LossConfig(reduction="sum")


def test_to_gamma_computes_in_the_images_dtype_whatever_the_white_levels():
    x = torch.rand(2, 20, 20)
    for wl in (torch.tensor([0.5, 1.0], dtype=torch.float64), [0.5, 1.0], 0.5):
        assert to_gamma(x, wl).dtype == torch.float32
    torch.testing.assert_close(to_gamma(x, torch.tensor([0.5, 1.0], dtype=torch.float64)),
                               to_gamma(x, torch.tensor([0.5, 1.0])))


def test_border_comes_from_the_config():
    clean = torch.full((1, 20, 20), 0.25)
    est = clean.clone()
    est[0, 1, 1] = 0.5  # inside a 2-px border, outside 1 px
    assert basic_loss(est, clean, torch.ones(1), LossConfig(border=2)).item() == 0.0
    assert basic_loss(est, clean, torch.ones(1), LossConfig(border=1)).item() > 0.0
    assert basic_loss(est, clean, torch.ones(1), LossConfig(border=0)).item() > 0.0


def test_a_constant_error_has_no_gradient_term():
    """ℓ of a uniform offset in gamma space is its L2 alone: the x and y differences of a constant are 0."""
    clean = torch.full((1, 24, 24), 0.25)
    est = torch.full((1, 24, 24), 0.5)
    d = float(srgb_curve(torch.tensor(0.5)) - srgb_curve(torch.tensor(0.25)))
    assert per_burst_loss(est, clean, torch.ones(1)).item() == pytest.approx(d**2, rel=1e-5)


def test_per_burst_losses_do_not_mix_bursts():
    torch.manual_seed(3)
    clean = torch.rand(3, 24, 24)
    est = clean + 0.05 * torch.randn(3, 24, 24) * torch.tensor([1.0, 3.0, 9.0]).reshape(3, 1, 1)
    wl = torch.tensor([1.0, 0.7, 0.4])
    together = per_burst_loss(est, clean, wl)
    alone = torch.cat([per_burst_loss(est[i : i + 1], clean[i : i + 1], wl[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)


def _kpn_result(seed: int = 0):
    torch.manual_seed(seed)
    clean = torch.rand(2, 24, 24)
    per_frame = torch.rand(2, 3, 24, 24) / 3
    return {"output": per_frame.sum(1), "per_frame": per_frame}, clean, torch.tensor([1.0, 0.5])


def test_total_loss_uses_the_config_in_both_terms_and_reports_its_parts():
    result, clean, wl = _kpn_result()
    cfg = LossConfig(gradient_weight=0.25, l2_weight=2.0, border=2, beta=0.5, alpha=0.5)  # weight 0.5·0.5^1 < 1
    loss, parts = total_loss(result, clean, wl, step=1, cfg=cfg)
    burst = basic_loss(result["output"], clean, wl, cfg)
    frames = sum(basic_loss(3 * result["per_frame"][:, i], clean, wl, cfg) for i in range(3))
    assert loss.item() == pytest.approx((burst + 0.25 * frames).item(), rel=1e-5)
    assert parts == pytest.approx({"loss_burst": burst.item(), "loss_per_frame": frames.item(), "anneal_weight": 0.25},
                                  rel=1e-5)


def test_total_loss_without_per_frame_term_is_the_burst_loss_alone():
    result, clean, wl = _kpn_result()
    # annealing off: no per-frame part at all
    loss, parts = total_loss(result, clean, wl, step=3, cfg=LossConfig(anneal=False))
    assert loss.item() == pytest.approx(basic_loss(result["output"], clean, wl).item())
    assert parts == {"loss_burst": pytest.approx(loss.item()), "anneal_weight": 0.0}
    # a DPN result (no per_frame) while annealing is on
    loss, parts = total_loss({"output": result["output"]}, clean, wl, step=3)
    assert loss.item() == pytest.approx(basic_loss(result["output"], clean, wl).item())
    assert parts == {"loss_burst": pytest.approx(loss.item()), "anneal_weight": pytest.approx(100 * 0.9998**3)}


def test_teacher_regret_counts_only_the_bursts_worse_than_the_teacher():
    """Per burst: 0 where the estimate beats the teacher, the log-MSE gap where it is worse (×10/ln 10
    the dB lost); the gradient reaches the estimate, not the teacher."""
    import math

    from burstkpn.losses import LossConfig, teacher_regret

    torch.manual_seed(0)
    clean = 0.2 + 0.6 * torch.rand(3, 40, 40)
    noise = 0.02 * torch.randn(3, 40, 40)
    teacher = clean + noise
    estimate = (clean + torch.stack([0.5 * noise[0], 0.9 * noise[1], 2 * noise[2]])).requires_grad_(True)
    cfg = LossConfig(border=0)
    mean, per_burst = teacher_regret(estimate, teacher, clean, torch.ones(3), cfg)
    assert per_burst[0] == 0 and per_burst[1] == 0
    # twice the linear error: about 4x the gamma-space MSE (the curve is nearly linear over 0.02), 6 dB
    assert 10 / math.log(10) * float(per_burst[2]) == pytest.approx(6.02, abs=0.3)
    assert float(mean) == pytest.approx(float(per_burst.mean()))
    mean.backward()
    assert estimate.grad[:2].abs().sum() == 0 and estimate.grad[2].abs().sum() > 0


def test_teacher_regret_is_measured_in_gamma_space_inside_the_border():
    """The same linear error costs more in gamma space where the image is dark (the sRGB curve is steep there),
    and errors in the cropped border do not count."""
    from burstkpn.losses import LossConfig, teacher_regret

    torch.manual_seed(1)
    clean = torch.full((1, 48, 48), 0.6)
    clean[:, :, :24] = 0.01  # a dark half
    noise = 0.002 * torch.randn(1, 48, 48)
    teacher = clean + noise
    dark_worse = clean + torch.where(torch.arange(48) < 24, 2 * noise, noise)  # twice the error in the dark half
    bright_worse = clean + torch.where(torch.arange(48) < 24, noise, 2 * noise)
    cfg = LossConfig(border=0)
    dark = float(teacher_regret(dark_worse, teacher, clean, torch.ones(1), cfg)[0])
    bright = float(teacher_regret(bright_worse, teacher, clean, torch.ones(1), cfg)[0])
    assert dark > 3 * bright > 0  # linear space would score both alike
    edge = teacher.clone()
    edge[:, :4] += 0.05  # only in the 4-px border
    assert float(teacher_regret(edge, teacher, clean, torch.ones(1), LossConfig(border=4))[0]) == 0
    assert float(teacher_regret(edge, teacher, clean, torch.ones(1), LossConfig(border=0))[0]) > 0
