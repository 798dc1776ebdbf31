"""``bm4d-aligned``: BM4D on the HDR+-aligned burst volume, the closest available stand-in for VBM4D.

The paper's row is VBM4D (Maggioni, Boracchi, Foi & Egiazarian, "Video denoising, deblocking and
enhancement through separable 4-D nonlocal spatiotemporal transforms", IEEE TIP 2012), which has no
Python implementation. Here the burst is first aligned to the reference with HDR+ tile alignment
(`burstkpn.align.aligned_stack`), then BM4D (Maggioni et al., IEEE TIP 2013; Tampere's ``bm4d`` package,
non-commercial licence, an optional extra imported lazily) denoises the (H, W, N) volume after the
generalised Anscombe transform; the reference slice is returned. Simplified against VBM4D: no
motion-compensated spatio-temporal trajectories, one global alignment stage instead.
"""

from __future__ import annotations

import numpy as np

from burstkpn.align import aligned_stack
from burstkpn.baselines.vst import anscombe, inverse_anscombe
from burstkpn.noise import NoiseLevel


def bm4d_aligned(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """(N, H, W) linear burst -> (H, W) estimate of the reference frame."""
    import bm4d as bm4d_package

    volume = np.moveaxis(anscombe(aligned_stack(burst), noise), 0, -1)  # (H, W, N)
    denoised = bm4d_package.bm4d(volume, 1.0)
    return inverse_anscombe(denoised[..., 0], noise).astype(np.float32)
