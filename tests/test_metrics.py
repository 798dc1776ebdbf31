"""The paper's metrics against scikit-image and hand-computed values on known images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from burstkpn.camera import srgb_curve_inverse
from burstkpn.metrics import BORDER, psnr, ssim


def linear_from_display(display: np.ndarray, white_level: float) -> np.ndarray:
    """Display values in [0, 1] -> the linear image whose metric-space view they are."""
    return srgb_curve_inverse(display) * white_level


@pytest.fixture
def display_pair():
    from skimage import data

    clean = data.camera()[100:164, 200:264].astype(np.float64) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.05, clean.shape), 0, 1)
    return clean, noisy


def test_psnr_matches_skimage_on_cropped_display_values(display_pair):
    clean, noisy = display_pair
    white = 0.3
    got = psnr(linear_from_display(noisy, white), linear_from_display(clean, white), white)
    c = slice(BORDER, -BORDER)
    assert got == pytest.approx(peak_signal_noise_ratio(clean[c, c], noisy[c, c], data_range=1.0), abs=1e-6)


def test_ssim_matches_skimage_gaussian_window(display_pair):
    clean, noisy = display_pair
    white = 0.7
    got = ssim(linear_from_display(noisy, white), linear_from_display(clean, white), white)
    c = slice(BORDER, -BORDER)
    want = structural_similarity(
        clean[c, c], noisy[c, c], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert got == pytest.approx(want, abs=1e-6)
    assert ssim(linear_from_display(clean, white), linear_from_display(clean, white), white) == pytest.approx(1.0)


def test_psnr_hand_computed_and_border_crop():
    clean = np.full((32, 32), 0.5)
    off = clean + 0.1  # a constant display error of 0.1: MSE 0.01 -> exactly 20 dB
    assert psnr(linear_from_display(off, 1.0), linear_from_display(clean, 1.0)) == pytest.approx(20.0, abs=1e-6)
    edge = clean.copy()
    edge[:BORDER] = 0.0  # errors only inside the cropped border do not count
    assert psnr(linear_from_display(edge, 1.0), linear_from_display(clean, 1.0)) == float("inf")


def test_values_above_white_level_are_clipped():
    clean = np.full((32, 32), 0.2)
    assert psnr(clean * 5, clean * 0 + 1.0, white_level=1.0) == float("inf")  # both clip to 1
