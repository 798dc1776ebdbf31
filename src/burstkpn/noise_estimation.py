"""Estimate the noise level (sigma_read, sigma_shot) of `burstkpn.noise`'s model from a burst.

Model: ``var = sigma_read**2 + sigma_shot * y`` (``sigma_shot`` multiplies the signal in the variance).

Spatial estimate, `estimate_noise` (a per-frame method in the spirit of Foi et al. 2008):

1. High-pass each frame with Immerkær's 3x3 kernel ``[[1,-2,1],[-2,4,-2],[1,-2,1]]``, which
   cancels constant, linear and most smooth signal; for independent noise its output variance is
   ``36 * var``, where var is the local noise variance.
2. Local intensity: a 5x5 box mean of the frame. Texture: the 7x7 mean energy of the high-pass
   residual; in each intensity bin only the half of lowest energy is kept (flat regions), and the
   variance is corrected for the bias that this selection has on pure noise.
3. In each intensity bin, a robust variance of the residual: ``(1.4826 * MAD)**2 / 36``.
4. Non-negative weighted least squares of ``var = sigma_read**2 + sigma_shot * y`` over the bins.

All frames of the burst are pooled (their noise is independent), so no alignment is needed.
Measured on synthetic bursts (tests/test_noise_estimation.py): the total noise std at the
burst's median intensity within ~15 % at gains 1-8 on most scenes (up to +30 % at gain 1 on
fine texture such as grass, which the high-pass cannot tell from noise). Identifiability: the two
parameters separate only when the scene spans a range of intensities where both terms matter.
On a dark or narrow-range scene at high gain, ``sigma_shot`` is poorly determined (even 0); on a
bright scene at low gain, ``sigma_read``; the total std at the observed intensities, which is
what the network's noise map uses, is still estimated well.

Clipping (real bursts: blown highlights at the white level, shadows stuck at 0 after black
subtraction). Clipped pixels have no noise, so a bin inside a clipped region has a MAD of 0; such
data once pinned the fit at zero. Now (`clip_points`, `clip_mask`):

- The clip points are the white level (``white``, default 1.0) and the black level (``black``,
  default 0.0) when the data actually sit on them (nothing beyond, at least one value within
  ``CLIP_TOLERANCE``), and the data's own maximum / minimum when at least ``PILEUP_FRACTION`` of the
  values pile up there (a sensor that saturates below its nominal white level).
- A value within ``CLIP_TOLERANCE`` of a clip point is clipped; a pixel whose high-pass or box window
  (radius 2) touches a clipped value is left out (the clipped mask dilated by 2).
- Pixels that survive next to a clip point are a truncated sample (their clipped neighbours were
  removed), so bins whose intensity lies within ``CLIP_MARGIN`` noise stds of a clip point (std from a
  first fit) are dropped, and the fit is redone.
- A bin whose variance is degenerate (0, or below ``DEGENERATE_RATIO`` of the largest bin's) or that
  has fewer than ``min_count`` pixels is dropped, never weighted.
- Fallback: with fewer than ``2 * min_count`` (400) usable pixels, the estimate uses them anyway in
  smaller bins (``FALLBACK_MIN_COUNT`` pixels: noisier, not biased) and warns (`NoiseEstimateWarning`,
  naming ``--noise``); so does a fit whose every bin lies near a clip point (kept, biased low). With
  fewer than ``2 * FALLBACK_MIN_COUNT`` usable pixels, or fewer than two usable bins, `BurstKPNError`
  (naming ``--noise``). Never a silent zero: falling back to the clipped pixels would be worse than no
  estimate (they are what pinned the fit at zero).

Measured (tests/test_noise_estimation.py): on a ramp 0.02 -> x, 256x256x8, sigma (0.01, 0.005),
clipped to [0, 1] with 0-60 % saturated and optionally ~15 % black-clipped, the total std across the
unclipped range within 2.5 % (6 seeds; before: (2e-10, 0) at 23 % saturated); 0.1 % hot pixels +1 %.

Temporal estimate, `estimate_noise_temporal`, for frames aligned by whole pixels (as HDR+ does): the
per-pixel sample variance across the frames, binned by the per-pixel temporal mean, at pixels that are
- unclipped: no frame within ``CLIP_TOLERANCE`` of a clip point;
- static: the mean temporal variance of the 24 neighbours (5x5, the pixel itself left out, so that
  selecting on it does not bias the pixel's own variance) at most ``MOTION_FACTOR`` times the bin's
  floor (its lower quartile, per channel: motion and misalignment only add variance);
- flat: the lower half of the bin by the squared gradient of the temporal mean (for Gaussian noise a
  sample's mean and variance are independent, so this selection does not bias the variance either).
Each bin's variance is the median sample variance over the median of chi-square(N-1)/(N-1) (robust
to the motion that survives); then the same fit, with the same clip margin. Pixel positions next to a clip
point, where some frames clip, give censored bins instead (`_censored_bins`): a censored normal (Tobit) fit
of all their values with a mean per pixel, its small-sample bias measured on draws from the fitted model;
they carry the fit down to the clip point (on the darkest black-clipped test bursts, 0.96-1.01 of the true
noise, where the spread of the unclipped half of each pixel's values gave 0.76-0.88). Texture does not bias it
(the spatial estimate's weakness: on a static burst of the camera man at gain 1, spatial +31 %,
temporal -0.4 %); a moving block over 20 % of the frame is ignored (< 1 %). It needs >= 3 frames and
static content; residual sub-pixel misalignment inflates it (real hand-held burst: +7 % over the
frame, see `estimate_burst_noise`), and an interpolating warp or a noise-matching tile alignment
lowers it (`burstkpn.align.aligned_stack` instead of whole-pixel shifts: -15 % on the same burst).

`estimate_burst_noise` computes both and picks one (see its docstring): the lower of the two when
both are sound (each one's failure only adds variance), whichever is sound otherwise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import nnls
from scipy.stats import chi2

from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel, mills_ratio

_HIGH_PASS = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
_HIGH_PASS_GAIN = float((_HIGH_PASS**2).sum())  # 36
# Keeping only the pixels of lowest local residual energy lowers the measured variance even for
# pure noise; these factors undo that (measured on 8x256x256 white Gaussian noise; a test checks).
_SELECTION_BIAS = {0.5: 1.404, 1.0: 1.0}
_LEVEL_WINDOW = 5  # box mean for the local intensity; with the 3x3 high-pass, a pixel sees radius 2
_TEXTURE_WINDOW = 7

CLIP_TOLERANCE = 1e-4  # a value this close to a clip point counts as clipped ([0, 1] units)
PILEUP_FRACTION = 1e-3  # the data's max/min is a clip point when this share of values sits on it
CLIP_MARGIN = 3.0  # bins closer than this many noise stds to a clip point are dropped (truncation)
DEGENERATE_RATIO = 1e-5  # a bin variance below this fraction of the largest one is degenerate
MOTION_FACTOR = 2.0  # temporal: local variance above this x the bin's floor = motion or misalignment, rejected
MIN_TEMPORAL_FRAMES = 3
FALLBACK_MIN_COUNT = 32  # pixels per bin when fewer than 2 * min_count pixels are usable
NOISE_FLAG_HINT = "pass --noise SIGMA_READ,SIGMA_SHOT"


class NoiseEstimateWarning(UserWarning):
    """The noise estimate rests on too few usable pixels (clipped, moving or tiny burst)."""


# ----------------------------------------------------------------------------------------- clipping


def clip_points(values: np.ndarray, white: float = 1.0, black: float = 0.0,
                tol: float = CLIP_TOLERANCE) -> tuple[float | None, float | None]:
    """(low, high): the clip points that ``values`` actually hit, or None (see the module docstring)."""
    v = np.asarray(values)
    lo, hi = float(v.min()), float(v.max())
    need = max(1, int(np.ceil(PILEUP_FRACTION * v.size)))
    high = low = None
    if hi <= white + tol and hi >= white - tol:
        high = float(white)
    elif np.count_nonzero(v >= hi - tol) >= need:
        high = hi
    if lo >= black - tol and lo <= black + tol:
        low = float(black)
    elif np.count_nonzero(v <= lo + tol) >= need:
        low = lo
    if low is not None and high is not None and high - low <= 2 * tol:
        return None, None  # a constant burst: nothing is "clipped", it is simply flat (degenerate)
    return low, high


def clip_mask(values: np.ndarray, points: tuple[float | None, float | None],
              tol: float = CLIP_TOLERANCE) -> np.ndarray:
    """True where a value is within ``tol`` of (or beyond) an active clip point."""
    low, high = points
    v = np.asarray(values)
    mask = np.zeros(v.shape, dtype=bool)
    if high is not None:
        mask |= v >= high - tol
    if low is not None:
        mask |= v <= low + tol
    return mask


# ----------------------------------------------------------------------------------------- fitting


def _fit(ys: np.ndarray, vs: np.ndarray, ns: np.ndarray) -> NoiseLevel:
    # Weighted least squares with var's own scale: relative errors of a variance estimate are
    # ~ sqrt(2 / n), so weight each bin by sqrt(n) / var (degenerate bins were dropped before).
    w = np.sqrt(ns) / vs
    design = np.stack([np.ones_like(ys), np.clip(ys, 0, None)], axis=1) * w[:, None]
    (read_var, shot), _ = nnls(design, vs * w)
    return NoiseLevel(float(np.sqrt(read_var)), float(shot))


def _usable_bins(ys, vs, ns, min_count: int) -> np.ndarray:
    ok = (ns >= min_count) & np.isfinite(vs) & (vs > 0)
    if ok.any():
        ok &= vs >= DEGENERATE_RATIO * vs[ok].max()
    return ok


def _near_clip(ys: np.ndarray, level: NoiseLevel, points, margin: float = CLIP_MARGIN) -> np.ndarray:
    std = np.sqrt(level.sigma_read**2 + level.sigma_shot * np.clip(ys, 0, None))
    near = np.zeros(ys.shape, dtype=bool)
    low, high = points
    if high is not None:
        near |= ys > high - margin * std
    if low is not None:
        near |= ys < low + margin * std
    return near


def _fit_bins(ys, vs, ns, points, min_count: int) -> tuple[NoiseLevel | None, np.ndarray, str]:
    """Drop degenerate bins, fit, drop bins near a clip point, refit: (level or None, bins used, problem)."""
    ok = _usable_bins(ys, vs, ns, min_count)
    if ok.sum() < 2:
        return None, ok, f"only {int(ok.sum())} usable intensity bin(s)"
    first = _fit(ys[ok], vs[ok], ns[ok])
    keep = ok & ~_near_clip(ys, first, points)
    if keep.sum() < 2:  # everything is near a clip point: the truncation bias is the lesser evil
        return first, ok, f"all usable bins lie within {CLIP_MARGIN:g} noise std of a clip point (biased low)"
    return _fit(ys[keep], vs[keep], ns[keep]), keep, ""


def _bin_edges(level: np.ndarray, bins: int, min_count: int) -> np.ndarray:
    bins = max(2, min(bins, level.size // (2 * min_count)))  # small bursts: fewer, fuller bins
    return np.unique(np.quantile(level, np.linspace(0, 1, bins + 1)))


def _bin_index(level: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, level, side="right") - 1, 0, len(edges) - 2)


def _as_frames(burst: np.ndarray, what: str = "burst") -> np.ndarray:
    frames = np.asarray(burst, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or min(frames.shape[-2:]) < 8:
        raise BurstKPNError(f"noise estimation needs an (N, H, W) {what} of at least 8x8 px, got {frames.shape}")
    return frames


# ----------------------------------------------------------------------------------------- spatial


def _spatial_samples(frames: np.ndarray, points, use_mask: bool):
    """Per usable pixel: high-pass residual, local intensity, texture energy (1-D arrays)."""
    residual, level, texture = [], [], []
    radius = _LEVEL_WINDOW // 2
    crop = (slice(radius, -radius), slice(radius, -radius))
    dilate = np.ones((2 * radius + 1,) * 2, dtype=bool)
    for frame in frames:
        r = ndimage.convolve(frame, _HIGH_PASS, mode="reflect")
        if use_mask:
            bad = ndimage.binary_dilation(clip_mask(frame, points), dilate)
            good = (~bad).astype(np.float64)
            # texture = mean residual energy over the usable pixels of the window (clipped ones have none)
            energy = ndimage.uniform_filter(r**2 * good, _TEXTURE_WINDOW) / np.maximum(
                ndimage.uniform_filter(good, _TEXTURE_WINDOW), 1e-9)
            keep = ~bad[crop]
        else:
            energy = ndimage.uniform_filter(r**2, _TEXTURE_WINDOW)
            keep = np.ones(r[crop].shape, dtype=bool)
        residual.append(r[crop][keep])
        level.append(ndimage.uniform_filter(frame, _LEVEL_WINDOW)[crop][keep])
        texture.append(energy[crop][keep])
    return tuple(np.concatenate(v) for v in (residual, level, texture))


def _spatial_bins(residual, level, texture, bins: int, keep: float, min_count: int):
    edges = _bin_edges(level, bins, min_count)
    which = _bin_index(level, edges)
    ys, vs, ns = [], [], []
    for k in range(len(edges) - 1):
        sel = which == k
        if sel.sum() < min_count:
            continue
        smooth_part = texture[sel] <= np.quantile(texture[sel], keep)
        r = residual[sel][smooth_part]
        mad = np.median(np.abs(r - np.median(r)))
        ys.append(np.median(level[sel][smooth_part]))
        vs.append((1.4826 * mad) ** 2 / _HIGH_PASS_GAIN * _SELECTION_BIAS[keep])
        ns.append(r.size)
    return np.array(ys), np.array(vs), np.array(ns)


def binned_noise_variance(burst: np.ndarray, bins: int = 16, keep: float = 0.5, min_count: int = 200,
                          white: float = 1.0, black: float = 0.0, mask_clipped: bool = True):
    """Noise variance against intensity: (intensities (K,), variances (K,), counts (K,)).

    ``keep``: fraction of each bin's pixels kept (0.5, or 1.0 for all).
    burst: (N, H, W) or (H, W) linear. Bins hold equal numbers of pixels (quantiles of intensity).
    ``mask_clipped``: leave out pixels whose windows touch a clip point (module docstring). Bins are
    returned as measured, degenerate ones included (`estimate_noise` drops them).
    """
    if keep not in _SELECTION_BIAS:
        raise ValueError(f"keep must be one of {sorted(_SELECTION_BIAS)}, got {keep}")
    frames = _as_frames(burst)
    points = clip_points(frames, white, black)
    samples = _spatial_samples(frames, points, mask_clipped)
    if samples[0].size < 2 * min_count:
        raise BurstKPNError(f"too few unclipped pixels ({samples[0].size}) to estimate the noise level ({NOISE_FLAG_HINT})")
    ys, vs, ns = _spatial_bins(*samples, bins, keep, min_count)
    if len(ys) < 2:
        raise BurstKPNError(f"burst too small or too flat to estimate its noise level ({NOISE_FLAG_HINT})")
    return ys, vs, ns


@dataclass(frozen=True)
class _Estimate:
    level: NoiseLevel | None
    pixels: int  # usable pixels (spatial: per frame, pooled; temporal: per pixel position)
    bins: int  # bins in the final fit
    problem: str  # why it is unreliable, "" when fine
    median_intensity: float  # median of the unclipped intensities
    censored: int = 0  # temporal: censored bins (near a clip point) in the final fit


def _spatial(burst: np.ndarray, bins: int, white: float, black: float, min_count: int = 200) -> _Estimate:
    frames = _as_frames(burst)
    points = clip_points(frames, white, black)
    unclipped = frames[~clip_mask(frames, points)]
    median = float(np.median(unclipped)) if unclipped.size else float(np.median(frames))
    samples = _spatial_samples(frames, points, use_mask=True)
    count = samples[0].size
    problem = ""
    if count < 2 * min_count:  # fallback: the few usable pixels, in smaller bins (noisier, still unbiased)
        problem = f"only {count} pixel(s) away from clipped values, estimated from them in bins of {FALLBACK_MIN_COUNT}+"
        min_count = FALLBACK_MIN_COUNT
        if count < 2 * min_count:
            raise BurstKPNError(f"burst too small or too clipped to estimate its noise level: only {count} pixel(s) "
                                f"away from clipped values ({NOISE_FLAG_HINT})")
    ys, vs, ns = _spatial_bins(*samples, bins, 0.5, min_count)
    level, used, fit_problem = _fit_bins(ys, vs, ns, points, min_count)
    if level is None:
        raise BurstKPNError(f"burst too small, too flat or too clipped to estimate its noise level: {fit_problem} "
                            f"away from clipped values ({NOISE_FLAG_HINT})")
    problem = "; ".join(p for p in (problem, fit_problem) if p)
    return _Estimate(level, int(count), int(used.sum()), problem, median)


def estimate_noise(burst: np.ndarray, bins: int = 16, white: float = 1.0, black: float = 0.0) -> NoiseLevel:
    """Estimate the `NoiseLevel` of a linear (N, H, W) burst from its spatial high-pass residual.

    Clipped neighbourhoods are left out (module docstring). With too few usable pixels a
    `NoiseEstimateWarning` is issued and the fallback (all pixels) is returned; `BurstKPNError` if
    even that fails. For a burst, `estimate_burst_noise` also measures the temporal variance.
    """
    est = _spatial(burst, bins, white, black)
    if est.problem:
        warnings.warn(f"noise estimate unreliable: {est.problem} ({NOISE_FLAG_HINT})", NoiseEstimateWarning, stacklevel=2)
    return est.level


# ----------------------------------------------------------------------------------------- temporal


def _chi2_median_factor(dof: int) -> float:
    """Median of s^2 / var for Gaussian samples with ``dof`` degrees of freedom."""
    return float(chi2.ppf(0.5, dof) / dof)


CENSORED_MARGIN = 0.0  # censored bins closer than this many noise stds to their clip point are dropped
CENSORED_REACH = 2  # censored bins: pixel positions with a clipped value within this many pixels (neighbours only)
_TOBIT_STEPS = 20  # golden-section steps on log sigma (the bracket, x/4 to 4x, shrinks by 0.618 per step)
_NEWTON_STEPS = 5  # per-pixel mean updates per sigma (warm-started from the previous sigma's)
CENSORED_MAX_PIXELS = 2000  # per censored bin: more pixels only cost time (8 values each: std error ~1 %)


def _pixel_means(u: np.ndarray, clipped: np.ndarray, sigma: float, mu: np.ndarray | None = None,
                 beyond: bool = False) -> np.ndarray:
    """u (N, P) values measured from the clip point (>= 0), clipped (N, P): at it -> (P,) each pixel's mean
    maximising its censored normal likelihood at noise std ``sigma`` (Newton steps on a concave function). The
    mean is >= 0 (a scene is not darker than black) unless ``beyond`` (a scene can be brighter than white: down to
    -10 sigma, where a pixel's values are all clipped and tell nothing of sigma)."""
    free = (~clipped).sum(axis=0)
    k = clipped.sum(axis=0)
    total = np.where(clipped, 0.0, u).sum(axis=0)
    if mu is None:
        mu = np.where(free > 0, total / np.maximum(free, 1), 0.0)
    for _ in range(_NEWTON_STEPS):
        a = -mu / sigma
        mills = mills_ratio(a)
        grad = (total - free * mu) / sigma**2 - k * mills / sigma
        hess = -(free + k * mills * (mills + a)) / sigma**2
        mu = np.maximum(mu - grad / np.minimum(hess, -1e-12), -10.0 * sigma if beyond else 0.0)
    return mu


def _censored_fit(u: np.ndarray, clipped: np.ndarray, guess: float, beyond: bool = False) -> tuple[float, np.ndarray]:
    """The noise std of a bin of pixels near a clip point, and their means (P,): the maximum over sigma of the
    censored (Tobit) likelihood with a mean per pixel (profiled out), golden-section search on log sigma."""
    from scipy.special import log_ndtr

    mu = None

    def loglik(log_sigma: float) -> float:
        nonlocal mu
        sigma = float(np.exp(log_sigma))
        mu = _pixel_means(u, clipped, sigma, mu, beyond)
        z = (u - mu) / sigma
        return float(np.where(clipped, 0.0, -0.5 * z * z - log_sigma).sum() + (clipped.sum(axis=0) * log_ndtr(-mu / sigma)).sum())

    lo, hi = np.log(guess / 4), np.log(guess * 4)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loglik(a), loglik(b)
    for _ in range(_TOBIT_STEPS):
        if fa > fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loglik(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loglik(b)
    sigma = float(np.exp(0.5 * (lo + hi)))
    return sigma, _pixel_means(u, clipped, sigma, mu, beyond)


def _censored_std(u: np.ndarray, clipped: np.ndarray, beyond: bool = False, seed: int = 0) -> tuple[float, np.ndarray]:
    """`_censored_fit` with its bias taken out: a mean per pixel from N values costs degrees of freedom (with
    no clipping the fit is sqrt((N - 1) / N) of the truth), by an amount that depends on how much is censored;
    the fit is repeated on draws from the fitted model (the same means, noise std 1: the fit is scale-
    equivariant) and divided by what it gives there. Returns (std, pixel means (P,))."""
    spread = np.std(u, axis=0, ddof=1)  # each pixel's own spread: the clip only narrows it (to ~0.6 sigma at worst)
    guess = float(np.median(spread[spread > 0])) if (spread > 0).any() else float(np.std(u)) + 1e-12
    sigma, mu = _censored_fit(u, clipped, guess, beyond)
    draws = mu[None] / sigma + np.random.default_rng(seed).standard_normal(u.shape)
    at_clip = draws <= 0
    bias, _ = _censored_fit(np.where(at_clip, 0.0, draws), at_clip, 1.0, beyond)
    return sigma / bias, mu


def _censored_bins(stack: np.ndarray, points, bins: int, min_count: int):
    """Bins near the clip points, where some frames clip: (intensity, variance, pixels) each (K,).

    Pixel positions whose neighbours (within `CENSORED_REACH` px, the pixel itself left out, so that the
    choice does not depend on its own noise) hold a clipped value, and whose own values do not touch the other
    clip point, binned by the mean of their 24 neighbours' medians; per bin, the lower half by gradient of the
    median image (flat), then a censored normal (Tobit) fit of all their values, clipped or not, with a mean
    per pixel (`_censored_std`). The bin's intensity is its pixels' fitted mean. Replaces the spread of the
    half of the values away from the clip point, which needed fewer than half of them clipped and so lost the
    darkest pixels (estimates 0.76-0.88 of the truth on the darkest black-clipped bursts, docs/experiments).
    """
    low, high = points
    uu, cc, levels, flats, sides = [], [], [], [], []
    side = 2 * CENSORED_REACH + 1
    for c in range(stack.shape[0]):
        frames = stack[c]
        at_low, at_high = clip_mask(frames, (low, None)), clip_mask(frames, (None, high))
        median = np.median(frames, axis=0)
        near_low = np.full(median.shape, low is not None)
        if low is not None and high is not None:
            near_low = median - low < high - median
        near_clip = np.where(near_low, at_low, at_high)
        other = np.where(near_low, at_high, at_low).any(axis=0)
        hit = near_clip.any(axis=0).astype(np.float64)
        neighbours = ndimage.uniform_filter(hit, side) * side**2 - hit
        box = _LEVEL_WINDOW**2
        level = (ndimage.uniform_filter(median, _LEVEL_WINDOW) * box - median) / (box - 1)
        ok = (neighbours > 0.5) & ~other
        if high is not None:  # a scene above white has no floor: where the neighbours sit at white, it tells nothing
            ok &= near_low | (level < high - CLIP_TOLERANCE)
        gy, gx = np.gradient(median)
        u = np.where(near_low, frames - (low if low is not None else 0.0), (high if high is not None else 0.0) - frames)
        uu.append(np.maximum(u[:, ok], 0.0))
        cc.append(near_clip[:, ok])
        levels.append(level[ok])
        flats.append((gy**2 + gx**2)[ok])
        sides.append(near_low[ok])
    u, clipped = np.concatenate(uu, axis=1), np.concatenate(cc, axis=1)
    level, flatness, black_side = np.concatenate(levels), np.concatenate(flats), np.concatenate(sides)
    ys, vs, ns = [], [], []
    for near_black in (True, False):  # each clip point's pixels binned on their own
        mine = np.flatnonzero(black_side == near_black)
        if mine.size < 2 * min_count:
            continue
        edges = _bin_edges(level[mine], bins, min_count)
        which = _bin_index(level[mine], edges)
        for k in range(len(edges) - 1):
            sel = mine[which == k]
            if sel.size < min_count:
                continue
            sel = sel[flatness[sel] <= np.quantile(flatness[sel], TEMPORAL_FLAT_KEEP)]
            n_flat = sel.size
            sel = sel[:: max(1, -(-sel.size // CENSORED_MAX_PIXELS))]  # a regular subsample of the flat ones
            if not clipped[:, sel].any():
                continue
            std, mu = _censored_std(u[:, sel], clipped[:, sel], beyond=not near_black, seed=k)
            if mu.mean() < 0:  # the bin's scene lies beyond white on average: no level to fit the variance at
                continue
            ys.append(low + float(mu.mean()) if near_black else high - float(mu.mean()))
            vs.append(std**2)
            ns.append(n_flat // 2)  # censored values carry less than a full sample's information
    return np.array(ys), np.array(vs), np.array(ns)


def _fit_with_censored(ys, vs, ns, yc, vc, nc, points, min_count: int):
    """`_fit_bins` for the temporal estimate, whose bins near a clip point come from censored pixels.

    Regular bins (unclipped pixel positions) within ``CLIP_MARGIN`` std of a clip point are truncated samples
    and dropped (as in `_fit_bins`); censored bins are kept there, down to ``CENSORED_MARGIN`` std of the clip
    point. Returns (level or None, regular bins used (mask), censored bins used (mask), problem).
    """
    if yc.size == 0:
        level, used, problem = _fit_bins(ys, vs, ns, points, min_count)
        return level, used, np.zeros(0, dtype=bool), problem
    ok = _usable_bins(ys, vs, ns, min_count) if ys.size else np.zeros(0, dtype=bool)
    okc = _usable_bins(yc, vc, nc, min_count // 2)
    if ok.sum() + okc.sum() < 2:
        return None, ok, okc, f"only {int(ok.sum() + okc.sum())} usable intensity bin(s)"
    level = _fit(np.concatenate([ys[ok], yc[okc]]), np.concatenate([vs[ok], vc[okc]]), np.concatenate([ns[ok], nc[okc]]))
    for _ in range(2):  # the margins depend on the level: fit, select, refit
        keep = ok & ~_near_clip(ys, level, points)
        keepc = okc & _near_clip(yc, level, points)
        if CENSORED_MARGIN > 0:
            keepc &= ~_near_clip(yc, level, points, margin=CENSORED_MARGIN)
        if keep.sum() + keepc.sum() < 2:
            return level, ok, okc, f"all usable bins lie within {CLIP_MARGIN:g} noise std of a clip point (biased low)"
        level = _fit(np.concatenate([ys[keep], yc[keepc]]), np.concatenate([vs[keep], vc[keepc]]),
                     np.concatenate([ns[keep], nc[keepc]]))
    return level, keep, keepc, ""


TEMPORAL_FLAT_KEEP = 0.5  # temporal: share of each bin's static pixels kept, those of lowest gradient


def _temporal_bins(mean, s2, local, gradient, channel, edges, min_count: int, dof: int):
    """Per bin: (intensity, variance, pixels used, static pixels)."""
    factor = _chi2_median_factor(dof)
    # Motion and misalignment only add variance, so the lower quartile of a bin's local variances is a
    # floor for its noise level: divided by that quartile's place for static pixels (24 neighbours),
    # it estimates the level; per channel, as CFA planes or colours may differ in noise.
    quartile = float(chi2.ppf(0.25, 24 * dof) / (24 * dof))
    which = _bin_index(mean, edges)
    ys, vs, ns, static_counts = [], [], [], []
    for k in range(len(edges) - 1):
        sel = np.flatnonzero(which == k)
        if sel.size < min_count:
            continue
        static = np.zeros(sel.size, dtype=bool)
        for c in np.unique(channel[sel]):
            mine = channel[sel] == c
            loc = local[sel][mine]
            known = loc[np.isfinite(loc)]  # inf: no unclipped neighbour to judge by (never static)
            if known.size:
                static[mine] = loc <= MOTION_FACTOR * np.quantile(known, 0.25) / quartile
        if static.sum() < min_count:
            continue
        idx = sel[static]
        g = gradient[idx]
        idx = idx[g <= np.quantile(g, TEMPORAL_FLAT_KEEP)]
        ys.append(np.median(mean[idx]))
        vs.append(np.median(s2[idx]) / factor)
        ns.append(idx.size)
        static_counts.append(int(static.sum()))
    return np.array(ys), np.array(vs), np.array(ns), np.array(static_counts)


def _temporal(aligned: np.ndarray, bins: int, white: float, black: float, min_count: int = 200) -> _Estimate:
    stack = np.asarray(aligned, dtype=np.float64)
    if stack.ndim == 3:
        stack = stack[None]
    if stack.ndim != 4 or min(stack.shape[-2:]) < 8:
        raise BurstKPNError(f"temporal noise estimation needs (N, H, W) or (C, N, H, W) frames of at least 8x8 px, "
                            f"got {np.shape(aligned)}")
    n = stack.shape[1]
    points = clip_points(stack, white, black)
    clipped_values = clip_mask(stack, points)
    unclipped_vals = stack[~clipped_values]
    median = float(np.median(unclipped_vals)) if unclipped_vals.size else float(np.median(stack))
    if n < MIN_TEMPORAL_FRAMES:
        return _Estimate(None, 0, 0, f"{n} frame(s): a temporal estimate needs {MIN_TEMPORAL_FRAMES}", median)
    clipped = clipped_values.any(axis=1)  # (C, H, W): a frame clipped there
    box = _LEVEL_WINDOW**2
    means, s2s, locals_, gradients, channels = [], [], [], [], []
    for c in range(stack.shape[0]):
        frames = stack[c]
        good = ~clipped[c]
        mean = frames.mean(axis=0)
        s2 = frames.var(axis=0, ddof=1)
        w = good.astype(np.float64)
        # local temporal variance of the unclipped neighbours, the pixel itself left out: selecting on
        # it does not bias the pixel's own variance
        num = ndimage.uniform_filter(s2 * w, _LEVEL_WINDOW) * box - s2 * w
        den = ndimage.uniform_filter(w, _LEVEL_WINDOW) * box - w
        local = np.where(den > 0.5, num / np.maximum(den, 1e-9), np.inf)
        # misalignment adds ~ |gradient|^2 x (residual shift)^2: flat = low gradient of the mean
        gy, gx = np.gradient(mean)
        gradient = gy**2 + gx**2
        means.append(mean[good])
        s2s.append(s2[good])
        locals_.append(local[good])
        gradients.append(gradient[good])
        channels.append(np.full(int(good.sum()), c, dtype=np.int16))
    mean, s2, local, gradient, channel = (np.concatenate(v) for v in (means, s2s, locals_, gradients, channels))
    # pixel positions where some frames clip are not lost: near a clip point they give censored bins
    yc = vc = nc = np.zeros(0)
    if clipped_values.any():
        yc, vc, nc = _censored_bins(stack, points, bins, min_count)
    ys = vs = ns = static = np.zeros(0)
    if mean.size >= 2 * min_count:
        edges = _bin_edges(mean, bins, min_count)
        ys, vs, ns, static = _temporal_bins(mean, s2, local, gradient, channel, edges, min_count, n - 1)
    if len(ys) + len(yc) < 2:
        why = (f"only {mean.size} unclipped pixel position(s)" if mean.size < 2 * min_count
               else "fewer than two intensity bins of static, unclipped pixels")
        return _Estimate(None, int(mean.size), 0, why, median)
    level, used, used_censored, problem = _fit_with_censored(ys, vs, ns, yc, vc, nc, points, min_count)
    if level is None:
        return _Estimate(None, int(mean.size), 0, problem + " of static, unclipped pixels", median)
    pixels = int(static[used].sum()) + 2 * int(nc[used_censored].sum())
    return _Estimate(level, pixels, int(used.sum() + used_censored.sum()), problem, median,
                     censored=int(used_censored.sum()))


def estimate_noise_temporal(frames: np.ndarray, bins: int = 16, white: float = 1.0, black: float = 0.0) -> NoiseLevel:
    """Estimate the `NoiseLevel` from the variance across pre-aligned frames.

    frames: (N, H, W) (or (C, N, H, W): channels of one burst, pooled), aligned to whole pixels (an
    interpolating warp low-passes the noise). See the module docstring. Raises `BurstKPNError` (naming
    ``--noise``) when fewer than 3 frames or too few static, unclipped pixels are left; warns
    (`NoiseEstimateWarning`) when every usable bin lies near a clip point.
    """
    est = _temporal(frames, bins, white, black)
    if est.level is None:
        raise BurstKPNError(f"cannot estimate the noise level across frames: {est.problem} ({NOISE_FLAG_HINT})")
    if est.problem:
        warnings.warn(f"noise estimate unreliable: {est.problem} ({NOISE_FLAG_HINT})", NoiseEstimateWarning, stacklevel=2)
    return est.level


# ----------------------------------------------------------------------------------------- both


def integer_aligned(frames: np.ndarray) -> np.ndarray:
    """(N, H, W) or (C, N, H, W) -> the same frames moved onto frame 0 by whole-pixel global shifts,
    cropped to the area that every frame covers (no interpolation, so the noise is untouched).
    The shifts (`burstkpn.align.estimate_global_shifts`) are found on the channels' mean."""
    import torch

    from burstkpn.align import estimate_global_shifts

    stack = np.asarray(frames, dtype=np.float32)
    four = stack if stack.ndim == 4 else stack[None]
    shifts = estimate_global_shifts(torch.from_numpy(four.mean(axis=0))[None])[0].round().long().numpy()
    h, w = four.shape[-2:]
    top, left = max(0, shifts[:, 0].max()), max(0, shifts[:, 1].max())
    bottom, right = h + min(0, shifts[:, 0].min()), w + min(0, shifts[:, 1].min())
    if bottom - top < 8 or right - left < 8:
        return four[..., :0, :0] if stack.ndim == 4 else four[0][..., :0, :0]
    # aligned_i(p) = frame_i(p - shift_i) (`burstkpn.align.warp_frames`); p over the common window
    out = np.stack([four[:, i, top - dy : bottom - dy, left - dx : right - dx] for i, (dy, dx) in enumerate(shifts)], axis=1)
    return out if stack.ndim == 4 else out[0]


SUBSAMPLE_PIXELS = 2**18  # per frame and channel: larger bursts are estimated on a grid of tiles this big in all
SUBSAMPLE_TILE = 128
SHIFT_CROP = 512  # the whole-pixel global shifts are found on a central crop this big


def subsample_tiles(frames: np.ndarray, max_pixels: int = SUBSAMPLE_PIXELS,
                    tile: int = SUBSAMPLE_TILE) -> tuple[np.ndarray, np.ndarray] | None:
    """A grid of tiles of a large burst, as they are and moved onto frame 0 by whole pixels.

    frames: (C, N, H, W). Returns (unaligned, aligned), each (C * T, N, tile, tile): T tiles on a regular
    grid (about ``max_pixels / tile**2`` of them) over the area every shifted frame covers, the channels and
    tiles stacked as channels of one burst (the estimators pool channels); the aligned tiles are cut from
    each frame at the tile's place minus the frame's whole-pixel global shift, found on a central crop
    (`burstkpn.align.estimate_global_shifts`), so no pixel is interpolated. None when the burst has at most
    ``max_pixels`` per frame (estimate on all of it) or shifts too large for the grid.
    """
    import torch

    from burstkpn.align import estimate_global_shifts

    c, n, h, w = frames.shape
    if h * w <= max_pixels or min(h, w) < 4 * tile:
        return None
    cy, cx = max(0, (h - SHIFT_CROP) // 2), max(0, (w - SHIFT_CROP) // 2)
    centre = frames[:, :, cy : cy + SHIFT_CROP, cx : cx + SHIFT_CROP].mean(axis=0)
    shifts = estimate_global_shifts(torch.from_numpy(np.ascontiguousarray(centre, dtype=np.float32))[None])[0]
    shifts = shifts.round().long().numpy()
    margin = int(np.abs(shifts).max())
    if h - 2 * margin < 2 * tile or w - 2 * margin < 2 * tile:
        return None
    count = max(2, int(np.sqrt(max_pixels / tile**2)))
    tops = np.linspace(margin, h - margin - tile, count).round().astype(int)
    lefts = np.linspace(margin, w - margin - tile, count).round().astype(int)
    places = [(top, left) for top in tops for left in lefts]
    unaligned = np.stack([frames[:, :, t : t + tile, x : x + tile] for t, x in places], axis=1)
    # aligned_i(p) = frame_i(p - shift_i), as `integer_aligned`
    aligned = np.stack([np.stack([frames[:, i, t - dy : t - dy + tile, x - dx : x - dx + tile]
                                  for i, (dy, dx) in enumerate(shifts)], axis=1) for t, x in places], axis=1)
    return unaligned.reshape(-1, n, tile, tile), aligned.reshape(-1, n, tile, tile)


def total_std(level: NoiseLevel, y: float) -> float:
    """Total noise std of ``level`` at intensity ``y``."""
    return float(np.sqrt(level.sigma_read**2 + level.sigma_shot * max(y, 0.0)))


@dataclass(frozen=True)
class BurstNoiseEstimate:
    """Both noise estimates of a burst and the one chosen (`estimate_burst_noise`).

    ``noise``: the chosen level; ``chosen``: ``"temporal"`` or ``"spatial"``; ``spatial`` /
    ``temporal``: each estimate, None where it could not be made; ``intensity``: the median unclipped
    intensity, where the two are compared; ``ratio``: temporal / spatial total std there (nan if one is
    missing); ``disagree``: ratio beyond 2x either way; ``reliable``: False when the chosen estimate
    is a fallback (warned); ``description``: one line for people.
    """

    noise: NoiseLevel
    chosen: str
    spatial: NoiseLevel | None
    temporal: NoiseLevel | None
    intensity: float
    ratio: float
    disagree: bool
    reliable: bool
    description: str


def _fmt(level: NoiseLevel | None) -> str:
    return "none" if level is None else f"({level.sigma_read:.4g}, {level.sigma_shot:.4g})"


def estimate_burst_noise(frames: np.ndarray, aligned: np.ndarray | None = None, bins: int = 16,
                         white: float = 1.0, black: float = 0.0, min_static_pixels: int = 2000,
                         max_pixels: int | None = SUBSAMPLE_PIXELS) -> BurstNoiseEstimate:
    """Spatial and temporal noise estimates of a burst, and the one to use.

    frames: (N, H, W) linear, frame 0 the reference, or (C, N, H, W) channels / CFA planes of one burst
    (one noise model for all, as `burstkpn denoise` assumes). aligned: the same frames moved onto the
    reference by whole pixels (same layout, may be cropped); an interpolating warp, or a tile alignment
    that matches noise in flat regions, lowers the temporal variance. None: the frames as they are and
    the frames moved by whole-pixel global shifts (`integer_aligned`) both compete, and the lower
    temporal estimate is kept (misalignment only adds variance); local motion is rejected per pixel.

    Which wins: the spatial estimate (pooled frames, as `estimate_noise`) always exists; the temporal
    one counts when the burst has >= 3 frames and it rests on at least ``min_static_pixels`` static,
    flat, unclipped pixel positions in at least 3 intensity bins. When both count, the one with the
    lower total noise std at the median unclipped intensity wins, because each one's failure only adds
    variance: fine texture inflates the spatial estimate (+30 % at gain 1 on grass-like texture), motion
    and residual sub-pixel misalignment inflate the temporal one (measured on the hand-held HDR+ burst of
    tests/data: +7 % over the whole frame and up to +25 % on textured crops after whole-pixel alignment,
    the excess sitting in the textured bright bins; on static synthetic bursts both are within 1 %).
    When the chosen estimate is a fallback, a `NoiseEstimateWarning` is issued and ``reliable`` is
    False; when neither can be made, `BurstKPNError` (naming ``--noise``).

    Bursts of more than ``max_pixels`` per frame (and no ``aligned``) are estimated on a regular grid of
    128-px tiles, ``max_pixels`` in all (`subsample_tiles`): the estimate needs a few thousand pixels per
    intensity bin, not millions (timed in docs/speed-pipeline.md; the same estimate within a few %,
    tests/test_noise_estimation.py). None: every pixel.
    """
    stack = np.asarray(frames, dtype=np.float32)
    if stack.ndim not in (3, 4):
        raise BurstKPNError(f"expected an (N, H, W) or (C, N, H, W) burst, got shape {stack.shape}")
    tiles = None
    if aligned is None and max_pixels is not None and stack.shape[-3] >= 2:
        tiles = subsample_tiles(stack if stack.ndim == 4 else stack[None], max_pixels)
    if tiles is not None:
        stack, aligned_tiles = tiles
    pooled = stack.reshape(-1, *stack.shape[-2:])
    try:
        spatial, s_error = _spatial(pooled, bins, white, black), ""
    except BurstKPNError as exc:
        spatial, s_error = None, str(exc)
    points = clip_points(stack, white, black)
    unclipped = stack[~clip_mask(stack, points)]
    intensity = float(np.median(unclipped if unclipped.size else stack))
    n = stack.shape[-3]
    temporal = None
    if n >= MIN_TEMPORAL_FRAMES:
        if tiles is not None:
            candidates = [stack, aligned_tiles]
        elif aligned is not None:
            candidates = [np.asarray(aligned, dtype=np.float32)]
        else:
            candidates = [stack, integer_aligned(stack)]
        for moved in candidates:
            if moved.ndim < 3 or min(moved.shape[-2:]) < 8:
                continue
            est = _temporal(moved, bins, white, black)
            if temporal is None or temporal.level is None or (
                    est.level is not None and total_std(est.level, intensity) < total_std(temporal.level, intensity)):
                temporal = est
    spatial_ok = spatial is not None and not spatial.problem
    temporal_ok = (temporal is not None and temporal.level is not None and not temporal.problem
                   and temporal.pixels >= min_static_pixels and temporal.bins >= 3)
    s_level = spatial.level if spatial is not None else None
    t_level = temporal.level if temporal is not None else None
    if temporal is None:
        t_why = f"temporal: needs {MIN_TEMPORAL_FRAMES} frames, got {n}"
    elif temporal.level is None or temporal.problem:
        t_why = f"temporal: {temporal.problem}"
    else:
        t_why = f"temporal: {temporal.pixels} static pixels in {temporal.bins} bins" + (
            f" ({temporal.censored} censored, near a clip point)" if temporal.censored else "")
    # the spatial estimate only sees pixels whose whole neighbourhood is unclipped: where the bulk of the
    # burst lies within a few noise std of a clip point, those are a truncated sample (biased low), and the
    # temporal estimate, whose bins there come from censored pixels, is the one to trust
    truncated = (temporal_ok and temporal.censored > 0
                 and bool(_near_clip(np.array([intensity]), t_level, points)[0]))
    if spatial_ok and temporal_ok and truncated:
        chosen, reliable = "temporal", True
        why = (f"the median unclipped intensity lies within {CLIP_MARGIN:g} noise std of a clip point, where the "
               f"spatial estimate is truncated; {t_why}")
    elif spatial_ok and temporal_ok:
        reliable = True
        chosen = "temporal" if total_std(t_level, intensity) <= total_std(s_level, intensity) else "spatial"
        why = f"the lower of both; {t_why}"
    elif temporal_ok:
        chosen, reliable = "temporal", True
        why = f"{t_why}; spatial: " + (spatial.problem if spatial is not None else s_error)
    elif spatial is not None and (spatial_ok or t_level is None or temporal.problem):
        chosen, reliable = "spatial", spatial_ok
        why = t_why + (f"; spatial: {spatial.problem}" if spatial.problem else "")
    elif t_level is not None:  # both fall short: a sound temporal fit on few pixels beats a fallback
        chosen, reliable = "temporal", False
        why = f"spatial: {spatial.problem if spatial is not None else s_error}; {t_why}"
    else:
        raise BurstKPNError(f"cannot estimate the burst's noise level: spatial: {s_error}; {t_why}")
    noise = t_level if chosen == "temporal" else s_level
    ratio = float("nan")
    if s_level is not None and t_level is not None and total_std(s_level, intensity) > 0:
        ratio = total_std(t_level, intensity) / total_std(s_level, intensity)
    disagree = bool(np.isfinite(ratio) and (ratio > 2 or ratio < 0.5))
    if not reliable:
        warnings.warn(f"noise estimate unreliable ({why}); {NOISE_FLAG_HINT}", NoiseEstimateWarning, stacklevel=2)
    description = (
        f"noise (sigma_read, sigma_shot) = {_fmt(noise)} from the {chosen} estimate [{why}]; spatial {_fmt(s_level)}, "
        f"temporal {_fmt(t_level)}, temporal/spatial std at the median unclipped intensity {intensity:.4g}: {ratio:.2f}"
        + (" - they disagree by more than 2x" if disagree else "") + ("" if reliable else f" - unreliable, {NOISE_FLAG_HINT}")
    )
    return BurstNoiseEstimate(noise, chosen, s_level, t_level, intensity, ratio, disagree, reliable, description)
