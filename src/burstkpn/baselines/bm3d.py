"""BM3D rows: single-image BM3D on the reference frame, and BM3D on the HDR+ temporal merge.

BM3D: Dabov, Foi, Katkovnik & Egiazarian, "Image denoising by sparse 3-D transform-domain
collaborative filtering", IEEE TIP 2007, through Tampere's ``bm3d`` package (non-commercial licence;
an optional extra, imported lazily). BM3D assumes white Gaussian noise; the signal-dependent noise
is handled in one of two ways, chosen on 48 training bursts (sun_hays80 + wallpapers24; PSNR at
gains 1/2/4/8): the generalised Anscombe transform with its exact unbiased inverse
(`burstkpn.baselines.vst`; 31.55/28.20/24.68/21.76 dB) wins at low read noise, one effective σ at
the image mean (30.93/28.07/25.36/22.54 dB) at high read noise, so the VST is used while
``σ_read <= VST_MAX_READ`` (gains 1-2). Simplified: grayscale, the package's default ("np") profile.
"""

from __future__ import annotations

import numpy as np

from burstkpn.baselines.hdrplus import hdrplus_merge_only
from burstkpn.baselines.vst import anscombe, effective_sigma, inverse_anscombe
from burstkpn.noise import NoiseLevel

VST_MAX_READ = 0.025  # between gain 2 (σ_read 0.016) and gain 4 (0.036)


def bm3d_image(image: np.ndarray, noise: NoiseLevel, vst: bool | None = None) -> np.ndarray:
    """BM3D on one (H, W) linear image with noise ``var = σ_r² + σ_s y``; ``vst=None`` picks by σ_read."""
    import bm3d as bm3d_package

    image = np.asarray(image, np.float64)
    if vst is None:
        vst = noise.sigma_read <= VST_MAX_READ
    if not vst:
        return bm3d_package.bm3d(image, effective_sigma(image, noise)).astype(np.float32)
    stabilised = anscombe(image, noise)
    return inverse_anscombe(bm3d_package.bm3d(stabilised, 1.0), noise).astype(np.float32)


def bm3d(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """Single-image BM3D on the reference frame (Table 1's "BM3D" row): (N, H, W) -> (H, W)."""
    return bm3d_image(burst[0], noise)


def bm3d_merged(burst: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """BM3D on the HDR+ temporal merge, at the merge's reduced noise level: (N, H, W) -> (H, W).

    Not a row of the paper. The merged noise is modelled as the original model scaled by the
    merge's mean variance factor f (`hdrplus.merge`): ``NoiseLevel(σ_r √f, σ_s f)``.
    """
    merged, factor = hdrplus_merge_only(burst, noise)
    return bm3d_image(merged, NoiseLevel(noise.sigma_read * factor**0.5, noise.sigma_shot * factor))
