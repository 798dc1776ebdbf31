"""The paper's image metrics (METHOD §4): sRGB-curve space, white level divided out, clipped to
[0, 1], 8-pixel border cropped; PSNR with data range 1, SSIM with an 11x11 Gaussian window (σ 1.5).
"""

from __future__ import annotations

import numpy as np

from burstkpn.camera import remove_white_level, srgb_curve

BORDER = 8
CAPTION = "PSNR (dB) / SSIM in sRGB-curve space, white level divided out, clipped to [0, 1], data range 1, 8-px border cropped"


def to_display(linear: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> np.ndarray:
    """(H, W) linear -> float64 display values in [0, 1], with the border cropped."""
    display = srgb_curve(np.clip(remove_white_level(np.asarray(linear, np.float64), white_level), 0.0, 1.0))
    return display[border:-border, border:-border] if border else display


def psnr(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> float:
    """PSNR (dB) of a linear estimate against linear ground truth, in the paper's protocol."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = to_display(clean, white_level, border), to_display(estimate, white_level, border)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def ssim(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> float:
    """SSIM of a linear estimate against linear ground truth (Gaussian 11x11, σ = 1.5)."""
    from skimage.metrics import structural_similarity

    a, b = to_display(clean, white_level, border), to_display(estimate, white_level, border)
    return float(
        structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    )
