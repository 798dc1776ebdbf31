"""A configurable U-Net (METHOD §2): 3x3 conv + ReLU stacks, 2x2 average-pool down, bilinear up with
skip concatenation, and optionally the last decoder level skipped (predict at half resolution,
then upsample bilinearly, as in the authors' released code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_stack(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """``convs`` x (3x3 conv + ReLU), the first mapping in_channels -> out_channels."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W); H and W must be multiples of `multiple`.

    widths[l] is the width of level l (level 0 = full resolution); the decoder mirrors the encoder
    up to level 0, or up to level 1 when ``half_res_output`` (then the head's output is upsampled).
    The head is a linear 1x1 convolution (no activation): `self.head`.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: tuple[int, ...], convs_per_level: int = 3,
                 half_res_output: bool = False):
        super().__init__()
        self.half_res_output = half_res_output
        self.encoder = nn.ModuleList(
            conv_stack(in_channels if lvl == 0 else widths[lvl - 1], width, convs_per_level)
            for lvl, width in enumerate(widths)
        )
        stop = 1 if half_res_output else 0
        self.decoder = nn.ModuleList(
            conv_stack(widths[lvl + 1] + widths[lvl], widths[lvl], convs_per_level)
            for lvl in range(len(widths) - 2, stop - 1, -1)
        )
        self.head = nn.Conv2d(widths[stop], out_channels, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (one halving per level below the first)."""
        return 2 ** (len(self.encoder) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C_in, H, W) -> (the output (B, C_out, H, W), the head's input (B, widths[0 or 1], H or H/2, W or W/2)):
        the last decoder level's features, which a later stage may read (`ModelConfig.refine_context`)."""
        # CPU inference: oneDNN's 3x3 convolutions run ~1.4x faster on channels-last maps (kpn, 512², 2 AVX2
        # cores); the head's input goes back to planar maps, so its many outputs (kernels) stay planar
        channels_last = x.device.type == "cpu" and not torch.is_grad_enabled()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for lvl, stack in enumerate(self.encoder):
            if lvl > 0:
                x = F.avg_pool2d(x, 2)
            x = stack(x)
            skips.append(x)
        skips.pop()  # the deepest level is x itself
        for stack in self.decoder:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stack(torch.cat([x, skip], dim=1))
        features = x.contiguous() if channels_last else x
        x = self.head(features)
        if self.half_res_output:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return x, features


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom/right so that H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
