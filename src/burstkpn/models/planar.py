"""The joint colour/raw KPN (issue 22, part 3): every frame enters as its packed planes, each plane is
merged by its own per-pixel kernels.

A Bayer burst enters as the 4 planes of its RGGB mosaic at half resolution, in position order TL, TR, BL,
BR (`burstkpn.io.raw.bayer_planes`: R, G, G, B); a camera-RGB burst as its 3 channels. The network sees all
planes of all frames at once, a noise map per plane (from that plane's noisy reference, `noise_std_map`) and,
with ``variable_frames``, one validity map per frame; it predicts K x K x N kernels for each plane (or one
set for all planes, ``shared_kernels``) and each plane is filtered by its own (`apply_kernels` on the planes
folded into the batch, (B·C, N, H, W)). Everything after the U-Net is per plane and is the grayscale KPN's:
validity scaling, the robustness gate (per plane, from that plane's mismatch), `normalize_kernel_sum` and
the blend toward the frames' mean.

`predict_planar` mirrors `models.kpn.predict`: frame selection for long bursts and one global pre-alignment
for all planes, both measured on the mean of the green planes (``PlanarConfig.guide_planes``), then padding
of short bursts and the noise maps. Shifts are in plane pixels (half the mosaic's for Bayer).

`planar_from_gray` starts a joint model from a trained grayscale KPN: on a burst whose planes are all equal
it computes the gray model's output on each plane, and a mean-initialised one the per-plane aligned mean.

Other CFA layouts are flipped to RGGB first (`bayer_to_planes` / `planes_to_bayer`), as `camera.mosaic` does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from burstkpn.camera import PATTERN_FLIPS  # a CFA pattern is RGGB seen through flips of the mosaic
from burstkpn.errors import BurstKPNError
from burstkpn.metrics import mean_finite
from burstkpn.models.kpn import (
    FIRST_CONV,
    KPN,
    AgreementBlend,
    ModelConfig,
    RobustGate,
    blend_toward_mean,
    check_shifts,
    clip_indicators,
    hold_saturation,
    merge_frames,
    mismatch_maps,
    predict,
    unwrap,
)
from burstkpn.models.unet import UNet, pad_to_multiple
from burstkpn.noise import noise_std_map

# planes whose mean guides alignment and frame selection: the greens of RGGB planes, G of RGB
GREEN_PLANES = {4: (1, 2), 3: (1,)}


@dataclass(frozen=True)
class PlanarConfig(ModelConfig):
    """A `ModelConfig` (kind "kpn") plus the planes: ``planes`` per frame (4: RGGB Bayer planes, 3: RGB),
    ``shared_kernels`` (one kernel set and one blend for all planes, the alternative to measure), and
    ``align_planes`` (the planes whose mean guides alignment and frame selection; () = the green ones).
    ``difference_inputs``: one mismatch map per frame, the mean over the guide planes of each plane's
    (`guide_mismatch`). ``brightness_input``: each plane's agreement blend sees its own plane's brightness. Not
    supported (an error): kpn-blind / dpn, ``coarse_scales``, ``resampling_input``, ``smoothed_mean``, ``noise_gain``,
    ``refine``."""

    planes: int = 4
    shared_kernels: bool = False
    align_planes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != "kpn":
            raise BurstKPNError(f"a planar model is a KPN with noise maps (kind kpn), got {self.kind!r}")
        if self.planes < 1:
            raise BurstKPNError(f"planes must be >= 1, got {self.planes}")
        if (self.coarse_scales or self.resampling_input or self.smoothed_mean or self.noise_gain or self.gain_resampling
                or self.refine):
            raise BurstKPNError("coarse_scales, resampling_input, smoothed_mean, noise_gain and refine are not available "
                                "on a planar model")
        if any(not 0 <= p < self.planes for p in self.align_planes) or len(set(self.align_planes)) != len(self.align_planes):
            raise BurstKPNError(f"align_planes must be distinct planes in 0..{self.planes - 1}, got {self.align_planes}")

    @classmethod
    def from_model(cls, base: ModelConfig, planes: int = 4, shared_kernels: bool = False,
                   align_planes: tuple[int, ...] = ()) -> PlanarConfig:
        """``base``'s fields with planes."""
        return cls(**{f.name: getattr(base, f.name) for f in fields(ModelConfig)}, planes=planes,
                   shared_kernels=shared_kernels, align_planes=align_planes)

    @property
    def base(self) -> ModelConfig:
        """The grayscale part: the same fields as a `ModelConfig`."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})

    @property
    def guide_planes(self) -> tuple[int, ...]:
        return self.align_planes or GREEN_PLANES.get(self.planes, tuple(range(self.planes)))

    @property
    def kernel_groups(self) -> int:
        """Kernel sets the head predicts: 1 (shared) or one per plane."""
        return 1 if self.shared_kernels else self.planes

    @property
    def group_outputs(self) -> int:
        """Head outputs per kernel set, in the grayscale KPN's order: N·K² kernel taps, [blend]."""
        return self.frames * self.kernel_size**2 + int(self.mean_blend)


class PlanarKPN(nn.Module):
    """forward(burst (B, C, N, H, W) linear planes, noise_map (B, C, H, W), valid (B, N) or None) -> dict:
    output (B, C, H, W), per_frame (B, C, N, H, W), kernels (B, C, N, K, K, H, W) (with shared kernels the
    same set on every plane), and blend (B, C, H, W) with ``mean_blend``, gate (B, C, N, H, W) with
    ``robust_gate``, agreement (B, C, H, W) with ``agreement_blend`` (each plane's from its own frames and noise).

    Network input channels: plane 0's N frames, plane 1's, ..., then the C noise maps, then the N validity
    maps (``variable_frames``), then the N mismatch maps (``difference_inputs``); head outputs: one group of
    `PlanarConfig.group_outputs` per kernel set.
    """

    def __init__(self, config: PlanarConfig):
        super().__init__()
        if not isinstance(config, PlanarConfig):
            raise BurstKPNError(f"PlanarKPN needs a PlanarConfig, got {type(config).__name__}")
        self.config = config
        c, n, k = config.planes, config.frames, config.kernel_size
        in_channels = c * n + c + n * int(config.variable_frames) + n * int(config.difference_inputs)
        self.unet = UNet(in_channels, config.kernel_groups * config.group_outputs, config.widths,
                         config.convs_per_level, config.half_res_output)
        if config.init == "mean":  # each group: 1/N on each frame's centre tap, blend 0; weights zero
            head = self.unet.head
            nn.init.zeros_(head.weight)
            with torch.no_grad():
                group = torch.zeros(config.group_outputs)
                taps = group[: n * k * k].view(n, k, k)
                taps[:, k // 2, k // 2] = 1.0 / n
                head.bias.copy_(group.repeat(config.kernel_groups))
        self.gate = RobustGate() if config.robust_gate else None
        # per plane, from its own evidence (and its own brightness with brightness_input)
        self.agree = AgreementBlend(brightness=config.brightness_input) if config.agreement_blend else None

    def check_input(self, burst: torch.Tensor, noise_map: torch.Tensor) -> None:
        c, n = self.config.planes, self.config.frames
        if not isinstance(burst, torch.Tensor) or burst.ndim != 5 or burst.shape[1:3] != (c, n):
            shape = tuple(burst.shape) if hasattr(burst, "shape") else type(burst).__name__
            raise BurstKPNError(f"expected a burst of shape (B, {c}, {n}, H, W), got {shape}")
        b, _, _, h, w = burst.shape
        if noise_map is None or tuple(noise_map.shape) != (b, c, h, w):
            got = None if noise_map is None else tuple(noise_map.shape)
            raise BurstKPNError(f"a planar model needs noise maps of shape ({b}, {c}, {h}, {w}), got {got}")

    def network(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, N, H, W) + (B, C, H, W) [+ valid (B, N)] -> head output (B, G·outputs, H, W), padded and cropped back."""
        self.check_input(burst, noise_map)
        b, c, n, h, w = burst.shape
        parts = [burst.reshape(b, c * n, h, w), noise_map.to(burst.dtype)]
        if self.config.variable_frames:
            flags = torch.ones(b, n, device=burst.device) if valid is None else valid.to(burst.device)
            parts.append(flags[:, :, None, None].expand(b, n, h, w).to(burst.dtype))
        if self.config.difference_inputs:
            parts.append(guide_mismatch(burst, noise_map, valid, self.config).to(burst.dtype))
        x = torch.cat(parts, dim=1)
        return self.unet(pad_to_multiple(x, self.unet.multiple))[..., :h, :w]

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor,
                valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        raw = self.network(burst, noise_map, valid)
        b, c, n, h, w = burst.shape
        k, g = cfg.kernel_size, cfg.kernel_groups
        raw = raw.reshape(b, g, cfg.group_outputs, h, w)
        kernels = raw[:, :, : n * k * k].reshape(b, g, n, k, k, h, w).expand(b, c, n, k, k, h, w)
        blend = raw[:, :, -1].expand(b, c, h, w) if cfg.mean_blend else None
        output, extra = merge_planes(burst, kernels, noise_map, valid if cfg.variable_frames else None,
                                     self.gate, cfg.normalize_kernels, blend, cfg.dc_bound, reuse_kernels=True,
                                     agree=self.agree)
        return {"output": output, **extra}


def merge_planes(burst: torch.Tensor, kernels: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                 gate: nn.Module | None = None, normalize: bool = False,
                 blend: torch.Tensor | None = None, dc_bound: float = 0.0,
                 reuse_kernels: bool = False, agree: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The grayscale KPN's kernel stage on each plane: planes folded into the batch.

    burst (B, C, N, H, W), kernels (B, C, N, K, K, H, W), noise_map (B, C, H, W), valid (B, N) or None,
    blend (B, C, H, W) raw head output or None, agree an `AgreementBlend` or None -> (output (B, C, H, W),
    {per_frame, kernels[, gate][, blend][, agreement]}); ``dc_bound``: as ModelConfig.dc_bound (with ``normalize``).
    ``reuse_kernels``: ``kernels`` is the caller's scratch (the head's output), which normalisation may overwrite
    outside autograd (`normalize_kernel_sum`).
    """
    b, c, n, h, w = burst.shape
    k = kernels.shape[3]
    flat = burst.reshape(b * c, n, h, w)
    sigma = noise_map.reshape(b * c, h, w)
    valid_flat = None if valid is None else valid.to(burst.device).repeat_interleave(c, dim=0)
    output, extra = merge_frames(flat, kernels.reshape(b * c, n, k, k, h, w), sigma, valid_flat, gate, normalize,
                                 dc_bound, reuse_kernels)
    output, blends = blend_toward_mean(output, flat, sigma, valid_flat,
                                       None if blend is None else blend.reshape(b * c, h, w), agree)
    result = {name: value.reshape(b, c, *value.shape[1:]) for name, value in {**extra, **blends}.items()}
    return output.reshape(b, c, h, w), result


def build_planar(config: PlanarConfig) -> PlanarKPN:
    """The planar network ``config`` describes, freshly initialised."""
    return PlanarKPN(config)


def planar_from_gray(gray: nn.Module, planes: int = 4, shared_kernels: bool = False,
                     align_planes: tuple[int, ...] = ()) -> PlanarKPN:
    """A joint model started from a grayscale `KPN` (same config but the planes).

    The first convolution is spread over the planes: each plane's frame i gets the gray weight of frame i
    divided by the number of planes, likewise each plane's noise map; validity and mismatch maps keep theirs. Every
    other layer is copied; the kernel head is replicated per plane (once with ``shared_kernels``), the
    robustness gate copied. On a burst whose planes are all equal the joint model's output is the gray
    model's on each plane.
    """
    gray = unwrap(gray)
    if not isinstance(gray, KPN) or type(gray.config) is not ModelConfig:
        raise BurstKPNError(f"planar_from_gray needs a grayscale KPN, got {type(gray).__name__}")
    if gray.config.kind != "kpn" or gray.config.coarse_scales:
        raise BurstKPNError("planar_from_gray needs a kpn without a coarse stage")
    config = PlanarConfig.from_model(gray.config, planes, shared_kernels, align_planes)
    model = PlanarKPN(config)
    n, c = config.frames, config.planes
    state = gray.state_dict()
    target = model.state_dict()
    first = FIRST_CONV
    grown = {}
    for name, value in state.items():
        if name not in target:
            raise BurstKPNError(f"planar_from_gray: unexpected tensor {name}")
        if name == first:
            weight = torch.zeros_like(target[name])
            frames_w, noise_w, rest = value[:, :n], value[:, n : n + 1], value[:, n + 1 :]
            weight[:, : c * n] = (frames_w / c).repeat(1, c, 1, 1)
            weight[:, c * n : c * n + c] = (noise_w / c).repeat(1, c, 1, 1)
            weight[:, c * n + c :] = rest  # validity and mismatch maps: the same inputs in both models
            grown[name] = weight
        elif name in ("unet.head.weight", "unet.head.bias"):
            grown[name] = value.repeat(config.kernel_groups, *([1] * (value.ndim - 1)))
        else:
            grown[name] = value
        if grown[name].shape != target[name].shape:
            raise BurstKPNError(f"planar_from_gray: cannot fit {name} {tuple(value.shape)} into {tuple(target[name].shape)}")
    missing = set(target) - set(grown)
    if missing:
        raise BurstKPNError(f"planar_from_gray: no weights for {sorted(missing)}")
    model.load_state_dict(grown)
    model.info = {}
    return model.train(gray.training)


def guide_mismatch(burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                   config: PlanarConfig) -> torch.Tensor:
    """(B, C, N, H, W) planes, (B, C, H, W) noise std -> (B, N, H, W): the grayscale KPN's mismatch maps
    (`models.kpn.mismatch_maps`) of each guide (green) plane with its own noise, averaged. Each plane's
    noise is independent, so a matching frame reads about log 2 as in the grayscale model (a map of the
    planes' mean would read less), and on equal planes it is the grayscale model's map."""
    planes = list(config.guide_planes)
    maps = [mismatch_maps(burst[:, p], noise_map[:, p : p + 1], valid) for p in planes]
    return torch.stack(maps).mean(dim=0)


def guide(burst: torch.Tensor, config: PlanarConfig) -> torch.Tensor:
    """(B, C, N, H, W) -> (B, N, H, W): the mean of the guide (green) planes."""
    return burst[:, list(config.guide_planes)].mean(dim=1)


def predict_planar(model: nn.Module, burst: torch.Tensor, sigma_read, sigma_shot, amp: bool = False,
                   valid: torch.Tensor | None = None, shifts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Denoise a batch of planar bursts with the preprocessing the model's config names (`models.kpn.predict`
    for planes).

    burst (B, C, n, H, W) linear, noisy planes; sigma_read, sigma_shot: floats or (B,) tensors (the noise of
    each plane's pixels). n > N keeps the reference and the N-1 frames whose green mean aligns best
    (`burstkpn.align.select_frames`); 1 <= n < N needs ``variable_frames``. ``valid`` (B, N) marks missing
    frames of full-length training bursts. Pre-alignment: one set of global shifts from the green mean
    (or ``shifts`` (B, n, 2) given, in plane pixels), the same warp on every plane. Returns the model's dict
    plus ``burst`` (B, C, N, H, W) as the network saw it, ``valid`` (B, N), ``frames`` (B, N) and, when
    pre-aligned, ``shifts`` (B, N, 2).
    """
    config = unwrap(model).config
    if not isinstance(burst, torch.Tensor) or burst.ndim != 5 or burst.shape[1] != config.planes:
        shape = tuple(burst.shape) if hasattr(burst, "shape") else type(burst).__name__
        raise BurstKPNError(f"expected a burst of shape (B, {config.planes}, N, H, W), got {shape}")
    burst = burst.float()
    b, c, n, h, w = burst.shape
    frames = torch.arange(n, device=burst.device).expand(b, n)
    if shifts is not None:
        shifts = check_shifts(shifts, config, b, n, burst.device)
    if n > config.frames:
        from burstkpn.align import select_frames

        frames = select_frames(guide(burst, config), config.frames)
        burst = burst.gather(2, frames[:, None, :, None, None].expand(b, c, -1, h, w))
        if shifts is not None:
            shifts = shifts.gather(1, frames[:, :, None].expand(-1, -1, 2))
        n = config.frames
    if n < config.frames and not config.variable_frames:
        raise BurstKPNError(f"this model takes bursts of exactly {config.frames} frames (got {n}); "
                            "a model trained with variable_frames takes 1 to its frame count")
    valid = torch.ones(b, n, device=burst.device) if valid is None else valid.to(burst.device).float()
    if n == config.frames and bool((valid < 1).any()):
        burst = torch.where(valid[:, None, :, None, None] > 0, burst, burst[:, :, :1])
    result_shifts = {}
    unaligned, plane_shifts = burst.reshape(b * c, n, h, w), None
    if config.prealign != "none":
        from burstkpn.align import align_global, estimate_global_shifts

        with torch.no_grad():
            if shifts is None:
                shifts = estimate_global_shifts(guide(burst, config))
            flat, plane_shifts = align_global(unaligned, integer=config.prealign == "global-integer",
                                              shifts=shifts.repeat_interleave(c, dim=0))
        burst, shifts = flat.reshape(b, c, n, h, w), plane_shifts[::c]
        result_shifts = {"shifts": shifts}
    clipped = clip_indicators(unaligned, plane_shifts)  # (B·C, n, H, W): each plane's own frames
    if n < config.frames:
        missing = config.frames - n
        burst = torch.cat([burst, burst.new_zeros(b, c, missing, h, w)], dim=2)
        valid = torch.cat([valid, valid.new_zeros(b, missing)], dim=1)
        frames = torch.cat([frames, frames.new_full((b, missing), -1)], dim=1)
        if result_shifts:
            result_shifts["shifts"] = torch.cat([shifts, shifts.new_zeros(b, missing, 2)], dim=1)
    if bool((valid < 1).any()):
        burst = burst * valid[:, None, :, None, None]
    sr = torch.as_tensor(sigma_read, dtype=torch.float32, device=burst.device).reshape(-1, 1, 1, 1)
    ss = torch.as_tensor(sigma_shot, dtype=torch.float32, device=burst.device).reshape(-1, 1, 1, 1)
    if sr.shape[0] not in (1, b) or ss.shape[0] not in (1, b):
        raise BurstKPNError(f"sigma_read/sigma_shot must be scalars or have {b} values")
    noise_map = noise_std_map(burst[:, :, 0], sr, ss)  # (B, C, H, W): each plane's noisy reference
    with torch.autocast(burst.device.type, dtype=torch.bfloat16, enabled=amp):
        result = model(burst, noise_map, valid if config.variable_frames else None)
    if clipped is not None:  # each plane held at white where most of its own frames clip (one CFA plane may clip first)
        result["output"] = hold_saturation(result["output"].reshape(b * c, h, w), clipped,
                                           valid.repeat_interleave(c, dim=0)).reshape(b, c, h, w)
    return {**result, "burst": burst, "valid": valid, "frames": frames, **result_shifts}


def predict_per_plane(gray: nn.Module, burst: torch.Tensor, sigma_read, sigma_shot, valid: torch.Tensor | None = None,
                      shifts: torch.Tensor | None = None) -> torch.Tensor:
    """The per-plane path on a batch: a grayscale model (`models.kpn.predict`) on each plane, planes folded into the
    batch. burst (B, C, n, H, W); sigma_read, sigma_shot floats or (B,); valid (B, n) or None; ``shifts`` (B, n, 2):
    one pre-alignment for every plane (e.g. a joint model's, from the green planes, as `denoise` guides the
    per-plane path), None: each plane aligns itself -> output (B, C, H, W)."""
    b, c, n, h, w = burst.shape

    def per_plane(value) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32, device=burst.device).reshape(-1).expand(b).repeat_interleave(c)

    out = predict(gray, burst.reshape(b * c, n, h, w), per_plane(sigma_read), per_plane(sigma_shot),
                  valid=None if valid is None else valid.repeat_interleave(c, dim=0),
                  shifts=None if shifts is None else shifts.repeat_interleave(c, dim=0))["output"]
    return out.reshape(b, c, h, w)


# --- Bayer layouts ------------------------------------------------------------------------------------


def bayer_to_planes(mosaic: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """(..., H, W) mosaic in ``pattern`` -> (..., 4, H/2, W/2) RGGB planes (R, G, G, B): the mosaic flipped to
    RGGB (as `camera.mosaic`), then `io.raw.bayer_planes`. Shifts measured on the planes are in the flipped frame."""
    from burstkpn.io.raw import bayer_planes

    if pattern not in PATTERN_FLIPS:
        raise BurstKPNError(f"unknown Bayer pattern {pattern!r}: use one of {', '.join(PATTERN_FLIPS)}")
    flips = PATTERN_FLIPS[pattern]
    return np.ascontiguousarray(bayer_planes(np.flip(mosaic, flips) if flips else np.asarray(mosaic)))


def planes_to_bayer(planes: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Inverse of `bayer_to_planes`: (..., 4, h, w) RGGB planes -> (..., 2h, 2w) mosaic in ``pattern``."""
    from burstkpn.io.raw import mosaic_from_planes

    if pattern not in PATTERN_FLIPS:
        raise BurstKPNError(f"unknown Bayer pattern {pattern!r}: use one of {', '.join(PATTERN_FLIPS)}")
    flips = PATTERN_FLIPS[pattern]
    out = mosaic_from_planes(np.asarray(planes))
    return np.ascontiguousarray(np.flip(out, flips)) if flips else out


# --- Losses and validation ------------------------------------------------------------------------------

LOSS_SPACES = ("raw", "processed")


def plane_rgb(planes: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) camera planes -> (B, 3, H, W) camera RGB: RGGB planes as (R, mean of the greens, B), 3 planes as they are."""
    if planes.shape[1] == 4:
        return torch.stack([planes[:, 0], 0.5 * (planes[:, 1] + planes[:, 2]), planes[:, 3]], dim=1)
    if planes.shape[1] == 3:
        return planes
    raise BurstKPNError(f"expected 4 (RGGB) or 3 (RGB) planes, got {planes.shape[1]}")


def process_planes(planes: torch.Tensor, white_level: torch.Tensor, rgb2cam: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Each burst's own processing (`camera.process`) at plane resolution, differentiable, in torch.

    planes (B, C, H, W) linear camera raw at the burst's exposure; white_level (B,); rgb2cam (B, 3, 3);
    gains (B, 3) = (rgb_gain, red_gain, blue_gain) -> (B, 3, H, W) display sRGB in [0, 1]: white level
    divided out, `plane_rgb` (instead of demosaicing), white balance, clip, colour correction, clip, the
    safe 2.2 gamma, the smoothstep tone curve.
    """
    with torch.autocast(planes.device.type, enabled=False):
        x = planes.float() / white_level.float().reshape(-1, 1, 1, 1)
        rgb = plane_rgb(x)
        g = gains.float()
        wb = g[:, :1] * torch.stack([g[:, 1], torch.ones_like(g[:, 1]), g[:, 2]], dim=1)
        cam = (rgb * wb[:, :, None, None]).clamp(0.0, 1.0)
        cam2rgb = torch.linalg.inv(rgb2cam.double()).float()
        linear = torch.einsum("bij,bjhw->bihw", cam2rgb, cam).clamp(0.0, 1.0)
        display = linear.clamp(min=1e-8) ** (1.0 / 2.2)
        return 3.0 * display**2 - 2.0 * display**3


def _image_loss(diff: torch.Tensor, cfg) -> torch.Tensor:
    """(B, C, H, W) display-space differences -> (B,): weighted MSE + mean |∇ diff| (x, y), over the planes."""
    if cfg.border:
        diff = diff[..., cfg.border : -cfg.border, cfg.border : -cfg.border]
    l2 = diff.square().mean(dim=(-3, -2, -1))
    grad = (diff[..., :, 1:] - diff[..., :, :-1]).abs().mean(dim=(-3, -2, -1)) + \
        (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean(dim=(-3, -2, -1))
    return cfg.l2_weight * l2 + cfg.gradient_weight * grad


def planar_loss(result: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], step: int, cfg,
                space: str = "raw") -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of a planar model's result on a batch of the colour stream.

    ``space`` "raw": the grayscale loss (`losses.total_loss`: sRGB-curve space, white level divided out) on
    every plane of linear camera raw, planes folded into the batch (so with ``reduction = "log"`` each plane
    of each burst counts by its relative error), the annealed per-frame term likewise. "processed": ℓ on
    the burst's own processing (`process_planes`, half resolution for Bayer) of output and clean, over all
    three channels per burst; the per-frame term (if annealed) stays in raw. ``cfg``: a `LossConfig`
    (``border`` in plane pixels).
    """
    from burstkpn.losses import anneal_weight, basic_loss, total_loss

    if space not in LOSS_SPACES:
        raise BurstKPNError(f"loss space must be one of {', '.join(LOSS_SPACES)}, got {space!r}")
    out, clean, wl = result["output"], batch["clean"], batch["white_level"]
    b, c, h, w = out.shape
    folded = {"output": out.reshape(b * c, h, w)}
    if "per_frame" in result:
        folded["per_frame"] = result["per_frame"].reshape(b * c, -1, h, w)
    wl_flat = wl.reshape(b).repeat_interleave(c)
    if space == "raw":
        return total_loss(folded, clean.reshape(b * c, h, w), wl_flat, step, cfg)
    with torch.autocast(out.device.type, enabled=False):
        diff = (process_planes(out.float(), wl, batch["rgb2cam"], batch["gains"])
                - process_planes(clean.float(), wl, batch["rgb2cam"], batch["gains"]))
        losses = _image_loss(diff, cfg)
        loss = losses.clamp_min(1e-12).log().mean() if cfg.reduction == "log" else losses.mean()
    parts = {"loss_burst": float(loss.detach())}
    weight = anneal_weight(step, cfg)
    if weight > 0 and "per_frame" in folded:  # as `total_loss`: Σ_i ℓ(N·f_i) over the planes' filtered frames
        per_frame = folded["per_frame"]
        n = per_frame.shape[1]
        frames_loss = n * basic_loss(n * per_frame.reshape(-1, h, w), clean.reshape(b * c, h, w).repeat_interleave(n, dim=0),
                                     wl_flat.repeat_interleave(n), cfg)
        parts["loss_per_frame"] = float(frames_loss.detach())
        loss = loss + weight * frames_loss
    parts["anneal_weight"] = weight
    return loss, parts


def plane_border(planes: int) -> int:
    """The metric's border in plane pixels: the paper's 8 px of the image (4 on half-resolution Bayer planes)."""
    from burstkpn.metrics import BORDER

    return BORDER // 2 if planes == 4 else BORDER


def planes_psnr(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int | None = None) -> float:
    """PSNR (dB) over all planes of one burst, (C, H, W) linear, in the paper's protocol (sRGB curve, white
    level divided out, clipped, data range 1), ``border`` plane pixels cropped (default `plane_border`)."""
    from burstkpn.metrics import to_display

    border = plane_border(estimate.shape[0]) if border is None else border
    a = np.stack([to_display(p, white_level, border) for p in clean])
    e = np.stack([to_display(p, white_level, border) for p in estimate])
    mse = float(np.mean((a - e) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def validate_planar(model: nn.Module, batches: list[dict], amp: bool) -> float:
    """Mean `planes_psnr` of the model's output over fixed validation batches of the colour stream
    (`metrics.mean_finite`)."""
    core = unwrap(model)
    was_training = core.training
    core.eval()
    scores = []
    with torch.no_grad():
        for batch in batches:
            out = predict_planar(core, batch["burst"], batch["sigma_read"], batch["sigma_shot"], amp=amp,
                                 valid=batch["valid"])["output"]
            for est, clean, wl in zip(out.float().cpu().numpy(), batch["clean"].cpu().numpy(), batch["white_level"].cpu().numpy()):
                scores.append(planes_psnr(est, clean, float(wl)))
    core.train(was_training)
    return mean_finite(scores)


__all__ = [
    "GREEN_PLANES", "LOSS_SPACES", "PlanarConfig", "PlanarKPN", "bayer_to_planes", "build_planar", "merge_planes",
    "planar_from_gray", "planar_loss", "predict_per_plane", "plane_border", "plane_rgb", "planes_psnr", "planes_to_bayer",
    "predict_planar", "process_planes", "validate_planar",
]
