"""Training losses (METHOD §3): L2 + L1 of image gradients in gamma space, and the annealed total

    L = ℓ(Σ_i f_i, Y*) + β·α^t · Σ_i ℓ(N·f_i, Y*)

where f_i is frame i filtered by its own kernel. Computed in float32 outside autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from burstkpn.camera import remove_white_level, srgb_curve
from burstkpn.errors import BurstKPNError
from burstkpn.metrics import BORDER


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and the annealing schedule; defaults are the paper's (β=100, α=0.9998)."""

    l2_weight: float = 1.0
    gradient_weight: float = 1.0
    anneal: bool = True  # False: no per-frame term (the ablation)
    beta: float = 100.0
    alpha: float = 0.9998
    border: int = BORDER  # pixels cropped on each side
    # How per-burst losses ℓ_b combine: "mean" (the paper) averages them, so the noisiest bursts,
    # whose errors are largest, dominate; "log" averages log ℓ_b, so every burst's *relative* error
    # counts equally, as in mean PSNR over bursts (the evaluation metric).
    reduction: str = "mean"
    # > 0: add this times the teacher regret (`teacher_regret`: how much worse than a frozen teacher each
    # burst is, in log MSE, nothing where it is better); `TrainConfig.teacher` names the teacher
    regret_weight: float = 0.0

    def __post_init__(self):
        if self.reduction not in ("mean", "log"):
            raise BurstKPNError(f"loss reduction must be 'mean' or 'log', not {self.reduction!r}")
        if not self.regret_weight >= 0:  # NaN too
            raise BurstKPNError(f"loss.regret_weight must be >= 0, got {self.regret_weight}")


def to_gamma(linear: torch.Tensor, white_level: torch.Tensor, border: int = BORDER) -> torch.Tensor:
    """(B, H, W) linear -> sRGB-curve values in [0, 1]: white level divided out, clipped, border cropped.

    white_level: (B,) or scalar.
    """
    wl = torch.as_tensor(white_level, dtype=linear.dtype, device=linear.device).reshape(-1, 1, 1)
    display = srgb_curve(remove_white_level(linear, wl).clamp(0.0, 1.0))
    return display[..., border:-border, border:-border] if border else display


def per_burst_loss(estimate: torch.Tensor, clean: torch.Tensor, white_level, cfg: LossConfig = LossConfig()) -> torch.Tensor:
    """ℓ_b for each burst: weighted mean squared error + mean |∇ difference| (x and y) in gamma space.

    estimate, clean: (B, H, W) linear; returns (B,).
    """
    with torch.autocast(estimate.device.type, enabled=False):
        a = to_gamma(estimate.float(), white_level, cfg.border)
        b = to_gamma(clean.float(), white_level, cfg.border)
        diff = a - b
        l2 = diff.square().mean(dim=(-2, -1))
        grad = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean(dim=(-2, -1)) + \
            (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean(dim=(-2, -1))
        return cfg.l2_weight * l2 + cfg.gradient_weight * grad


def basic_loss(estimate: torch.Tensor, clean: torch.Tensor, white_level, cfg: LossConfig = LossConfig()) -> torch.Tensor:
    """ℓ over a batch, (B, H, W) inputs: the mean of ℓ_b, or of log ℓ_b with ``reduction = "log"``."""
    losses = per_burst_loss(estimate, clean, white_level, cfg)
    if cfg.reduction == "log":
        return losses.clamp_min(1e-12).log().mean()  # floor: a perfect burst must not give -inf
    return losses.mean()


def anneal_weight(step: int, cfg: LossConfig = LossConfig()) -> float:
    """β·α^t, the per-frame term's weight at training step t (0 when annealing is off)."""
    return cfg.beta * cfg.alpha**step if cfg.anneal else 0.0


def total_loss(result: dict[str, torch.Tensor], clean: torch.Tensor, white_level, step: int,
               cfg: LossConfig = LossConfig()) -> tuple[torch.Tensor, dict[str, float]]:
    """The annealed loss for a model's result dict (``output`` (B, H, W), optionally ``per_frame`` (B, N, H, W)).

    Returns the scalar loss and its parts as floats (``loss_burst``, ``loss_per_frame``, ``anneal_weight``).
    Without ``per_frame`` (DPN) or with annealing off, the loss is ℓ(output) alone.
    """
    loss = basic_loss(result["output"], clean, white_level, cfg)
    parts = {"loss_burst": float(loss.detach())}
    weight = anneal_weight(step, cfg)
    per_frame = result.get("per_frame")
    if per_frame is not None and weight > 0:
        b, n, h, w = per_frame.shape
        wl = torch.as_tensor(white_level, dtype=torch.float32, device=clean.device).reshape(-1, 1).expand(b, n)
        # Σ_i ℓ(N·f_i) = N · (ℓ averaged over the B·N filtered frames), all of equal size
        frames_loss = n * basic_loss(n * per_frame.reshape(b * n, h, w), clean.repeat_interleave(n, dim=0),
                                     wl.reshape(-1), cfg)
        parts["loss_per_frame"] = float(frames_loss.detach())
        loss = loss + weight * frames_loss
    parts["anneal_weight"] = weight
    return loss, parts


def teacher_regret(estimate: torch.Tensor, teacher: torch.Tensor, clean: torch.Tensor, white_level,
                   cfg: LossConfig = LossConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """How much worse than a frozen teacher each burst is: relu(log MSE(estimate) − log MSE(teacher)), in
    gamma space (``to_gamma``), 0 where the estimate is better. Its mean over the batch is a loss that holds a
    fine-tune to the teacher burst by burst (e.g. on the paper's bursts) without holding it back where it
    beats it (aligned bursts, where the teacher blurs); ×10/ln 10 it is the dB lost per burst.

    estimate, teacher, clean: (B, H, W) linear; teacher carries no gradient. Returns (mean regret, (B,) regret).
    """
    with torch.autocast(estimate.device.type, enabled=False):
        target = to_gamma(clean.float(), white_level, cfg.border)
        mse = (to_gamma(estimate.float(), white_level, cfg.border) - target).square().mean(dim=(-2, -1))
        mse_teacher = (to_gamma(teacher.detach().float(), white_level, cfg.border) - target).square().mean(dim=(-2, -1))
        regret = (mse.clamp_min(1e-12).log() - mse_teacher.clamp_min(1e-12).log()).clamp_min(0.0)
        return regret.mean(), regret.detach()
