"""The networks on the U-Net (METHOD §2): KPN, σ-blind KPN and the direct prediction network,
their configuration, and `predict`, the one place where a burst is prepared for a model.

A model carries its own preprocessing in its config: optional global pre-alignment of the
frames (`burstkpn.align.align_global`) and the noise map from the reference frame. Training,
evaluation and denoising all go through `predict`, so they cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from burstkpn.errors import BurstKPNError
from burstkpn.kernels import apply_kernels
from burstkpn.models.unet import UNet, pad_to_multiple
from burstkpn.noise import noise_std_map

KINDS = ("kpn", "kpn-blind", "dpn")
INITS = ("mean", "random")
PREALIGNS = ("none", "global", "global-integer")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and preprocessing of a burst denoiser.

    Defaults follow the authors' released code: widths 64-128-256, three 3x3 convs per level,
    kernels predicted at half resolution and upsampled (2.69M parameters at N=8, K=5); the paper's
    figure used widths (64, 128, 256, 512, 512) at full resolution. ``init="mean"`` makes an
    untrained KPN (or a residual DPN) output the mean of the (pre-aligned) frames: the kernel head's
    weights start at zero and its bias at 1/N on each frame's centre tap.
    """

    kind: str = "kpn"  # "kpn" | "kpn-blind" (no noise map) | "dpn" (direct prediction)
    frames: int = 8  # N
    kernel_size: int = 5  # K (KPN only)
    widths: tuple[int, ...] = (64, 128, 256)  # per U-Net level, full resolution first
    convs_per_level: int = 3
    half_res_output: bool = True
    init: str = "mean"  # "mean" | "random" (PyTorch's default initialisation of the head)
    residual: bool = False  # DPN only: predict a correction to the mean of the frames
    # "none" | "global" (phase-correlation alignment + bilinear warp before the network) | "global-integer"
    # (the same shifts rounded: frames moved by whole pixels, the sub-pixel rest left to the kernels)
    prealign: str = "none"
    # Bursts of 1..frames frames: missing frames are zero, flagged by one validity channel per frame,
    # and their kernels are forced to zero (see `validity_scale`).
    variable_frames: bool = False
    # Mismatch inputs: per alternate frame, log(1 + local mean of (frame - reference)^2 / (2 sigma^2)),
    # the evidence HDR+'s robust merge uses, so the network can see where a frame disagrees.
    difference_inputs: bool = False
    # Coarse spatial stage (KPN only): for each scale s, a K x K kernel with taps s px apart applied to the
    # merged frame blurred by an s x s box; adds K·s reach where noise needs spatial averaging.
    # Its head starts at zero, so a model grown with it computes what it did before.
    coarse_scales: tuple[int, ...] = ()
    # Learned robustness gate (KPN only): each frame's kernel is scaled by its trust g_i in (0, 1), a small
    # per-pixel network of that frame's mismatch with the reference (HDR+'s robust merge, learned), and
    # all by one factor that keeps the kernels' total weight (`gate_scale`), so a frame that disagrees is
    # down-weighted and the others take its share. Equal trust everywhere (g_i = 1/2 at first) changes
    # nothing, so a model grown with it computes what it did before.
    robust_gate: bool = False
    # Kernel normalisation (KPN only): each pixel's kernels are divided by their sum over frames and taps,
    # so the output's DC gain is exactly 1 (a flat region keeps its brightness; no kernel-sum jitter).
    normalize_kernels: bool = False
    # Bounded DC correction (with normalize_kernels): the kernels' own sum s may still move the output, by
    # (s - 1)·(normalised output) clipped to +-dc_bound·sigma (the noise map). Where noise is high the model
    # keeps the gamma-space bias the paper's free kernel sums learn (normalising them alone cost the shipped
    # kpn 0.6-3.1 dB on Table 1; bounded at 1 sigma, 0.0-0.1 dB); at base ISO a mis-predicted sum cannot
    # shift a clean frame's brightness by more than its noise.
    dc_bound: float = 0.0
    # Blend toward the mean (KPN only): one more head output b in [0, 1] per pixel, and
    # output = (1 - b)·kernels' output + b·mean of the frames, so a burst whose frames agree can be merged
    # exactly by the mean (what the kernels only approximate). b = 0 at first (its head weights are zero).
    mean_blend: bool = False
    # Agreement blend (KPN only): output = (1 - b)·kernels' output + b·mean of the frames, with b in [0, 1] from a
    # small per-pixel network of the evidence that the mean is right there (`AgreementBlend`: how well the frames
    # agree with the reference, how far the kernels' output is from the mean in units of the mean's noise, the
    # noise level). Unlike ``mean_blend`` it does not come from the U-Net's head, so it can be fitted on a frozen
    # network (``trainable = ["agree."]``) that keeps what it computes everywhere the blend stays shut.
    # b = 0 at first: a model grown with it computes what it did before.
    agreement_blend: bool = False
    # The agreement blend also sees how much pre-alignment resampled the frames (KPN with agreement_blend and a
    # pre-alignment): per burst, the mean over the other frames of f(1 - f) summed over both axes, f the
    # fractional part of the frame's shift. Whole-pixel shifts (static, tripod, whole-pixel shake) give 0 and a
    # sharp mean; fractional ones (the paper's motion, handheld) a mean the bilinear warp has softened. Its
    # weights start at zero: grown onto a fitted blend it computes what that blend did.
    resampling_input: bool = False
    # The agreement blend also sees the local brightness (log10 of the 5x5 mean of the frames' mean, linear, white
    # level 1): the metric and the loss are in gamma space, whose slope near black amplifies the mean's noise, and
    # the other inputs are scale-free ratios to the noise. Zero weights at first, like resampling_input.
    brightness_input: bool = False
    # The agreement blend moves the output toward the frames' mean smoothed in space, not only the plain mean: for each
    # Gaussian std s (px) here, one more blend output w_s in [0, 1], and the target becomes
    # target <- target + w_s·(G_s ⊛ mean - target), in order (nested, so it stays between the mean and the most
    # smoothed one). Two more blend inputs say how much detail the mean holds: log(1 + local variance of the mean /
    # the mean's noise variance) over 3x3 and 5x5 (about log 2 on a flat patch). A burst whose frames line up
    # averages to the mean, whose noise then wants the spatial denoising the kernels give a misaligned one; on
    # static base-ISO bursts the mean smoothed by s = 0.3-0.8 px gains 0.9-1.7 dB over it (the shipped kernels lose
    # 1.7 to it there). Zero weights at first: a model grown with it computes what it did before.
    smoothed_mean: tuple[float, ...] = ()
    # The agreement blend also moves the output toward the reference frame, by one more output r in [0, 1] (after the
    # blend toward the mean): where the other frames disagree with the reference and the kernels' merge is worse than
    # the reference alone, the reference is the unbiased estimate left (HDR+'s merge falls back to it the same way).
    # Short bursts need it: a 2-frame burst with a fraction-of-a-pixel offset has a soft mean and, for a model trained
    # mostly on 8 frames, kernels that blur. r = 0 at first: a model grown with it computes what it did before.
    reference_blend: bool = False
    # Noise gain (KPN only): the noise map the network sees is the true one times g = exp(r) per pixel, r from a small
    # per-pixel network of the evidence that frames agree (`NoiseGain`: the mismatch features of the agreement blend,
    # the noise level, the brightness and the mean's detail). The kernels learnt that a quiet burst is a misaligned
    # one, and trust its reference: told 2-5x the true noise, the shipped kpn gains 1.4-1.8 dB on static base-ISO
    # bursts and loses 1-5 dB on dark or moving ones, so the gain must come from the frames, not from a constant.
    # The blend and the gate keep the true noise. r = 0 at first: a model grown with it computes what it did before.
    noise_gain: bool = False
    # The noise gain also sees how much pre-alignment resampled the frames (`resampling_softness`, as resampling_input
    # gives the blend): whole-pixel shifts agree without having been softened. Zero weights at first.
    gain_resampling: bool = False
    # A last spatial stage of this kernel size (KPN only; 0: none): output <- output + s·(k ⊛ output - output), k a
    # per-pixel K×K kernel (non-negative, summing to one) and s in [-1.5, 1.5] per pixel, both from a small conv net
    # over the output's detail in units of the noise left in it (`SpatialRefine`, `output_noise`: from the kernels
    # and the blends). Where frames line up, the kernels' merge is near the mean, whose remaining noise wants the
    # spatial denoising that BM3D on the merged frames gives it (on static base-ISO bursts 1.9 dB over the mean, the
    # kernels 0.5-1.4). s = 0 at first: a grown model is unchanged.
    refine: int = 0
    # The last spatial stage also reads the U-Net's last decoder features (`UNet.forward_features`, widths[0] maps,
    # or widths[1] upsampled with half_res_output): what the whole burst says about the structure around each pixel, over the U-Net's
    # receptive field, where the stage's own inputs see a few pixels of the noisy merge. Zero weights at first.
    refine_context: bool = False
    # The width of the last spatial stage's three hidden layers.
    refine_hidden: int = 32
    # The last spatial stage also moves the output toward its non-local means over a window of this size (0: none;
    # `nonlocal_means`: 5x5 patches, each neighbour weighted by its patch's distance against a bandwidth h per
    # pixel), by a second strength; h and the strength come from the stage's net. Where frames line up, what is
    # left is the spatial denoising of a high-SNR image, which BM3D on the merge does with similar patches from
    # further than a 5x5 kernel reaches. The strength is 0 at first: a grown model is unchanged.
    refine_search: int = 0
    # The last spatial stage also moves the output toward an empirical Wiener filter of it in a sliding P x P DCT
    # (0: none; P here; `dct_wiener`): each patch's coefficients of the stage's input scaled by p²/(p² + λ_k σ²), p the
    # same coefficient of the stage's own estimate (its kernel and non-local parts) and λ_k a learnt factor per
    # coefficient (1 at first), the patches put back with BM3D's weights, by a third strength from the stage's net.
    # BM3D's second step, without its block matching: a transform's sparsity is a prior no per-pixel kernel has, and
    # on the bright aligned bursts BM3D on the merge still leads by 0.6-0.9 dB. The strength is 0 at first.
    refine_wiener: int = 0
    # The Wiener filter reads the frames' mean (noise std sigma/sqrt(n)) in place of the stage's input, and the stage's
    # net reads two more maps: how far the mean is from that input, in units of their noise (3x3 and 7x7 windows).
    # The filter assumes white noise: a merge's is spread by its kernels (measured offline on the shipped weights,
    # static s4 gbase: 48.52 dB filtering the merge, 49.46 filtering the mean, bm3d-merged 49.35), while the mean of
    # pre-aligned frames keeps it white; where the frames disagree the net learns to leave the filter out.
    refine_wiener_mean: bool = False
    # The Wiener filter's patches every this many pixels in both directions (BM3D's step; 1: at every pixel). Measured
    # on the shipped default, not refitted (scripts/experiments/wiener_stride.py): step 2 costs 0.02 dB on the sweep
    # grid's mean and takes 17 % off the network's time on a 480² tile; steps 3 and 4 cost more and save no more.
    refine_wiener_step: int = 1

    def __post_init__(self) -> None:
        for name, value, allowed in (("kind", self.kind, KINDS), ("init", self.init, INITS),
                                     ("prealign", self.prealign, PREALIGNS)):
            if value not in allowed:
                raise BurstKPNError(f"model {name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.frames < 1:
            raise BurstKPNError(f"model frames must be >= 1, got {self.frames}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise BurstKPNError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if not self.widths or min(self.widths) < 1 or self.convs_per_level < 1:
            raise BurstKPNError(f"widths must be positive and convs_per_level >= 1, got {self.widths}, {self.convs_per_level}")
        if any(s < 2 or s % 2 == 0 for s in self.coarse_scales) or (self.coarse_scales and self.kind == "dpn"):
            raise BurstKPNError(f"coarse_scales must be odd integers >= 2 on a KPN, got {self.coarse_scales} on {self.kind}")
        for name in ("difference_inputs", "robust_gate", "agreement_blend"):
            if getattr(self, name) and not self.uses_noise_map:
                raise BurstKPNError(f"{name} needs the noise map: not available on kpn-blind")
        if self.gain_resampling and not (self.noise_gain and self.prealign != "none"):
            raise BurstKPNError("gain_resampling is an input of the noise gain after a pre-alignment: it needs noise_gain "
                                "and prealign global or global-integer")
        if self.noise_gain and self.kind != "kpn":
            raise BurstKPNError(f"noise_gain scales the noise map a KPN's kernels see: a KPN only, got {self.kind!r}")
        if self.refine and (self.refine < 3 or self.refine % 2 == 0 or self.kind != "kpn"):
            raise BurstKPNError(f"refine is a KPN's last spatial stage, an odd kernel size >= 3, got {self.refine} on {self.kind}")
        if self.refine_search and (not self.refine or self.refine_search < 3 or self.refine_search % 2 == 0):
            raise BurstKPNError(f"refine_search is a window of the last spatial stage: an odd size >= 3 with refine, got "
                                f"{self.refine_search} with refine = {self.refine}")
        if self.refine_wiener and (not self.refine or self.refine_wiener < 2):
            raise BurstKPNError(f"refine_wiener is a DCT patch size of the last spatial stage: >= 2 with refine, got "
                                f"{self.refine_wiener} with refine = {self.refine}")
        if not 1 <= self.refine_wiener_step <= max(self.refine_wiener, 1):
            raise BurstKPNError(f"refine_wiener_step is the Wiener filter's patch step: 1 to its patch size "
                                f"({self.refine_wiener}), got {self.refine_wiener_step}")
        if self.refine_wiener_mean and not self.refine_wiener:
            raise BurstKPNError("refine_wiener_mean is the input of the last stage's Wiener filter: it needs refine_wiener")
        if self.refine_hidden < 1:
            raise BurstKPNError(f"refine_hidden must be positive, got {self.refine_hidden}")
        if self.refine_context and not self.refine:
            raise BurstKPNError("refine_context is an input of the last spatial stage: it needs refine")
        for name in ("robust_gate", "normalize_kernels", "mean_blend", "agreement_blend"):
            if getattr(self, name) and self.kind != "kpn":
                raise BurstKPNError(f"{name} acts on predicted kernels: a KPN only")
        if self.smoothed_mean and (not self.agreement_blend or min(self.smoothed_mean) <= 0):
            raise BurstKPNError(f"smoothed_mean is a target of the agreement blend: it needs agreement_blend and positive "
                                f"Gaussian stds, got {self.smoothed_mean} with agreement_blend = {self.agreement_blend}")
        if self.reference_blend and not self.agreement_blend:
            raise BurstKPNError("reference_blend is an output of the agreement blend: it needs agreement_blend")
        if self.brightness_input and not self.agreement_blend:
            raise BurstKPNError("brightness_input is an input of the agreement blend: it needs agreement_blend")
        if self.resampling_input and not (self.agreement_blend and self.prealign != "none"):
            raise BurstKPNError("resampling_input is an input of the agreement blend after a pre-alignment: it needs "
                                "agreement_blend and prealign global or global-integer")
        if self.dc_bound < 0 or (self.dc_bound > 0 and not self.normalize_kernels):
            raise BurstKPNError(f"dc_bound must be >= 0 and needs normalize_kernels (it bounds what the kernel sum "
                                f"may change), got {self.dc_bound} with normalize_kernels = {self.normalize_kernels}")
        if self.half_res_output and len(self.widths) < 2:
            raise BurstKPNError("half_res_output needs at least 2 U-Net levels")

    @classmethod
    def doubling(cls, base: int, levels: int, **fields) -> ModelConfig:
        """Widths base, 2·base, 4·base, ... over ``levels`` levels."""
        return cls(widths=tuple(base * 2**i for i in range(levels)), **fields)

    @property
    def uses_noise_map(self) -> bool:
        return self.kind != "kpn-blind"


class BurstDenoiser(nn.Module):
    """Common input handling: shape checks, network input, padding to the U-Net's multiple."""

    def __init__(self, config: ModelConfig, out_channels: int):
        super().__init__()
        self.config = config
        # input channels: frames, [noise map], [one validity map per frame], [one mismatch map per frame]; this
        # order lets a model's first convolution become the leading slice of a grown one (`grow_state`)
        in_channels = (config.frames + int(config.uses_noise_map) + config.frames * int(config.variable_frames)
                       + config.frames * int(config.difference_inputs))
        self.unet = UNet(in_channels, out_channels, config.widths, config.convs_per_level, config.half_res_output)

    def check_input(self, burst: torch.Tensor, noise_map: torch.Tensor | None) -> None:
        n = self.config.frames
        if not isinstance(burst, torch.Tensor) or burst.ndim != 4 or burst.shape[1] != n:
            shape = tuple(burst.shape) if hasattr(burst, "shape") else type(burst).__name__
            raise BurstKPNError(f"expected a burst of shape (B, {n}, H, W), got {shape}")
        if self.config.uses_noise_map:
            b, _, h, w = burst.shape
            if noise_map is None or noise_map.shape != (b, 1, h, w):
                got = None if noise_map is None else tuple(noise_map.shape)
                raise BurstKPNError(f"{self.config.kind} needs a noise map of shape ({b}, 1, {h}, {w}), got {got}")

    def network(self, burst: torch.Tensor, noise_map: torch.Tensor | None, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, H, W) [+ (B, 1, H, W)] [+ valid (B, N)] -> U-Net output (B, C_out, H, W), padded and cropped back."""
        x = self.network_input(burst, noise_map, valid)
        h, w = x.shape[-2:]
        return self.unet(pad_to_multiple(x, self.unet.multiple))[..., :h, :w]

    def network_features(self, burst: torch.Tensor, noise_map: torch.Tensor | None,
                         valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """As `network`, also -> the U-Net's last decoder features (B, C, H, W) (`UNet.forward_features`; with
        ``half_res_output`` upsampled as the head's output is)."""
        x = self.network_input(burst, noise_map, valid)
        h, w = x.shape[-2:]
        out, features = self.unet.forward_features(pad_to_multiple(x, self.unet.multiple))
        if self.config.half_res_output:
            features = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)
        return out[..., :h, :w], features[..., :h, :w]

    def network_input(self, burst: torch.Tensor, noise_map: torch.Tensor | None,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
        """The U-Net's input (B, C_in, H, W): frames, [noise map], [validity maps], [mismatch maps]."""
        self.check_input(burst, noise_map)
        parts = [burst, noise_map] if self.config.uses_noise_map else [burst]
        if self.config.variable_frames:
            b, n, h, w = burst.shape
            flags = torch.ones(b, n, device=burst.device) if valid is None else valid.to(burst.device, burst.dtype)
            parts.append(flags[:, :, None, None].expand(b, n, h, w).to(burst.dtype))
        if self.config.difference_inputs:
            parts.append(mismatch_maps(burst, noise_map, valid))
        return torch.cat(parts, dim=1)


class KPN(BurstDenoiser):
    """Kernel prediction network (``kind`` "kpn" or "kpn-blind").

    forward(burst (B, N, H, W) linear, noise_map (B, 1, H, W) or None) -> dict:
      output (B, H, W), per_frame (B, N, H, W) (frame i filtered by its kernel),
      kernels (B, N, K, K, H, W) (linear, no softmax; output = Σ over frames and taps), and with
      ``coarse_scales`` coarse_kernels (B, S, K, K, H, W): output = merged + Σ_s coarse_s ⊛ box_s(merged),
      where merged is the sum of per_frame; with ``mean_blend`` blend (B, H, W): the weight b of the
      frames' mean in the output; with ``agreement_blend`` agreement (B, H, W): the same for `AgreementBlend`; with
      ``noise_gain`` noise_gain (B, H, W): the factor on the noise map the network saw (`NoiseGain`); with ``refine``
      refine (B, H, W): the strength of the last spatial stage (`SpatialRefine`: s, plus s2 with ``refine_search``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, (config.frames + len(config.coarse_scales)) * config.kernel_size**2 + int(config.mean_blend))
        if config.init == "mean":
            head = self.unet.head
            nn.init.zeros_(head.weight)
            with torch.no_grad():
                bias = torch.zeros(config.frames, config.kernel_size, config.kernel_size)
                bias[:, config.kernel_size // 2, config.kernel_size // 2] = 1.0 / config.frames
                head.bias.zero_()  # coarse kernels (if any) start at zero
                head.bias[: bias.numel()].copy_(bias.flatten())
        self.gate = RobustGate() if config.robust_gate else None
        self.agree = (AgreementBlend(resampling=config.resampling_input, brightness=config.brightness_input,
                                     smoothing=config.smoothed_mean, reference=config.reference_blend)
                      if config.agreement_blend else None)
        self.noise_gain = NoiseGain(resampling=config.gain_resampling) if config.noise_gain else None
        context = config.widths[1 if config.half_res_output else 0] if config.refine_context else 0
        self.refine = (SpatialRefine(config.refine, hidden=config.refine_hidden, context=context, search=config.refine_search,
                                     wiener=config.refine_wiener, wiener_mean=config.refine_wiener_mean,
                                     wiener_step=config.refine_wiener_step)
                       if config.refine else None)

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor | None = None,
                valid: torch.Tensor | None = None, shifts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b, n, h, w = burst.shape if burst.ndim == 4 else (0, 0, 0, 0)
        k = self.config.kernel_size
        told = noise_map
        if self.noise_gain is not None:
            gain = self.noise_gain(burst, noise_map, valid if self.config.variable_frames else None, shifts)
            told = noise_map * gain[:, None]
        raw, features = (self.network_features(burst, told, valid) if self.config.refine_context
                         else (self.network(burst, told, valid), None))
        kernels = raw[:, : n * k * k].reshape(b, n, k, k, h, w)
        valid = valid if self.config.variable_frames else None
        sigma = None if noise_map is None else noise_map[:, 0]
        # the head's output is used once: normalisation may divide it in place
        output, result = merge_frames(burst, kernels, sigma, valid, self.gate, self.config.normalize_kernels,
                                      self.config.dc_bound, reuse_kernels=True)
        if self.config.coarse_scales:
            coarse = raw[:, n * k * k : (n + len(self.config.coarse_scales)) * k * k].reshape(b, len(self.config.coarse_scales), k, k, h, w)
            merged = output[:, None]
            for j, scale in enumerate(self.config.coarse_scales):
                output = output + apply_kernels(box_blur(merged, scale), coarse[:, j : j + 1], scale, "replicate")[0]
            result["coarse_kernels"] = coarse
        output, blends = blend_toward_mean(output, burst, sigma, valid, raw[:, -1] if self.config.mean_blend else None,
                                           self.agree, shifts)
        if self.refine is not None:
            mean = mean_sigma = None
            if self.config.refine_wiener_mean:  # the frames' mean and its noise std, sigma / sqrt(frames counted)
                mean = frame_mean(burst, valid)
                mean_sigma = sigma.float() / frame_count(b, n, valid, burst.device).sqrt()[:, None, None]
            output, result["refine"] = self.refine(output, output_noise(result["kernels"], sigma, valid, blends), features,
                                                   mean, mean_sigma)
        if self.noise_gain is not None:
            result["noise_gain"] = gain
        return {"output": output, **result, **blends}


def merge_frames(burst: torch.Tensor, kernels: torch.Tensor, sigma: torch.Tensor | None, valid: torch.Tensor | None,
                 gate: nn.Module | None = None, normalize: bool = False, dc_bound: float = 0.0,
                 reuse_kernels: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A KPN's kernel stage: burst (B, N, H, W), kernels (B, N, K, K, H, W) from the head, sigma (B, H, W) the noise
    std (or None on kpn-blind), valid (B, N) or None -> (output (B, H, W), {per_frame, kernels[, gate]}).

    In order: missing frames' kernels to zero (`validity_scale`), the robustness gate (`gate_scale`), the kernel
    sums divided out (``normalize``), the kernels applied, the bounded DC correction (``dc_bound``). Planar models
    run it with their planes folded into the batch. ``reuse_kernels``: ``kernels`` is the caller's scratch, which
    normalisation may overwrite outside autograd (`normalize_kernel_sum`).
    """
    if valid is not None:
        kernels = kernels * validity_scale(valid).to(kernels.dtype)[:, :, None, None, None, None]
    result = {}
    if gate is not None:
        scale = gate_scale(gate(burst, sigma[:, None], valid), kernels)
        kernels = kernels * scale.to(kernels.dtype)[:, :, None, None]
        result["gate"] = scale
    sums = None
    if normalize:
        sums = kernel_sum(kernels)
        kernels = normalize_kernel_sum(kernels, sums, reuse=reuse_kernels)
    output, per_frame = apply_kernels(burst, kernels)
    if dc_bound > 0:
        output = output + bounded_dc_correction(output, sums, sigma, dc_bound)
    return output, {"per_frame": per_frame, "kernels": kernels, **result}


def blend_toward_mean(output: torch.Tensor, burst: torch.Tensor, sigma: torch.Tensor | None, valid: torch.Tensor | None,
                      blend_raw: torch.Tensor | None = None, agree: nn.Module | None = None,
                      shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """output (B, H, W) of the kernels, burst (B, N, H, W), sigma (B, H, W), valid (B, N) or None -> (output moved
    toward the frames' mean, {[blend][, agreement][, reference]}): by b = `blend_weight` of the head's ``blend_raw``
    (B, H, W) (``mean_blend``), then by a = ``agree``'s weight toward its target (`AgreementBlend`, ``agreement_blend``:
    the mean, or with ``smoothed_mean`` the mean smoothed in space as much as it says; ``shifts`` (B, N, 2) the
    pre-alignment's shifts, for its resampling input), then by r toward the reference frame (``reference_blend``)."""
    if blend_raw is None and agree is None:
        return output, {}
    mean, result = frame_mean(burst, valid), {}
    if blend_raw is not None:
        blend = blend_weight(blend_raw)
        output = output + blend * (mean - output)
        result["blend"] = blend
    if agree is not None:
        agreement, target, reference = agree(burst, sigma[:, None], valid, output, mean, shifts)
        output = output + agreement * (target - output)
        result["agreement"] = agreement
        if reference is not None:
            output = output + reference * (burst[:, 0].float() - output)
            result["reference"] = reference
    return output, result


class DPN(BurstDenoiser):
    """Direct prediction network: the U-Net outputs the denoised reference frame.

    forward(burst (B, N, H, W), noise_map (B, 1, H, W)) -> dict with output (B, H, W).
    With ``residual`` the output is the mean of the frames plus the network's correction.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, 1)
        if config.residual and config.init == "mean":
            nn.init.zeros_(self.unet.head.weight)
            nn.init.zeros_(self.unet.head.bias)

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        output = self.network(burst, noise_map, valid)[:, 0].float()
        if self.config.residual:
            output = output + frame_mean(burst, valid)
        return {"output": output}


def blend_weight(raw: torch.Tensor) -> torch.Tensor:
    """The blend toward the frames' mean from its raw head output: clamped to [0, 1] in the forward pass (exactly
    0, the kernels alone, at first), with the identity's gradient (a straight-through clamp). A plain clamp
    has no gradient once the output leaves [0, 1], and a blend head whose first steps go below 0 never comes
    back (measured: b = 0.000 everywhere after 1,700 steps of configs/kpn-mix.toml)."""
    raw = raw.float()
    return raw + (raw.clamp(0.0, 1.0) - raw).detach()


def frame_mean(burst: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """burst (B, N, H, W) -> (B, H, W) float32: the mean of the frames (of the valid ones when ``valid`` is given)."""
    if valid is None:
        return burst.float().mean(dim=1)
    weights = validity_scale(valid).to(burst.device) / burst.shape[1]
    return (burst.float() * weights[:, :, None, None].float()).sum(dim=1)


def frame_count(batch: int, frames: int, valid: torch.Tensor | None, device) -> torch.Tensor:
    """-> (batch,) float32: the frames a burst counts, all ``frames`` or its valid ones (``valid`` (B, N)), at least 1."""
    if valid is None:
        return torch.full((batch,), float(frames), device=device)
    return valid.float().sum(1).clamp(min=1).to(device)


KERNEL_SUM_FLOOR = 0.05  # a degenerate kernel sum cannot blow a normalised kernel up


def kernel_sum(kernels: torch.Tensor) -> torch.Tensor:
    """kernels (B, N, K, K, H, W) -> (B, H, W) float32: their sum over frames and taps (the output's DC gain),
    floored at `KERNEL_SUM_FLOOR`."""
    with torch.autocast(kernels.device.type, enabled=False):
        return kernels.float().sum(dim=(1, 2, 3)).clamp(min=KERNEL_SUM_FLOOR)


def normalize_kernel_sum(kernels: torch.Tensor, sums: torch.Tensor | None = None, reuse: bool = False) -> torch.Tensor:
    """kernels (B, N, K, K, H, W) -> the same divided, per pixel, by `kernel_sum` (or the given ``sums`` (B, H, W)),
    in float32: the output's DC gain is 1. ``reuse``: divide ``kernels`` in place where that is safe (no autograd,
    float32, not a broadcast view): a fresh tensor of N·K² maps per pixel costs 10x the division itself
    (allocation and first touch; 2.4 s per 12-MP raw tile on 1 thread)."""
    with torch.autocast(kernels.device.type, enabled=False):
        scale = (kernel_sum(kernels) if sums is None else sums)[:, None, None, None]
        if reuse and not torch.is_grad_enabled() and kernels.dtype == torch.float32 and 0 not in kernels.stride():
            return kernels.div_(scale)
        return kernels.float() / scale


def bounded_dc_correction(normalised: torch.Tensor, sums: torch.Tensor, sigma: torch.Tensor, bound: float) -> torch.Tensor:
    """normalised (B, H, W) output of normalised kernels, sums (B, H, W) their sums before (`kernel_sum`),
    sigma (B, H, W) the noise std -> (B, H, W) the free kernels' change of the output, (s - 1)·normalised,
    clipped to +-bound·sigma (ModelConfig.dc_bound)."""
    limit = bound * sigma.float()
    return torch.maximum(torch.minimum(normalised.float() * (sums - 1.0), limit), -limit)


def validity_scale(valid: torch.Tensor) -> torch.Tensor:
    """valid (B, N) in {0, 1} -> (B, N) factors N/n_valid on valid frames, 0 on missing ones.

    Multiplying each frame's kernel by this keeps the mean-initialised model at the mean of the
    frames it was given (any n), and makes a missing frame's kernel exactly zero.
    """
    valid = valid.float()
    return valid * valid.shape[1] / valid.sum(dim=1, keepdim=True).clamp(min=1)


class RobustGate(nn.Module):
    """Per-pixel trust in each frame from its mismatch with the reference.

    forward(burst (B, N, H, W), noise_map (B, 1, H, W) std, valid (B, N) or None) -> trust (B, N, H, W):
    v_i·g_i, with g_i = sigmoid(MLP(mismatch over 5x5 and 11x11, log10 sigma)) shared by all frames (the
    reference reads as a matching frame, log 2) and v the validity flags; `gate_scale` turns it into
    kernel scales.
    """

    SIZES = (5, 11)

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(len(self.SIZES) + 1, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        nn.init.zeros_(self.mlp[2].weight)  # g = 1/2 everywhere at first: scale 1 (or validity_scale)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        b, n, h, w = burst.shape
        with torch.autocast(burst.device.type, enabled=False):
            maps = [mismatch_maps(burst, noise_map, None, size) for size in self.SIZES]
            for m in maps:  # the reference as a frame that matches: the mismatch noise alone gives about log 2
                m[:, 0] = math.log(2)
            log_sigma = (torch.log10(noise_map.float() + 1e-6) + 2).expand(b, n, h, w)  # ~[-2, 1]
            x = torch.stack([*maps, log_sigma], dim=2).reshape(b * n, len(self.SIZES) + 1, h, w)
            g = torch.sigmoid(self.mlp(x)).reshape(b, n, h, w)
            if valid is not None:
                g = g * valid.to(g.device, g.dtype)[:, :, None, None]
            return g


def frame_evidence(burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                   sizes: tuple[int, ...]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The per-pixel evidence that frames agree, shared by `AgreementBlend` and `NoiseGain` (float32, no autograd):
    burst (B, N, H, W), noise_map (B, 1, H, W) std -> ([per size: the mean over the other valid frames of their
    `mismatch_maps`, then the largest], others (B, N): 1 for the frames counted (valid, not the reference),
    sigma2 (B, H, W): the noise variance of the valid frames' mean)."""
    b, n = burst.shape[:2]
    flags = torch.ones(b, n, device=burst.device) if valid is None else valid.to(burst.device).float()
    others = flags.clone()
    others[:, 0] = 0
    count = others.sum(dim=1).clamp(min=1)[:, None, None]
    parts = []
    diff2 = (burst.float() - burst[:, :1].float()) ** 2  # shared by every window size
    for size in sizes:
        maps = mismatch_maps(burst, noise_map, valid, size, diff2=diff2).float()
        parts.append((maps * others[:, :, None, None]).sum(dim=1) / count)
        parts.append(maps.amax(dim=1))
    sigma2 = noise_map.float()[:, 0] ** 2 / flags.sum(dim=1).clamp(min=1)[:, None, None]
    return parts, others, sigma2


def detail_features(mean: torch.Tensor, sigma2: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """mean (B, 1, H, W) float32, sigma2 (B, H, W) its noise variance -> per size, log(1 + the mean's local variance
    over size x size / sigma2) (B, H, W): about log 2 on a flat patch, large on edges and texture."""
    parts = []
    for size in sizes:
        local = box_blur(mean, size)
        variance = (box_blur(mean * mean, size) - local * local)[:, 0].clamp(min=0)
        parts.append(torch.log1p(variance / (sigma2 + 1e-10)))
    return parts


class AgreementBlend(nn.Module):
    """Per-pixel weight of the frames' mean in the output, from the evidence that the mean is right there.

    forward(burst (B, N, H, W), noise_map (B, 1, H, W) std, valid (B, N) or None, output (B, H, W) the kernels'
    output, mean (B, H, W) the frames' mean) -> b (B, H, W) in [0, 1] (`blend_weight`: 0 at first).

    Features (detached: evidence, not something to push on): the mean and the largest over the other frames of
    their mismatch with the reference (`mismatch_maps`, 5x5 and 11x11; about log 2 where a frame agrees up to
    noise), log(1 + local mean of (output - mean)^2 / (sigma^2 / n)) over 5x5 and 11x11 (about log 2 where the
    kernels' output differs from the mean by the mean's own noise, large where they blur or sharpen), and
    log10 sigma; with ``resampling`` the pre-alignment's `resampling_softness`, with ``brightness`` log10 of the
    local mean intensity (`ModelConfig.resampling_input`, `brightness_input`), with ``smoothing`` the mean's detail
    (`DETAIL_SIZES`). Where frames agree the mean is unbiased and has the least noise any equal-weight merge can
    have, so it is what a burst whose frames line up should come out as, up to spatial denoising: ``smoothing``
    (Gaussian stds in px, `ModelConfig.smoothed_mean`) adds that, as one more output per std.
    forward -> (b (B, H, W), target (B, H, W): the mean, or the mean smoothed as the extra outputs say, r (B, H, W) the
    weight of the reference frame after the blend with ``reference`` (`ModelConfig.reference_blend`), else None).
    """

    SIZES = (5, 11)
    DETAIL_SIZES = (3, 5)
    FEATURES = 2 * len(SIZES) + len(SIZES) + 1  # (+ 1 with ``resampling``, + 1 with ``brightness``, + 2 with ``smoothing``)

    def __init__(self, hidden: int = 16, resampling: bool = False, brightness: bool = False,
                 smoothing: tuple[float, ...] = (), reference: bool = False):
        super().__init__()
        self.resampling, self.brightness, self.smoothing = resampling, brightness, tuple(smoothing)
        self.reference = reference
        inputs = self.FEATURES + int(resampling) + int(brightness) + len(self.DETAIL_SIZES) * bool(self.smoothing)
        # outputs: b, one per smoothing std, then r (``reference``): the last, so a grown head extends with zeros
        self.mlp = nn.Sequential(nn.Conv2d(inputs, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 1 + len(self.smoothing) + int(reference), 1))
        nn.init.zeros_(self.mlp[-1].weight)  # b = r = 0 (and the target the plain mean) everywhere at first
        nn.init.zeros_(self.mlp[-1].bias)

    def features(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                 output: torch.Tensor, mean: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, FEATURES [+ 1 resampling] [+ 1 brightness], H, W) float32; ``shifts`` (B, N, 2): the pre-alignment's,
        for the resampling input (`resampling_softness`; None: frames not resampled)."""
        with torch.no_grad(), torch.autocast(burst.device.type, enabled=False):
            b = burst.shape[0]
            parts, others, sigma2 = frame_evidence(burst, noise_map, valid, self.SIZES)
            diff2 = ((output.float() - mean.float()) ** 2)[:, None]
            for size in self.SIZES:
                parts.append(torch.log1p(box_blur(diff2, size)[:, 0] / (sigma2 + 1e-10)))
            parts.append(torch.log10(noise_map.float()[:, 0] + 1e-6) + 2)
            if self.resampling:
                soft = torch.zeros(b, device=burst.device) if shifts is None else resampling_softness(shifts.to(burst.device), others)
                parts.append(soft[:, None, None].expand_as(parts[-1]))
            if self.brightness:
                parts.append(torch.log10(box_blur(mean.float()[:, None], 5)[:, 0].clamp(min=1e-4)))
            if self.smoothing:
                parts += detail_features(mean.float()[:, None], sigma2, self.DETAIL_SIZES)
            return torch.stack(parts, dim=1)

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                output: torch.Tensor, mean: torch.Tensor,
                shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self.features(burst, noise_map, valid, output, mean, shifts)
        with torch.autocast(burst.device.type, enabled=False):
            raw = self.mlp(x)
            target = mean.float()
            for j, std in enumerate(self.smoothing):  # nested: each step stays between the last target and G ⊛ mean
                with torch.no_grad():
                    smoothed = gaussian_blur(mean.float()[:, None], std)[:, 0]
                target = target + blend_weight(raw[:, 1 + j]) * (smoothed - target)
            return blend_weight(raw[:, 0]), target, blend_weight(raw[:, -1]) if self.reference else None


class NoiseGain(nn.Module):
    """Per-pixel factor g on the noise map the network sees (`ModelConfig.noise_gain`).

    forward(burst (B, N, H, W), noise_map (B, 1, H, W) std, valid (B, N) or None) -> g (B, H, W) = exp(r), r clamped to
    [-1, 3] (g = 1 at first: the last layer's weights are zero). Features (detached evidence): the mean and the
    largest over the other frames of their mismatch with the reference (`mismatch_maps`, 5x5 and 11x11), log10 sigma,
    log10 of the local mean of the frames' mean, and the mean's detail, log(1 + its 3x3 and 5x5 local variance /
    its noise variance), and with ``resampling`` the pre-alignment's `resampling_softness` (`ModelConfig.gain_resampling`:
    frames moved by whole pixels agree without having been softened): where every frame agrees and the mean is smooth
    against its noise, a larger g lets the kernels average and smooth as a burst whose frames line up deserves.
    """

    SIZES = (5, 11)
    DETAIL_SIZES = (3, 5)
    FEATURES = 2 * len(SIZES) + 2 + len(DETAIL_SIZES)

    def __init__(self, hidden: int = 16, resampling: bool = False):
        super().__init__()
        self.resampling = resampling
        self.mlp = nn.Sequential(nn.Conv2d(self.FEATURES + int(resampling), hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def features(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                 shifts: torch.Tensor | None = None) -> torch.Tensor:
        """-> (B, FEATURES [+ 1 with ``resampling``], H, W) float32; ``shifts`` (B, N, 2) the pre-alignment's (None:
        frames not resampled)."""
        with torch.no_grad(), torch.autocast(burst.device.type, enabled=False):
            b = burst.shape[0]
            parts, others, sigma2 = frame_evidence(burst, noise_map, valid, self.SIZES)
            parts.append(torch.log10(noise_map.float()[:, 0] + 1e-6) + 2)
            mean = frame_mean(burst.float(), valid)[:, None]
            parts.append(torch.log10(box_blur(mean, 5)[:, 0].clamp(min=1e-4)))
            parts += detail_features(mean, sigma2, self.DETAIL_SIZES)
            if self.resampling:
                soft = torch.zeros(b, device=burst.device) if shifts is None else resampling_softness(shifts.to(burst.device), others)
                parts.append(soft[:, None, None].expand_as(parts[-1]))
            return torch.stack(parts, dim=1)

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None,
                shifts: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(burst, noise_map, valid, shifts)
        with torch.autocast(burst.device.type, enabled=False):
            return torch.exp(self.mlp(x)[:, 0].clamp(-1.0, 3.0))


def output_noise(kernels: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor | None,
                 blends: dict[str, torch.Tensor]) -> torch.Tensor:
    """The noise std left in a KPN's output, were the frames' noise independent with std ``sigma`` (B, H, W):
    kernels (B, N, K, K, H, W) as applied, then each blend toward the frames' mean in ``blends`` ("blend", then
    "agreement", weights (B, H, W)), then the blend toward the reference frame ("reference") -> (B, H, W). In units of
    sigma^2, the merge's variance is the kernels' energy e = sum k^2, its covariance with the mean c/n (c the centre
    taps' sum, n the valid frames) and with the reference c0 (the reference's centre tap); a blend toward the mean by w
    gives var' = (1-w)^2 var + w^2/n + 2w(1-w) cov, cov' = (1-w) cov + w/n and c0' = (1-w) c0 + w/n, one toward the
    reference var' = (1-w)^2 var + w^2 + 2w(1-w) c0. (A smoothed-mean target counts as the mean.)"""
    with torch.no_grad(), torch.autocast(kernels.device.type, enabled=False):
        b, frames, k = kernels.shape[:3]
        n = frame_count(b, frames, valid, kernels.device)[:, None, None]
        var = torch.zeros_like(sigma, dtype=torch.float32)
        for i in range(frames):  # frame by frame: no copy of every kernel at once
            var += kernels[:, i].float().square().sum(dim=(1, 2))
        centre = kernels[:, :, k // 2, k // 2].float()
        cov, cov_ref = centre.sum(1) / n, centre[:, 0]
        for name in ("blend", "agreement"):
            w = blends.get(name)
            if w is not None:
                w = w.float()
                var, cov, cov_ref = (1 - w) ** 2 * var + w**2 / n + 2 * w * (1 - w) * cov, (1 - w) * cov + w / n, (1 - w) * cov_ref + w / n
        w = blends.get("reference")
        if w is not None:
            w = w.float()
            var = (1 - w) ** 2 * var + w**2 + 2 * w * (1 - w) * cov_ref
        return sigma.float() * var.clamp(min=0).sqrt()


class SpatialRefine(nn.Module):
    """The last spatial stage of a KPN (`ModelConfig.refine`).

    forward(output (B, H, W), sigma (B, H, W) the noise std left in it, `output_noise`) -> (refined (B, H, W), strength
    s (B, H, W)): refined = output + s·(k ⊛ output - output), k (B, K, K, H, W) a softmax over the K×K taps,
    s = 1.5·tanh(·), both from a conv net (three 3x3 layers) over log10 sigma, the brightness and the output's
    detail in units of sigma (against its 3x3 and 5x5 local means), and with ``context`` > 0 that many maps of the
    U-Net's last features (`ModelConfig.refine_context`). With ``search`` > 0 (`ModelConfig.refine_search`) the refined
    output moves further, by a second strength s2 = 1.5·tanh(·), toward the output's `nonlocal_means` over a search x search
    window with a bandwidth h = sigma·exp(·) per pixel, both from two more outputs of the net; strength is then s + s2.
    With ``wiener`` > 0 (`ModelConfig.refine_wiener`) it then moves by a third strength s3 = 1.5·tanh(·) (the net's last
    output) toward `dct_wiener` of the stage's input, with the refined output so far as its pilot; strength is then
    s + s2 + s3. With ``wiener_mean`` (`ModelConfig.refine_wiener_mean`) the filter reads the frames' ``mean`` (noise
    std ``mean_sigma``, both (B, H, W)) in place of the stage's input, and the net two more maps after the context:
    log(1 + the local mean square of mean - output over their summed noise variances), 3x3 and 7x7. The last layer's
    weights are zero: s = s2 = s3 = 0 at first (a grown model computes what it did before). ``wiener_step``: the filter's
    patches every that many pixels (`ModelConfig.refine_wiener_step`). Runs in float32: the detail it removes is a few
    thousandths of white."""

    FEATURES = 4

    def __init__(self, size: int, hidden: int = 32, context: int = 0, search: int = 0, wiener: int = 0,
                 wiener_mean: bool = False, wiener_step: int = 1):
        super().__init__()
        self.size, self.context, self.search, self.wiener, self.wiener_mean = size, context, search, wiener, wiener_mean
        self.wiener_step = wiener_step
        self.net = nn.Sequential(nn.Conv2d(self.FEATURES + context + 2 * int(wiener_mean), hidden, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                                 nn.Conv2d(hidden, size * size + 1 + 2 * int(search > 0) + int(wiener > 0), 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        if wiener:  # log λ_k per DCT coefficient: the classical empirical Wiener filter at first
            self.wiener_log_scale = nn.Parameter(torch.zeros(wiener * wiener))
            self.register_buffer("dct_matrix", dct_matrix(wiener), persistent=False)

    @staticmethod
    def features(output: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """-> (B, FEATURES, H, W) float32, detached."""
        with torch.no_grad():
            y, s = output.float()[:, None], sigma.float()[:, None].clamp(min=1e-6)
            parts = [((y - box_blur(y, size)) / s).clamp(-20, 20) for size in (3, 5)]
            parts += [torch.log10(s) + 2, torch.log10(box_blur(y, 5).clamp(min=1e-4))]
            return torch.cat(parts, dim=1)

    @staticmethod
    def mean_features(output: torch.Tensor, sigma: torch.Tensor, mean: torch.Tensor, mean_sigma: torch.Tensor) -> torch.Tensor:
        """-> (B, 2, H, W) float32, detached: log(1 + box(d²) / (sigma² + mean_sigma²)), d = mean - output, over 3x3
        and 7x7: about log 2 where the two differ by their noise alone, far more where the frames disagree."""
        with torch.no_grad():
            d2 = (mean.float() - output.float())[:, None].square()
            v = (sigma.float().square() + mean_sigma.float().square())[:, None].clamp(min=1e-12)
            return torch.cat([torch.log1p(box_blur(d2, size) / v).clamp(max=20) for size in (3, 7)], dim=1)

    def forward(self, output: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor | None = None,
                mean: torch.Tensor | None = None, mean_sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if (context is None) != (self.context == 0) or (context is not None and context.shape[1] != self.context):
            got = None if context is None else tuple(context.shape)
            raise BurstKPNError(f"the last spatial stage reads {self.context} context maps, got {got}")
        if (mean is None or mean_sigma is None) == self.wiener_mean:
            raise BurstKPNError(f"the last spatial stage {'reads' if self.wiener_mean else 'does not read'} the frames' "
                                f"mean and its noise")
        with torch.autocast(output.device.type, enabled=False):
            inputs = self.features(output, sigma)
            if context is not None:
                inputs = torch.cat([inputs, context.float()], dim=1)
            if self.wiener_mean:
                inputs = torch.cat([inputs, self.mean_features(output, sigma, mean, mean_sigma)], dim=1)
            raw = self.net(inputs)
            b, _, h, w = raw.shape
            taps = self.size * self.size
            kernels = torch.softmax(raw[:, :taps], dim=1).reshape(b, 1, self.size, self.size, h, w)
            strength = 1.5 * torch.tanh(raw[:, taps])
            filtered = apply_kernels(output.float()[:, None], kernels, padding="replicate")[0]
            refined = output + strength * (filtered - output)
            if self.search:
                y = output.float()[:, None]
                bandwidth = sigma.float()[:, None].clamp(min=1e-6) * torch.exp(raw[:, taps + 1 : taps + 2].clamp(-5, 5))
                means = nonlocal_means(y, sigma.float()[:, None], bandwidth, self.search)[:, 0]
                second = 1.5 * torch.tanh(raw[:, taps + 2])
                refined = refined + second * (means - output)
                strength = strength + second
            if self.wiener:
                noisy, noise = (mean, mean_sigma) if self.wiener_mean else (output, sigma)
                wiener = dct_wiener(noisy.float()[:, None], refined.float()[:, None], noise.float()[:, None],
                                    self.dct_matrix, self.wiener_log_scale.exp(), self.wiener_step)[:, 0]
                third = 1.5 * torch.tanh(raw[:, -1])
                refined = refined + third * (wiener - refined)
                strength = strength + third
            return refined, strength


def dct_matrix(size: int) -> torch.Tensor:
    """-> (size, size) float32: the orthonormal 1-D DCT-II, row u the u-th basis vector (row 0 constant)."""
    x = torch.arange(size, dtype=torch.float64)
    u = torch.arange(size, dtype=torch.float64)[:, None]
    c = torch.cos(torch.pi * (2 * x + 1) * u / (2 * size)) * torch.where(u == 0, (1 / size) ** 0.5, (2 / size) ** 0.5)
    return c.float()


def patch_dct(image: torch.Tensor, matrix: torch.Tensor, step: int = 1) -> torch.Tensor:
    """image (B, 1, H, W), matrix (P, P) from `dct_matrix` -> (B, P², (H - P) // step + 1, (W - P) // step + 1): the 2-D
    DCT of every P x P patch whose corner is on the ``step`` grid, coefficient (u down, v across) in channel v·P + u.
    Separable (2P multiply-adds per coefficient, not P²)."""
    size = matrix.shape[0]
    across = F.conv2d(image, matrix.reshape(size, 1, 1, size), stride=(1, step))  # channel v
    return F.conv2d(across, matrix.repeat(size, 1).reshape(size * size, 1, size, 1), groups=size, stride=(step, 1))


def patch_idct(coeffs: torch.Tensor, matrix: torch.Tensor, step: int = 1) -> torch.Tensor:
    """The adjoint of `patch_dct`: (B, P², H', W') -> (B, 1, (H' - 1)·step + P, (W' - 1)·step + P), every patch's
    inverse DCT added where the patch sits."""
    size = matrix.shape[0]
    down = F.conv_transpose2d(coeffs, matrix.repeat(size, 1).reshape(size * size, 1, size, 1), groups=size,
                              stride=(step, 1))
    return F.conv_transpose2d(down, matrix.reshape(size, 1, 1, size), stride=(1, step))


def dct_wiener(noisy: torch.Tensor, pilot: torch.Tensor, sigma: torch.Tensor, matrix: torch.Tensor,
               scale: torch.Tensor | None = None, step: int = 1) -> torch.Tensor:
    """Empirical Wiener filtering in a sliding DCT (the second step of BM3D, Dabov et al. 2007, without grouping):
    noisy, pilot (an estimate of the clean image), sigma (noisy's noise std) (B, 1, H, W), matrix (P, P) from
    `dct_matrix`, scale (P²,) a factor on the noise variance per coefficient (`patch_dct`'s order; None: 1) ->
    (B, 1, H, W).

    Every P x P patch (edges replicated) has its coefficients c scaled by g = p²/(p² + scale·σ²), p the pilot's and σ²
    the patch's mean noise variance; the filtered patches are put back, each weighted by 1/(σ² Σ g²) (BM3D's
    aggregation: a patch that kept less noise counts more), and every pixel is their weighted mean. ``step`` > 1: only
    the patches whose corner is on that grid (of the edge-replicated image), step² times fewer (BM3D's step)."""
    size = matrix.shape[0]
    pad = (size - 1, size - 1, size - 1, size - 1)
    coeffs = patch_dct(F.pad(noisy, pad, mode="replicate"), matrix, step)  # (B, P², H + P - 1, W + P - 1) at step 1
    guide = patch_dct(F.pad(pilot, pad, mode="replicate"), matrix, step).square_()
    var = F.avg_pool2d(F.pad(sigma**2, pad, mode="replicate"), size, stride=step).clamp(min=1e-12)
    noise = var if scale is None else var * scale[None, :, None, None]
    if torch.is_grad_enabled():
        gain = guide / (guide + noise)
        weight = 1 / (var * gain.square().sum(dim=1, keepdim=True)).clamp(min=1e-12)
        filtered = coeffs * gain * weight
    else:  # the same in place: P² maps per pixel, each pass over them costs as much as the DCT itself
        gain = guide.div_(guide + noise)
        weight = (var * torch.linalg.vector_norm(gain, dim=1, keepdim=True).square_()).clamp_(min=1e-12).reciprocal_()
        filtered = coeffs.mul_(gain).mul_(weight)
    total = patch_idct(filtered, matrix, step)
    coverage = F.conv_transpose2d(weight, torch.ones(1, 1, size, size, dtype=weight.dtype, device=weight.device),
                                  stride=step)
    h, w = noisy.shape[-2:]
    crop = (slice(None), slice(None), slice(size - 1, size - 1 + h), slice(size - 1, size - 1 + w))
    return total[crop] / coverage[crop]


def nonlocal_means(image: torch.Tensor, sigma: torch.Tensor, bandwidth: torch.Tensor, search: int,
                   patch: int = 5) -> torch.Tensor:
    """image, sigma (its noise std), bandwidth (B, 1, H, W) -> (B, 1, H, W): each pixel the mean of its search x search
    neighbours (edges replicated) weighted by softmax(-max(d - 2 sigma², 0) / bandwidth²), d the mean squared difference
    of the patch x patch patches around the pixel and the neighbour (Buades et al. 2005, with the noise's expected
    distance taken off). Every neighbour's map is held at once: search² maps per pixel."""
    b, _, h, w = image.shape
    r = search // 2
    neighbours = F.unfold(F.pad(image, (r, r, r, r), mode="replicate"), search).reshape(b, search * search, h, w)
    if torch.is_grad_enabled():
        distance = box_blur((neighbours - image) ** 2, patch)
        weights = torch.softmax(-F.relu(distance - 2 * sigma**2) / bandwidth**2, dim=1)
        return (weights * neighbours).sum(dim=1, keepdim=True)
    # the same in place: search² maps per pixel, each pass over them costs about as much as the box blur. The
    # logits are <= 0 and the pixel itself (distance 0) gives 0, so exp needs no max taken off and its sum is >= 1
    weights = box_blur((neighbours - image).square_(), patch)
    weights.sub_(2 * sigma**2).relu_().div_(-(bandwidth**2)).exp_()
    total = weights.sum(dim=1, keepdim=True)
    return weights.mul_(neighbours).sum(dim=1, keepdim=True).div_(total)


def resampling_softness(shifts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """shifts (B, N, 2) pre-alignment shifts in pixels, weights (B, N) (1 for the frames to count) -> (B,): the
    weighted mean over frames of f_y(1 - f_y) + f_x(1 - f_x), f the fractional part of each shift. A bilinear warp
    by f averages two neighbours with weights f and 1 - f; 0 for whole-pixel shifts, 0.5 at half a pixel in both."""
    frac = shifts.float() - torch.floor(shifts.float())
    soft = (frac * (1 - frac)).sum(dim=-1)
    return (soft * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def gate_scale(trust: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """trust (B, N, H, W) in [0, 1], kernels (B, N, K, K, H, W) -> scale (B, N, H, W) for each frame's kernel:
    trust_i · Σ_j s_j / Σ_j trust_j s_j, s_j the kernel sums. The output's total weight (its DC gain) is
    kept, so a distrusted frame's share goes to the others in proportion to theirs, whatever share the
    network gave the reference; equal trust changes nothing. Where the gated sum nearly vanishes the
    kernels are left as they are."""
    with torch.autocast(kernels.device.type, enabled=False):
        sums = kernels.float().sum(dim=(2, 3))
        total = sums.sum(dim=1, keepdim=True)
        gated = (trust.float() * sums).sum(dim=1, keepdim=True)
        usable = gated.abs() > 1e-3 * total.abs().clamp(min=1e-6)
        return torch.where(usable, trust.float() * total / torch.where(usable, gated, torch.ones_like(gated)),
                           torch.ones_like(trust, dtype=torch.float32))


def box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> the same, each pixel the mean of its size x size neighbourhood (odd size, border replicated).
    From 4 channels on (the frames' mismatch maps, the non-local means' distance maps) as a depthwise convolution:
    the same sums (to float rounding), 1.5-7x faster on CPU than avg_pool2d, which is faster for one channel."""
    r = size // 2
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    channels = x.shape[1]
    if channels < 4:
        return F.avg_pool2d(padded, size, stride=1)
    weight = torch.full((channels, 1, size, size), 1.0 / (size * size), dtype=x.dtype, device=x.device)
    with torch.autocast(x.device.type, enabled=False):  # in the input's precision, as avg_pool2d is
        return F.conv2d(padded, weight, groups=channels)


def gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """x (B, C, H, W) -> the same, each channel blurred by a Gaussian of ``std`` px (separable, radius ceil(3·std),
    edges replicated)."""
    radius = max(1, math.ceil(3 * std))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    g = torch.exp(-0.5 * (taps / std) ** 2)
    g = (g / g.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def mismatch_maps(burst: torch.Tensor, noise_map: torch.Tensor, valid: torch.Tensor | None, size: int = 5,
                  diff2: torch.Tensor | None = None) -> torch.Tensor:
    """burst (B, N, H, W), noise_map (B, 1, H, W) std -> (B, N, H, W): log(1 + size² mean of (frame - reference)^2
    / (2 sigma^2)), about log 2 where a frame matches the reference, larger where it does not; 0 for
    the reference and for missing frames. ``diff2``: (frame - reference)^2 in float32 if already computed."""
    with torch.autocast(burst.device.type, enabled=False):
        if diff2 is None:
            diff2 = (burst.float() - burst[:, :1].float()) ** 2
        local = box_blur(diff2, size)
        maps = torch.log1p(local / (2 * noise_map.float() ** 2 + 1e-8))
        maps[:, 0] = 0
        if valid is not None:
            maps = maps * valid.to(maps.device, maps.dtype)[:, :, None, None]
    return maps.to(burst.dtype)


GROWABLE = ("variable_frames", "difference_inputs", "coarse_scales", "robust_gate", "normalize_kernels", "dc_bound",
            "mean_blend", "agreement_blend", "resampling_input", "brightness_input", "smoothed_mean", "reference_blend", "noise_gain",
            "gain_resampling", "refine", "refine_context", "refine_search", "refine_wiener", "refine_wiener_mean")


def can_grow(old: ModelConfig, new: ModelConfig) -> bool:
    """Whether ``new`` is ``old`` plus growable parts (validity inputs, mismatch inputs, a coarse stage),
    possibly with another pre-alignment (same weights, new inputs to fine-tune on)."""
    added = {name: getattr(new, name) for name in GROWABLE if not getattr(old, name)}
    if old.refine_wiener and added.get("refine_wiener_mean"):  # a fitted filter handed another input is not neutral
        return False
    if not old.refine:  # a new last stage comes with its own width
        added["refine_hidden"] = new.refine_hidden
    if not old.refine_wiener:  # and a new filter with its own step
        added["refine_wiener_step"] = new.refine_wiener_step
    try:
        return old != new and replace(old, prealign=new.prealign, **added) == new
    except BurstKPNError:  # old's parts with new's growable ones are no valid model (a part without what it needs)
        return False


def input_groups(config: ModelConfig) -> dict[str, slice]:
    """The network's input channels by kind, in order: frames, noise map, validity maps, mismatch maps."""
    n = config.frames
    sizes = {"frames": n, "noise": int(config.uses_noise_map), "validity": n * int(config.variable_frames),
             "mismatch": n * int(config.difference_inputs)}
    groups, start = {}, 0
    for name, size in sizes.items():
        groups[name] = slice(start, start + size)
        start += size
    return groups


GROWN_MODULES = ("gate.", "agree.", "noise_gain.", "refine.")  # a grown part's own modules, fresh and neutral in a grown model
FIRST_CONV = "unet.encoder.0.0.weight"  # the network's first convolution (`unet.conv_stack`)


def grow_state(state: dict[str, torch.Tensor], model: nn.Module, old: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Fit a model's weights to ``model`` grown by `GROWABLE` parts.

    Tensors of equal shape are copied; a head with more outputs (coarse kernels) gets the old tensor as its
    leading slice and zeros elsewhere; the first convolution's input channels go where their kind sits in the
    grown model (`input_groups`, given the ``old`` config; without it, the leading slice), new kinds at zero.
    So the grown model computes the same function on full bursts, e.g. validity maps added to a model that
    already has mismatch maps.
    """
    target = model.state_dict()
    if old is not None and FIRST_CONV in state and FIRST_CONV in target:
        before, after = input_groups(old), input_groups(model.config)
        weight = torch.zeros_like(target[FIRST_CONV])
        for name, where in before.items():
            if where.stop > where.start:
                weight[:, after[name]] = state[FIRST_CONV][:, where]
        state = {**state, FIRST_CONV: weight}
    # a grown stage's own modules (the robust gate) keep their fresh, neutral initialisation
    grown = {name: value for name, value in target.items() if name not in state and name.startswith(GROWN_MODULES)}
    for name, value in state.items():
        want = target.get(name)
        if want is None:
            raise BurstKPNError(f"weights have an unexpected tensor {name}")
        if value.shape == want.shape:
            grown[name] = value
        elif value.ndim == want.ndim and all(v <= w for v, w in zip(value.shape, want.shape)):
            extended = torch.zeros_like(want)
            extended[tuple(slice(0, v) for v in value.shape)] = value
            grown[name] = extended
        else:
            raise BurstKPNError(f"cannot fit {name} {tuple(value.shape)} into {tuple(want.shape)}")
    return grown


def build_model(config: ModelConfig) -> BurstDenoiser:
    """The network that ``config.kind`` names, freshly initialised."""
    return DPN(config) if config.kind == "dpn" else KPN(config)


def unwrap(model: nn.Module) -> BurstDenoiser:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def check_shifts(shifts, config, b: int, n: int, device) -> torch.Tensor:
    """Known shifts for ``predict`` (or `planar.predict_planar`) as a (B, n, 2) float32 tensor; a one-line error
    when the model does not pre-align or the shape is wrong."""
    if config.prealign == "none":
        raise BurstKPNError("shifts were given, but this model does not pre-align its frames (prealign = none)")
    shifts = torch.as_tensor(shifts, dtype=torch.float32, device=device)
    if shifts.shape != (b, n, 2):
        raise BurstKPNError(f"shifts must have shape ({b}, {n}, 2), got {tuple(shifts.shape)}")
    return shifts


def predict(model: nn.Module, burst: torch.Tensor, sigma_read, sigma_shot, amp: bool = False,
            valid: torch.Tensor | None = None, shifts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Denoise a batch of bursts with the preprocessing the model's config names.

    burst (B, n, H, W) linear, noisy; sigma_read, sigma_shot: floats or (B,) tensors.
    Burst length: n == the model's N as is; n > N keeps the reference and the N-1 frames that align
    best to it (`burstkpn.align.select_frames`); 1 <= n < N pads with missing frames when the model
    takes variable-length bursts (``variable_frames``), else is an error. ``valid`` (B, N) marks
    missing frames of full-length training bursts (their pixels are ignored).
    Returns the model's dict plus ``burst``: the N frames the network saw (pre-aligned if so
    configured, missing ones zero), ``valid`` (B, N) and ``frames`` (B, N) (index of each slot in
    the input, -1 for a missing frame). ``amp``: bf16 autocast around the network (kernels and
    outputs stay float32). ``shifts`` (B, n, 2) (dy, dx): the frames' known shifts (frame i at p shows the
    reference at p + shift_i, `burstkpn.align`), used by the model's pre-alignment instead of its own
    estimate (e.g. an oracle, or shifts found once on another channel); only for models that pre-align.
    """
    config = unwrap(model).config
    if not isinstance(burst, torch.Tensor) or burst.ndim != 4:
        shape = tuple(burst.shape) if hasattr(burst, "shape") else type(burst).__name__
        raise BurstKPNError(f"expected a burst of shape (B, N, H, W), got {shape}")
    burst = burst.float()
    b, n = burst.shape[:2]
    frames = torch.arange(n, device=burst.device).expand(b, n)
    if shifts is not None:
        shifts = check_shifts(shifts, config, b, n, burst.device)
    if n > config.frames:
        from burstkpn.align import select_frames

        frames = select_frames(burst, config.frames)
        burst = burst.gather(1, frames[:, :, None, None].expand(-1, -1, *burst.shape[-2:]))
        if shifts is not None:
            shifts = shifts.gather(1, frames[:, :, None].expand(-1, -1, 2))
        n = config.frames
    if n < config.frames and not config.variable_frames:
        raise BurstKPNError(f"this model takes bursts of exactly {config.frames} frames (got {n}); "
                            "a model trained with variable_frames takes 1 to its frame count")
    if valid is None:
        valid = torch.ones(b, n, device=burst.device)
    valid = valid.to(burst.device).float()
    if n == config.frames and bool((valid < 1).any()):
        # missing frames of a training burst: align as copies of the reference, then zero them
        burst = torch.where(valid[:, :, None, None] > 0, burst, burst[:, :1])
    unaligned = burst
    if config.prealign != "none":
        from burstkpn.align import align_global

        burst, shifts = align_global(burst, integer=config.prealign == "global-integer", shifts=shifts)
    clipped = clip_indicators(unaligned, shifts if config.prealign != "none" else None)
    if n < config.frames:
        missing = config.frames - n
        burst = torch.cat([burst, burst.new_zeros(b, missing, *burst.shape[-2:])], dim=1)
        valid = torch.cat([valid, valid.new_zeros(b, missing)], dim=1)
        frames = torch.cat([frames, frames.new_full((b, missing), -1)], dim=1)
        if shifts is not None:
            shifts = torch.cat([shifts, shifts.new_zeros(b, missing, 2)], dim=1)
    if bool((valid < 1).any()):  # missing frames in: zero pixels (full bursts skip the copy)
        burst = burst * valid[:, :, None, None]
    noise_map = None
    if config.uses_noise_map:
        sr = torch.as_tensor(sigma_read, dtype=torch.float32, device=burst.device).reshape(-1, 1, 1, 1)
        ss = torch.as_tensor(sigma_shot, dtype=torch.float32, device=burst.device).reshape(-1, 1, 1, 1)
        if sr.shape[0] not in (1, b) or ss.shape[0] not in (1, b):
            raise BurstKPNError(f"sigma_read/sigma_shot must be scalars or have {b} values")
        noise_map = noise_std_map(burst[:, :1], sr, ss)
    with torch.autocast(burst.device.type, dtype=torch.bfloat16, enabled=amp):
        reads_shifts = getattr(config, "resampling_input", False) or getattr(config, "gain_resampling", False)
        extra = {"shifts": shifts} if reads_shifts else {}
        result = model(burst, noise_map, valid if config.variable_frames else None, **extra)
    if clipped is not None:
        result["output"] = hold_saturation(result["output"], clipped, valid)
    return {**result, "burst": burst, "valid": valid, "frames": frames}


SENSOR_WHITE = 1.0  # linear inputs are scaled so that the sensor saturates here (DNG white level, 8/16-bit full scale)
SATURATION_TOLERANCE = 1e-4  # a frame's value this close to white counts as clipped


def at_white(burst: torch.Tensor) -> torch.Tensor:
    """burst (..., H, W) -> float 1 where a value sits at the sensor's clip point (`SENSOR_WHITE`), else 0."""
    with torch.no_grad():
        return ((burst.float() - SENSOR_WHITE).abs() <= SATURATION_TOLERANCE).float()


def clip_indicators(burst: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor | None:
    """burst (B, n, H, W) before pre-alignment, shifts (B, n, 2) the pre-alignment's (None: not pre-aligned) ->
    (B, n, H, W) `at_white` of every frame, moved with its frame (the reference stays as it is: a sub-pixel warp
    blends a clipped value with its neighbours, which would hide the clip), or None when nothing is at white."""
    clipped = at_white(burst)
    if not bool(clipped.any()):  # most bursts
        return None
    if shifts is not None:
        from burstkpn.align import warp_frames

        clipped = torch.cat([clipped[:, :1], warp_frames(clipped, shifts)[:, 1:]], dim=1)
    return clipped


def hold_saturation(output: torch.Tensor, clipped: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """output (B, H, W); clipped (B, n, H, W) from `clip_indicators` (n <= N: frames a short burst lacks count as
    not clipped); valid (B, N) or None -> output, set to white where more than half of the valid frames were clipped (moved indicator above
    1/2) and the reference is clipped in the pixel's 3x3 neighbourhood (a clipped object that moved away from a
    dark reference pixel is left to the kernels).

    There the frames' median is the clip point, which a scene at or above white gives, while any weighted mean
    of the clipped values (what kernels compute) comes out below white by the share of noise draws that fell
    under it: a darkened highlight (up to 0.9 % of white at gain 4, docs/experiments/clipping.md). Unclipped
    data never has a majority of frames within `SATURATION_TOLERANCE` of exactly 1, so it is left as it is.
    Not done at black: there the scene is at or above the clip point, the frames' median (0) is the lowest it
    can be, and holding it cost 0.5 dB at gain 4 on black-clipped bursts (the same docs)."""
    with torch.no_grad():
        if valid is not None and clipped.shape[1] < valid.shape[1]:
            clipped = torch.cat([clipped, clipped.new_zeros(clipped.shape[0], valid.shape[1] - clipped.shape[1],
                                                            *clipped.shape[2:])], dim=1)
        flags = torch.ones(clipped.shape[:2], device=clipped.device) if valid is None else valid.to(clipped.device).float()
        flags = flags[:, :, None, None]
        hits = (clipped.float() > 0.5).float()
        # the reference must be blown there too (something clipped in its 3x3 neighbourhood: its own draw may fall
        # just under white): a bright object that moved off a dark reference pixel is a ghost, left to the kernels
        blown = box_blur(hits[:, :1], 3)[:, 0] > 0
        saturated = blown & ((hits * flags).sum(dim=1) > 0.5 * flags.sum(dim=1))
    return torch.where(saturated, torch.full_like(output, SENSOR_WHITE), output)


def denoise_array(model: nn.Module, burst: np.ndarray, noise, amp: bool = False, ensemble: bool = False,
                  guide: np.ndarray | None = None, shifts: torch.Tensor | None = None) -> np.ndarray:
    """One burst as arrays: (N, H, W) float32 linear + a `NoiseLevel` -> (H, W) float32 estimate.
    ``amp``: bf16 autocast around the network. ``ensemble``: the mean over the 8 flips/rotations of
    the burst, each output turned back (8x the time; noise and motion models are symmetric under them).
    ``guide`` (N, H, W): frames of the same burst to find the global pre-alignment on instead of ``burst``
    (a colour plane aligned on the green planes, which see more light); only for models that pre-align.
    ``shifts`` (1, N, 2): that alignment already found (`align.estimate_global_shifts` of the guide), so that
    the planes of one burst share one estimate; not with ``ensemble``, whose views each need their own."""
    from burstkpn.align import estimate_global_shifts

    burst = np.ascontiguousarray(burst, np.float32)
    if guide is not None and np.shape(guide) != burst.shape:
        raise BurstKPNError(f"guide must have the burst's shape {burst.shape}, got {np.shape(guide)}")
    if shifts is not None and (ensemble or guide is not None):
        raise BurstKPNError("denoise_array takes shifts or a guide, and shifts not with the ensemble")
    views = [(k, flip) for flip in (False, True) for k in range(4)] if ensemble else [(0, False)]
    total = None
    with torch.inference_mode():
        for k, flip in views:
            def view(a: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(np.rot90(a[..., ::-1] if flip else a, k, axes=(-2, -1))))[None]

            if guide is not None:
                shifts = estimate_global_shifts(view(np.asarray(guide, np.float32)))
            out = predict(model, view(burst), noise.sigma_read, noise.sigma_shot, amp=amp,
                          shifts=shifts)["output"][0].float().numpy()
            out = np.rot90(out, -k)
            out = out[..., ::-1] if flip else out
            total = out if total is None else total + out
    return np.ascontiguousarray(total / len(views), np.float32)
