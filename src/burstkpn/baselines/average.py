"""The trivial rows of Table 1: the noisy reference frame, the burst mean, the globally aligned mean.

Every baseline has the signature ``denoise(burst (N, H, W) float32 linear, noise) -> (H, W)``; frame 0
is the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from burstkpn.align import align_global
from burstkpn.noise import NoiseLevel


def reference(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """The noisy reference frame itself (Mildenhall et al. 2018, Table 1, "reference frame")."""
    return np.asarray(burst[0], np.float32)


def average(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """The plain, unaligned mean of all frames (Table 1, "burst average")."""
    return np.asarray(burst, np.float32).mean(axis=0)


def aligned_average(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """Global sub-pixel phase-correlation alignment to the reference, then the mean.

    Not a row of the paper: a cheap, strong check (`burstkpn.align.align_global`). It models one
    translation per frame, so local motion and the warp's bilinear blur are not compensated.
    """
    aligned, _ = align_global(torch.from_numpy(np.asarray(burst, np.float32))[None])
    return aligned[0].mean(dim=0).numpy()
