"""Camera stages as forward/inverse pairs: display gamma, the sRGB curve, white level, grayscale.

All functions take numpy arrays or torch tensors (anything with ``clip`` and ``**``) in [0, 1].
"""

from __future__ import annotations

import numpy as np

DISPLAY_GAMMA = 2.2  # the authors' linearisation: linear = (img / 255) ** 2.2


def srgb8_to_linear(image: np.ndarray, gamma: float = DISPLAY_GAMMA) -> np.ndarray:
    """8-bit display-referred image -> linear float32 in [0, 1] (`(x / 255) ** gamma`)."""
    if image.dtype != np.uint8:
        raise TypeError(f"srgb8_to_linear expects uint8, got {image.dtype}")
    return gamma_expand(image.astype(np.float32) / 255.0, gamma)


def linear_to_srgb8(linear: np.ndarray, gamma: float = DISPLAY_GAMMA) -> np.ndarray:
    """Inverse of `srgb8_to_linear`: linear [0, 1] -> 8-bit, clipped and rounded."""
    display = gamma_compress(np.clip(linear, 0.0, 1.0), gamma)
    return np.round(display * 255.0).astype(np.uint8)


def gamma_expand(display, gamma: float = DISPLAY_GAMMA):
    """Display value -> linear: ``x ** gamma`` (negative inputs clipped to 0)."""
    return display.clip(min=0) ** gamma


def gamma_compress(linear, gamma: float = DISPLAY_GAMMA):
    """Linear -> display value: ``x ** (1 / gamma)`` (negative inputs clipped to 0)."""
    return linear.clip(min=0) ** (1.0 / gamma)


def srgb_curve(linear):
    """The sRGB transfer curve (IEC 61966-2-1), linear [0, 1] -> display; used by losses and metrics."""
    x = linear.clip(0.0, 1.0)
    low = 12.92 * x
    high = 1.055 * x.clip(min=0.0031308) ** (1.0 / 2.4) - 0.055
    return _where(x <= 0.0031308, low, high)


def srgb_curve_inverse(display):
    """Inverse of `srgb_curve`: display [0, 1] -> linear."""
    x = display.clip(0.0, 1.0)
    low = x / 12.92
    high = ((x.clip(min=0.04045) + 0.055) / 1.055) ** 2.4
    return _where(x <= 0.04045, low, high)


def sample_white_level(rng: np.random.Generator, low: float = 0.1, high: float = 1.0) -> float:
    """White level drawn log-uniformly from [low, high] (METHOD §1.2)."""
    if not 0 < low <= high:
        raise ValueError(f"white level range must satisfy 0 < low <= high, got ({low}, {high})")
    return float(10.0 ** rng.uniform(np.log10(low), np.log10(high)))


def apply_white_level(linear, white_level):
    """Scale a linear image to a darker exposure: the sensor sees ``linear * white_level``."""
    return linear * white_level


def remove_white_level(linear, white_level):
    """Inverse of `apply_white_level` (losses and metrics divide the white level out)."""
    return linear / white_level


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) as the mean of R, G, B (METHOD §1.1); (H, W) passes through."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[-1] == 3:
        return image.mean(axis=-1, dtype=np.float32)
    raise ValueError(f"expected (H, W) or (H, W, 3), got shape {tuple(image.shape)}")


def _where(cond, a, b):
    if isinstance(cond, np.ndarray) or np.isscalar(cond):
        return np.where(cond, a, b)
    import torch

    return torch.where(cond, a, b)
