"""Signal-dependent sensor noise: the physical model, its level sampler, presets and estimate.

Model (METHOD §1.4), in the linear domain, independent per pixel and per frame, not clipped::

    x_noisy = y + N(0, sigma_read**2 + sigma_shot * y)

``sigma_shot`` multiplies the signal in the *variance* (the authors' code samples its square
root, ``sig_shot``); ``sigma_read`` is a standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from burstkpn.errors import BurstKPNError


@dataclass(frozen=True)
class NoiseLevel:
    """One noise level: ``var = sigma_read**2 + sigma_shot * y``."""

    sigma_read: float
    sigma_shot: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.sigma_read) and np.isfinite(self.sigma_shot)):
            raise BurstKPNError(f"noise level must be finite, got {self}")
        if self.sigma_read < 0 or self.sigma_shot < 0:
            raise BurstKPNError(f"noise level must be non-negative, got {self}")


@dataclass(frozen=True)
class NoiseRange:
    """The training sampler's range: log-uniform in both parameters (METHOD §1.4)."""

    log10_read: tuple[float, float] = (-3.0, -1.5)
    log10_shot: tuple[float, float] = (-4.0, -2.0)


# The paper's Table 1 evaluation levels (log10 sigma_read, log10 sigma_shot); gain 8 lies
# beyond the training range on purpose.
GAIN_LOG10: dict[int, tuple[float, float]] = {
    1: (-2.2, -2.6),
    2: (-1.8, -2.2),
    4: (-1.44, -1.8),
    8: (-1.07, -1.5),
}


# Base ISO, a well-exposed phone or camera frame (σ_r ≈ 0.002, σ_s ≈ 0.0005): below the paper's gain 1.
# Named "base" (stored as gain 0 in test sets).
BASE_ISO_LOG10: tuple[float, float] = (float(np.log10(0.002)), float(np.log10(0.0005)))
GAIN_NAMES = {"base": 0}


def gain_key(gain: float | str) -> int:
    """A gain as test sets store it: 1, 2, 4, 8, or 0 for "base" (base ISO); a one-line error otherwise."""
    if isinstance(gain, str) and gain.strip().lower() in GAIN_NAMES:
        return GAIN_NAMES[gain.strip().lower()]
    noise_level_for_gain(gain)
    return int(float(gain))


def noise_level_for_gain(gain: float | str) -> NoiseLevel:
    """The named evaluation level for gain 1, 2, 4 or 8 (the paper's), or "base" / 0 (base ISO)."""
    if (isinstance(gain, str) and gain.strip().lower() == "base") or (not isinstance(gain, str) and gain == 0):
        return NoiseLevel(10.0 ** BASE_ISO_LOG10[0], 10.0 ** BASE_ISO_LOG10[1])
    try:
        key = int(gain)
        if key != float(gain):
            raise ValueError
        log_read, log_shot = GAIN_LOG10[key]
    except (KeyError, ValueError, TypeError):
        known = ", ".join(str(g) for g in GAIN_LOG10)
        raise BurstKPNError(f"unknown gain {gain!r}: known gains are {known} and base") from None
    return NoiseLevel(10.0**log_read, 10.0**log_shot)


def sample_noise_level(rng: np.random.Generator, noise_range: NoiseRange = NoiseRange()) -> NoiseLevel:
    """Draw a training noise level log-uniformly from ``noise_range``."""
    return NoiseLevel(
        float(10.0 ** rng.uniform(*noise_range.log10_read)),
        float(10.0 ** rng.uniform(*noise_range.log10_shot)),
    )


def noise_variance(signal, sigma_read, sigma_shot):
    """Per-pixel variance ``sigma_read**2 + sigma_shot * max(signal, 0)`` (numpy or torch)."""
    return sigma_read**2 + sigma_shot * signal.clip(min=0)


def add_noise(clean: np.ndarray, level: NoiseLevel, rng: np.random.Generator) -> np.ndarray:
    """Shot + read noise on a linear image or burst of any shape; float32, not clipped."""
    std = np.sqrt(noise_variance(clean.astype(np.float64), level.sigma_read, level.sigma_shot))
    return (clean + std * rng.standard_normal(clean.shape)).astype(np.float32)


def noise_std_map(reference, sigma_read, sigma_shot):
    """The network's noise estimate from the *noisy* reference frame (METHOD §1.5).

    ``reference``: (..., H, W) linear; ``sigma_*``: scalars or arrays broadcastable to it
    (e.g. (B, 1, 1, 1) for a batch). Returns ``sqrt(sigma_read**2 + sigma_shot * max(x, 0))``.
    """
    return noise_variance(reference, sigma_read, sigma_shot) ** 0.5


# ----------------------------------------------------------------------------------------- clipping

_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
DECLIP_REACH = 6.0  # noise std: farther than this from every clip point, the clip moves the mean by < 1e-9


def _mean_above(mean: np.ndarray, std: np.ndarray, point: float) -> np.ndarray:
    """E[max(v - point, 0)] for v ~ N(mean, std²)."""
    from scipy.special import ndtr

    t = (mean - point) / std
    return (mean - point) * ndtr(t) + std * np.exp(-0.5 * t * t) / _SQRT_2PI


def clipped_mean(signal, level: NoiseLevel, low: float | None = 0.0, high: float | None = 1.0) -> np.ndarray:
    """E[clip(signal + noise, low, high)]: what a sensor that clips at ``low`` (the black level, after black
    subtraction 0) and ``high`` (its white level) records on average, with this module's noise model
    (variance σr² + σs·signal). ``None`` leaves that side unclipped. Any shape; float64.

    Averaging frames or weighting them with kernels estimates this, not ``signal``: near black it lies above the
    scene (the negative draws were cut), near white below. A. Foi, "Clipped noisy images: heteroskedastic
    modeling and practical denoising", Signal Processing 89(12), 2009."""
    y = np.asarray(signal, np.float64)
    std = np.sqrt(noise_variance(y, level.sigma_read, level.sigma_shot))
    std = np.maximum(std, 1e-12)
    out = y.copy()
    if low is not None:  # clip(v, l, h) = l + relu(v - l) - relu(v - h)
        out = low + _mean_above(y, std, low)
    if high is not None:
        out = out - _mean_above(y, std, high)
    return out


DECLIP_GRID = 200_001  # scene values tabulated between the ends of the range declip searches


def declip(estimate: np.ndarray, level: NoiseLevel, low: float | None = 0.0, high: float | None = 1.0) -> np.ndarray:
    """Invert `clipped_mean`: the scene value (within [low, high]) whose clipped mean is ``estimate``, the
    denoised output of a burst the sensor clipped (Foi 2009, the "declipping" step). Any shape; float32.

    A merge of black-clipped frames reads too bright in the shadows (at the paper's gain 4 a scene at 0.01 of
    white averages to 0.014) and a merge of white-clipped frames too dark just under white; this takes the
    bias out pixel by pixel. Only pixels within `DECLIP_REACH` noise std of a clip point change (elsewhere the
    clip moves the mean by less than 1e-9). With one noise level per burst, `clipped_mean` is one monotone
    function of the scene value: it is tabulated on `DECLIP_GRID` points and inverted by linear interpolation
    (error under 1e-7 of white; a 3-MP output in well under a second). An estimate beyond what any scene in
    [low, high] gives (residual noise) is set to the clip point."""
    est = np.asarray(estimate)
    out = est.astype(np.float32, copy=True)
    if low is None and high is None:
        return out
    std = np.sqrt(noise_variance(est.astype(np.float64), level.sigma_read, level.sigma_shot))
    near = np.zeros(est.shape, dtype=bool)
    if low is not None:
        near |= est - low < DECLIP_REACH * std
    if high is not None:
        near |= high - est < DECLIP_REACH * std
    if not near.any():
        return out
    target = est[near].astype(np.float64)
    reach = DECLIP_REACH * float(std.max())
    start = low if low is not None else float(target.min()) - reach
    stop = high if high is not None else float(target.max()) + reach
    scene = np.linspace(start, stop, DECLIP_GRID)
    mean = np.maximum.accumulate(clipped_mean(scene, level, low, high))  # monotone (to rounding) for np.interp
    out[near] = np.interp(target, mean, scene)  # below the first / above the last mean: the clip point itself
    return out


IMPUTE_WINDOW = 5  # px: the local mean that estimates the scene under a cut value


def impute_black(frames: np.ndarray, level: NoiseLevel, black: float = 0.0, tol: float = 1e-4,
                 window: int = IMPUTE_WINDOW, inplace: bool = False) -> np.ndarray:
    """frames (..., H, W) cut at the black point ``black`` -> the same (float32) with every value within ``tol``
    of it replaced by what the cut took away on average: E[v | v <= black] for v ~ N(scene, σ(scene)²), the
    scene value estimated by `declip` from that frame's ``window`` x ``window`` mean around the pixel.
    ``inplace``: write into ``frames`` (float32) instead of a copy, one frame at a time (a 12-MP raw burst's
    planes take 0.4 GB; the work space is then one frame's).

    Black-subtracted raw keeps only the non-negative half of the noise in the shadows; a network (or a merge)
    fed those values reads the shadows too bright and their noise too low. Filling the cut values with their
    conditional mean gives it frames whose local means are unbiased again, and keeps every uncut value as it
    was. Measured against declipping the network's output instead (docs/experiments/black-clip-imputation.md):
    better for the networks at gains 1-2, level at 4; worse for bm3d-merged, which `denoise` does not run."""
    v = np.asarray(frames)
    if inplace and (v.dtype != np.float32 or not v.flags.c_contiguous):
        raise BurstKPNError(f"impute_black inplace needs C-contiguous float32 frames, got {v.dtype}")
    out = v if inplace else np.array(v, dtype=np.float32, order="C")  # C order: the reshape below is a view
    flat = out.reshape(-1, *out.shape[-2:])  # frame by frame, written through
    for frame in flat:
        _impute_frame(frame, level, black, tol, window)
    return out


def _impute_frame(frame: np.ndarray, level: NoiseLevel, black: float, tol: float, window: int) -> None:
    """`impute_black` on one (H, W) float32 frame, in place."""
    from scipy import ndimage

    cut = np.abs(frame - black) <= tol  # values below it were not cut (e.g. frames that hold negative values)
    if not cut.any():
        return
    local = ndimage.uniform_filter(frame, size=window, mode="reflect")[cut]
    scene = np.maximum(declip(local, level, black, None).astype(np.float64), black)
    frame[cut] = mean_below(scene, level, black).astype(np.float32)


def mills_ratio(a: np.ndarray) -> np.ndarray:
    """φ(a) / Φ(a) of the standard normal (any shape, float64), through log Φ so that it stays finite far into the
    lower tail: E[z | z <= a] = -φ(a) / Φ(a)."""
    from scipy.special import log_ndtr

    a = np.asarray(a, np.float64)
    return np.exp(-0.5 * a * a - log_ndtr(a)) / _SQRT_2PI


def mean_below(scene: np.ndarray, level: NoiseLevel, black: float = 0.0) -> np.ndarray:
    """E[v | v <= black] for v ~ N(scene, var(scene)) at noise ``level`` (float64, the scene's shape): what a value
    the sensor cut at the black point was on average, given the scene under it (`impute_black`'s fill)."""
    scene = np.asarray(scene, np.float64)
    std = np.maximum(np.sqrt(noise_variance(scene, level.sigma_read, level.sigma_shot)), 1e-12)
    return scene - std * mills_ratio((black - scene) / std)
