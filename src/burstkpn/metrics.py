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


def mean_finite(scores) -> float:
    """The mean of the finite PSNRs: a burst reproduced exactly (a window clipped white everywhere: target and
    output both 1) has infinite PSNR and says nothing about a model; nan if none is finite."""
    finite = [float(s) for s in scores if np.isfinite(s)]
    return float(np.mean(finite)) if finite else float("nan")


def ssim(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> float:
    """SSIM of a linear estimate against linear ground truth (Gaussian 11x11, σ = 1.5)."""
    from skimage.metrics import structural_similarity

    a, b = to_display(clean, white_level, border), to_display(estimate, white_level, border)
    return float(
        structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    )


# --- clipped regions (real sensors saturate at the white level) ---------------------------------


def saturated_mask(clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> np.ndarray:
    """(H, W) -> bool, border cropped: pixels whose clean value is at (or above) the white level."""
    mask = np.asarray(clean, np.float64) >= white_level * (1 - 1e-6)
    return mask[border:-border, border:-border] if border else mask


def halo_band(saturated: np.ndarray, width: int = 4) -> np.ndarray:
    """bool (H, W) -> the ``width``-px band around the saturated regions (outside them)."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(saturated, iterations=width) & ~saturated


def masked_psnr(estimate: np.ndarray, clean: np.ndarray, mask: np.ndarray, white_level: float = 1.0,
                border: int = BORDER) -> float:
    """PSNR (dB) in the paper's display space over the pixels of ``mask`` (already border-cropped);
    NaN when the mask is empty."""
    if not mask.any():
        return float("nan")
    a, b = to_display(clean, white_level, border), to_display(estimate, white_level, border)
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def highlight_bias(estimate: np.ndarray, clean: np.ndarray, white_level: float = 1.0, border: int = BORDER) -> float:
    """Mean of (estimate - white) / white over the truly saturated pixels: 0 keeps a blown highlight at
    white, -0.01 darkens it by 1 % of white (the mean of clipped noisy values is biased low); NaN if none."""
    mask = saturated_mask(clean, white_level, border)
    if not mask.any():
        return float("nan")
    est = np.asarray(estimate, np.float64)
    est = est[border:-border, border:-border] if border else est
    return float(np.mean(np.minimum(est[mask], white_level * 2) / white_level - 1.0))
