"""Variance stabilisation for the project's noise model ``var = sigma_read**2 + sigma_shot * y``.

The generalised Anscombe transform (Murtagh et al. 1995; Mäkitalo & Foi, IEEE TIP 2013) for
heteroscedastic Gaussian noise: ``f(z) = 2 / a * (sqrt(a z + b) - sqrt(b))`` with ``a = sigma_shot``,
``b = sigma_read**2`` makes the noise approximately unit-variance Gaussian, so a denoiser built for
white Gaussian noise (BM3D, BM4D, NLM) can run on ``f(z)`` with σ = 1. The inverse is the *exact
unbiased* one (Mäkitalo & Foi): ``E[f(z) | y]`` is tabulated over ``y`` by Gauss-Hermite quadrature and
inverted by interpolation, which removes the bias a plain algebraic inverse leaves in dark regions.
"""

from __future__ import annotations

import numpy as np

from burstkpn.noise import NoiseLevel, noise_variance

_FLAT = 1e-12  # below this sigma_shot the transform is the linear z / sigma_read


def anscombe(z: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """Forward transform of a linear image or stack (any shape); the output noise has σ ≈ 1."""
    a, b = noise.sigma_shot, max(noise.sigma_read, 1e-12) ** 2
    z = np.asarray(z, np.float64)
    if a < _FLAT:
        return z / np.sqrt(b)
    return 2.0 / a * (np.sqrt(np.maximum(a * z + b, 0.0)) - np.sqrt(b))


def inverse_anscombe(fz: np.ndarray, noise: NoiseLevel, y_max: float | None = None) -> np.ndarray:
    """Exact unbiased inverse: the ``y >= 0`` whose expected transform ``E[f(z) | y]`` equals ``fz``.

    ``y_max`` bounds the table (default: the algebraic inverse of ``fz.max()`` plus margin).
    """
    fz = np.asarray(fz, np.float64)
    if noise.sigma_shot < _FLAT:
        return fz * max(noise.sigma_read, 1e-12)
    a, b = noise.sigma_shot, max(noise.sigma_read, 1e-12) ** 2
    if y_max is None:
        top = (a * fz.max() / 2 + np.sqrt(b)) ** 2
        y_max = max((top - b) / a, 1e-6) * 1.2 + 10 * np.sqrt(b)
    y = np.concatenate([[0.0], np.geomspace(1e-7, y_max, 600)])
    nodes, weights = np.polynomial.hermite_e.hermegauss(48)  # ∫ g(ξ) φ(ξ) dξ, φ standard normal
    weights = weights / weights.sum()
    z = y[:, None] + np.sqrt(noise_variance(y, noise.sigma_read, noise.sigma_shot))[:, None] * nodes[None, :]
    expected = anscombe(z, noise) @ weights  # (len(y),), increasing in y
    expected = np.maximum.accumulate(expected)
    return np.interp(fz, expected, y, left=0.0, right=None)


def effective_sigma(z: np.ndarray, noise: NoiseLevel) -> float:
    """One σ for the whole image: the noise model at the image's mean level."""
    return float(np.sqrt(noise_variance(np.float64(np.mean(z)), noise.sigma_read, noise.sigma_shot)))
