"""Evaluation on colour test sets (``burstkpn synth --colour bayer|rgb``; issue 22, part 5).

A colour burst is handled as its planes, (C, N, h, w): the 4 RGGB planes of a Bayer mosaic at half
resolution (`models.planar.bayer_to_planes`: other CFA layouts flipped to RGGB), or the 3 channels of
linear camera RGB. A colour `Method`'s ``denoise`` maps planes (C, N, h, w) + noise -> (C, h, w):

- ``reference``, ``average``: per plane; ``aligned-average``: one global alignment for all planes,
  measured on the green planes' mean (as `models.planar.predict_planar` pre-aligns), then the mean;
- ``hdrplus``: HDR+ with one tile alignment for all planes (found on their mean, as HDR+ aligns on the
  2x2 Bayer mean) and the Wiener merge per plane (`hdrplus_planes`);
- ``cbm3d-merged``: CBM3D (`bm3d.bm3d_rgb`, opponent colour space) on the HDR+ merge without spatial
  shrinkage, in **linear camera RGB** (the choice: the noise model is known there, whereas after white
  balance, colour matrix, gamma and tone curve it is neither white nor known): a Bayer merge is demosaiced
  by the camera pipeline's own demosaic (`camera.demosaic`, Malvar 2004) and CBM3D's output sampled back onto
  the CFA; the noise as the grayscale ``bm3d-merged`` row, per channel (generalised Anscombe transform at gains
  1-2, one effective σ above, each channel's merge variance factor);
- any other grayscale baseline by name, per plane;
- a weights file: a grayscale model runs on each plane on its own, pre-aligned by one global alignment found
  on the green planes (``NAME per-plane``, what
  ``burstkpn denoise`` does today), a joint model (`models.planar`) once on all planes (``NAME joint``
  unless its card names it), both through `pipeline.denoise_tile`, the dispatch ``denoise`` uses.

Scores per burst (`colour_scores`): **raw**: the planes in linear camera raw, white level divided out,
clipped to [0, 1], `models.planar.plane_border` cropped (8 image px), PSNR over all planes together, SSIM
the planes' mean (``raw_curve=True``: through the sRGB curve first, the paper's grayscale protocol, as
`models.planar.planes_psnr`); **sRGB**: truth and output developed by the burst's own camera
(`camera.process` with `TestSet.camera_params`, white level divided out; Bayer demosaiced), 8-px border
cropped, PSNR over R, G, B together, SSIM the channels' mean. Results go into the grayscale table machinery
(`evaluate.Result` rows, one per method x gain, with the sRGB scores beside): two Markdown tables (raw, sRGB)
and one CSV.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from burstkpn import baselines
from burstkpn.errors import BurstKPNError
from burstkpn.evaluate import (
    Evaluation,
    Method,
    Result,
    _csv_text,
    _named_apart,
    _save_figure,
    describe_testset,
    limit_methods,
    markdown_table,
    mean_of,
    run_methods,
)
from burstkpn.io.images import atomic_output
from burstkpn.metrics import BORDER
from burstkpn.noise import NoiseLevel
from burstkpn.testset import TestSet

# the methods written for planes; any other name of `baselines.REGISTRY` runs per plane
COLOUR_BASELINES = ("reference", "average", "aligned-average", "hdrplus", "cbm3d-merged")
CSV_FIELDS = ("method", "gain", "psnr_raw", "ssim_raw", "psnr_srgb", "ssim_srgb", "seconds_per_burst", "n_bursts", "note")
PER_BURST_FIELDS = ("method", "gain", "scene", "source", "psnr_raw", "ssim_raw", "psnr_srgb", "ssim_srgb", "seconds")
PLANES = {"bayer": 4, "rgb": 3}
RAW_CAPTION = ("Raw: PSNR (dB) / SSIM in linear camera raw, white level divided out, clipped to [0, 1], data range 1, "
               "8-px border cropped (4 on Bayer planes), PSNR over all planes, SSIM their mean")
RAW_CURVE_CAPTION = ("Raw: PSNR (dB) / SSIM of the camera raw planes in sRGB-curve space (the grayscale protocol), "
                     "white level divided out, clipped to [0, 1], data range 1, 8-px border cropped (4 on Bayer planes), "
                     "PSNR over all planes, SSIM their mean")
SRGB_CAPTION = ("sRGB: PSNR (dB) / SSIM after each burst's own camera processing (`camera.process`: white balance, "
                "demosaic for Bayer, colour matrix, gamma, tone curve) of truth and output, white level divided out, "
                "data range 1, 8-px border cropped, PSNR over R, G, B, SSIM their mean")


@dataclass
class ColourResult(Result):
    """A `Result` (``psnr``/``ssim``: the raw scores) with the sRGB scores beside."""

    psnr_srgb: float = float("nan")
    ssim_srgb: float = float("nan")


# --- planes ----------------------------------------------------------------------------------------


def check_colour(testset: TestSet) -> str:
    if testset.colour not in PLANES:
        raise BurstKPNError("not a colour test set (build one with `burstkpn synth --colour bayer|rgb`)")
    return testset.colour


def to_planes(testset: TestSet, image: np.ndarray) -> np.ndarray:
    """A test set's layout -> planes: Bayer (..., S, S) -> (..., 4, S/2, S/2) RGGB; rgb (..., S, S, 3) -> (..., 3, S, S)."""
    from burstkpn.models.planar import bayer_to_planes

    if check_colour(testset) == "bayer":
        return bayer_to_planes(image, testset.meta.get("pattern", "RGGB"))
    return np.ascontiguousarray(np.moveaxis(np.asarray(image), -1, -3))


def from_planes(testset: TestSet, planes: np.ndarray) -> np.ndarray:
    """Inverse of `to_planes`: planes (C, h, w) -> the test set's layout (a mosaic, or channels last)."""
    from burstkpn.models.planar import planes_to_bayer

    if check_colour(testset) == "bayer":
        return planes_to_bayer(planes, testset.meta.get("pattern", "RGGB"))
    return np.ascontiguousarray(np.moveaxis(np.asarray(planes), -3, -1))


def burst_planes(testset: TestSet, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Burst ``row`` as planes: noisy (C, N, h, w) float32 and clean (C, h, w)."""
    noisy = to_planes(testset, np.asarray(testset.noisy[row], np.float32))  # (N, C, h, w)
    return np.ascontiguousarray(noisy.transpose(1, 0, 2, 3)), to_planes(testset, np.asarray(testset.clean[row], np.float32))


# --- scores ----------------------------------------------------------------------------------------


def _ssim(a: np.ndarray, b: np.ndarray, channel_axis: int | None = None) -> float:
    """`metrics.ssim`'s settings (Gaussian 11x11, σ 1.5, data range 1) on display values already cropped."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=channel_axis))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def raw_display(planes: np.ndarray, white_level: float, curve: bool = False) -> np.ndarray:
    """(C, h, w) linear planes -> float64 in [0, 1] (white level divided out, clipped; the sRGB curve with
    ``curve``), `models.planar.plane_border` cropped."""
    from burstkpn.camera import srgb_curve
    from burstkpn.models.planar import plane_border

    x = np.clip(np.asarray(planes, np.float64) / white_level, 0.0, 1.0)
    x = srgb_curve(x) if curve else x
    b = plane_border(x.shape[0])
    return x[:, b:-b, b:-b] if b else x


def raw_scores(estimate: np.ndarray, clean: np.ndarray, white_level: float, curve: bool = False) -> tuple[float, float]:
    """(PSNR over all planes, mean SSIM of the planes) of (C, h, w) planes, see the module docstring."""
    a, e = raw_display(clean, white_level, curve), raw_display(estimate, white_level, curve)
    return _psnr(a, e), float(np.mean([_ssim(p, q) for p, q in zip(a, e)]))


def srgb_image(image: np.ndarray, white_level: float, params, mosaicked: bool) -> np.ndarray:
    """A linear image in a test set's layout developed by its burst's camera: (S, S, 3) display sRGB, border cropped."""
    from burstkpn.camera import process

    display = process(np.asarray(image, np.float32) / np.float32(white_level), params, mosaicked=mosaicked)
    return np.asarray(display, np.float64)[BORDER:-BORDER, BORDER:-BORDER]


def srgb_scores(estimate: np.ndarray, truth_srgb: np.ndarray, white_level: float, params, mosaicked: bool) -> tuple[float, float]:
    """(PSNR over R, G, B, mean SSIM of the channels) of ``estimate`` (the test set's layout) developed by
    ``params`` against the truth already developed (`srgb_image`)."""
    e = srgb_image(estimate, white_level, params, mosaicked)
    return _psnr(truth_srgb, e), _ssim(truth_srgb, e, channel_axis=-1)


# --- methods on planes --------------------------------------------------------------------------------


def reference_planes(planes: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """The noisy reference frame's planes."""
    return np.ascontiguousarray(planes[:, 0], np.float32)


def average_planes(planes: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """The plain mean of the frames, per plane."""
    return np.asarray(planes, np.float32).mean(axis=1)


def guide_planes(count: int) -> list[int]:
    """The planes whose mean guides global alignment: the greens (as `models.planar.PlanarConfig.guide_planes`)."""
    from burstkpn.models.planar import GREEN_PLANES

    return list(GREEN_PLANES.get(count, range(count)))


def aligned_average_planes(planes: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """One global sub-pixel alignment for all planes, measured on the green planes' mean, then the mean of
    each plane's frames: what an untrained (mean-initialised, ``prealign = global``) joint model outputs."""
    from burstkpn.align import align_global, estimate_global_shifts

    x = torch.from_numpy(np.ascontiguousarray(planes, np.float32))  # (C, N, h, w)
    with torch.no_grad():
        shifts = estimate_global_shifts(x[guide_planes(x.shape[0])].mean(0)[None])  # (1, N, 2)
        aligned, _ = align_global(x, shifts=shifts.expand(x.shape[0], -1, -1))
    return aligned.mean(dim=1).numpy()


def hdrplus_planes(planes: np.ndarray, noise: NoiseLevel, params=None) -> tuple[np.ndarray, np.ndarray]:
    """HDR+ on planes (C, N, h, w): one tile alignment found on the planes' mean (HDR+ aligns on the 2x2 Bayer
    mean), then `baselines.hdrplus.merge`'s Wiener merge on each plane with those displacements. Returns
    ((C, h, w) estimate, (C,) each plane's merge noise-variance factor). One plane is `hdrplus.merge` exactly."""
    from burstkpn.align.tiles import align_tiles, pad_for_tiles
    from burstkpn.baselines.hdrplus import DEFAULT, wiener_merge

    params = DEFAULT if params is None else params
    frames = torch.from_numpy(np.ascontiguousarray(planes, np.float32))
    if frames.ndim != 4:
        raise BurstKPNError(f"expected planes of shape (C, N, H, W), got {tuple(frames.shape)}")
    c, n, h, w = frames.shape
    t = params.tile
    guide, (top, left) = pad_for_tiles(frames.mean(0), t)
    disp = align_tiles(guide, params)
    outs, factors = [], []
    for k in range(c):  # each plane merged with the one alignment
        padded = guide if c == 1 else pad_for_tiles(frames[k], t)[0]
        out, factor = wiener_merge(padded, disp, noise, params)
        outs.append(out[top : top + h, left : left + w].numpy())
        factors.append(factor)
    return np.stack(outs), np.array(factors)


def hdrplus(planes: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """The ``hdrplus`` row on planes (`hdrplus_planes` with the tuned strengths)."""
    return hdrplus_planes(planes, noise)[0]


def cbm3d_rgb(rgb: np.ndarray, levels: list[NoiseLevel], vst: bool | None = None) -> np.ndarray:
    """CBM3D (`bm3d.bm3d_rgb`, opponent colour space) on linear (H, W, 3) camera RGB whose channel c has
    noise ``levels[c]``: each channel through the generalised Anscombe transform (σ 1 after it) when
    ``vst`` (default: σ_read <= `baselines.bm3d.VST_MAX_READ`, as the grayscale BM3D rows), else one
    effective σ per channel at its mean."""
    import bm3d as bm3d_package

    from burstkpn.baselines.bm3d import VST_MAX_READ
    from burstkpn.baselines.vst import anscombe, effective_sigma, inverse_anscombe

    rgb = np.asarray(rgb, np.float64)
    if vst is None:
        vst = levels[0].sigma_read <= VST_MAX_READ
    if not vst:
        sigmas = [effective_sigma(rgb[..., k], levels[k]) for k in range(3)]
        return np.asarray(bm3d_package.bm3d_rgb(rgb, sigmas), np.float32)
    stable = np.stack([anscombe(rgb[..., k], levels[k]) for k in range(3)], axis=-1)
    out = np.asarray(bm3d_package.bm3d_rgb(stable, [1.0, 1.0, 1.0]), np.float64)
    return np.stack([inverse_anscombe(out[..., k], levels[k]) for k in range(3)], axis=-1).astype(np.float32)


def cbm3d_merged(planes: np.ndarray, noise: NoiseLevel) -> np.ndarray:
    """CBM3D on the HDR+ merge (no spatial shrinkage) in linear camera RGB, see the module docstring:
    (C, N, h, w) RGGB or RGB planes -> (C, h, w)."""
    from burstkpn.baselines.hdrplus import DEFAULT
    from burstkpn.camera import demosaic, mosaic
    from burstkpn.models.planar import bayer_to_planes, planes_to_bayer

    merged, factors = hdrplus_planes(planes, noise, replace(DEFAULT, spatial_strength=0.0))
    if len(merged) == 4:  # RGGB planes: demosaic the merged mosaic; the greens' factor is their mean
        rgb = demosaic(planes_to_bayer(merged, "RGGB"), "RGGB")
        factors = np.array([factors[0], 0.5 * (factors[1] + factors[2]), factors[3]])
    elif len(merged) == 3:
        rgb = np.moveaxis(merged, 0, -1)
    else:
        raise BurstKPNError(f"cbm3d-merged needs 4 (RGGB) or 3 (RGB) planes, got {len(merged)}")
    levels = [NoiseLevel(noise.sigma_read * f**0.5, noise.sigma_shot * f) for f in factors]
    out = cbm3d_rgb(rgb, levels)
    if len(merged) == 4:
        return bayer_to_planes(mosaic(out, "RGGB"), "RGGB").astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(out, -1, 0), np.float32)


def per_plane(denoise: baselines.Denoiser):
    """A grayscale method ((N, H, W) -> (H, W)) on every plane on its own."""
    return lambda planes, noise: np.stack([np.asarray(denoise(p, noise), np.float32) for p in planes])


_PLANE_METHODS = {"reference": reference_planes, "average": average_planes, "aligned-average": aligned_average_planes,
                  "hdrplus": hdrplus, "cbm3d-merged": cbm3d_merged}


def baseline_method(name: str, colour: str) -> Method:
    """A named classical method on planes: one of `COLOUR_BASELINES`, else a grayscale baseline per plane."""
    import importlib.util

    if name in _PLANE_METHODS:
        needs = {"cbm3d-merged": ["bm3d"] + (["colour_demosaicing"] if colour == "bayer" else [])}.get(name, [])
        absent = [pkg for pkg in needs if importlib.util.find_spec(pkg) is None]
        if absent:
            pip = {"bm3d": "bm3d", "colour_demosaicing": "'burstkpn[colour]'"}
            return Method(name, None, f"not installed (pip install {' '.join(pip[p] for p in absent)})")
        return Method(name, _PLANE_METHODS[name])
    reason = baselines.missing(name)  # also rejects unknown names
    return Method(name, None if reason else per_plane(baselines.load(name)), reason)


def is_planar(model) -> bool:
    """Whether a model is a joint colour/raw model (`models.planar`)."""
    return hasattr(getattr(model, "config", None), "planes")


def model_method(path: str | Path, colour: str) -> Method:
    """A weights file (or a shipped model's name) as a method on planes: a grayscale model per plane (``NAME
    per-plane``), a joint model once on all planes (its card's name, else ``KIND joint``); a joint model for the
    other plane count is a row that does not run."""
    from burstkpn.weights import model_name, resolve_model

    model = resolve_model(str(path))[0]
    return _model_method(model, colour, model_name(model))


def _model_method(model, colour: str, name: str, suffix: str = "", align: bool = False, **options) -> Method:
    from burstkpn.align import tile_align
    from burstkpn.pipeline import denoise_tile

    planar = is_planar(model)
    if not suffix:
        named = bool(getattr(model, "info", {}).get("name"))
        name = name if planar and named else f"{name} {'joint' if planar else 'per-plane'}"
    else:
        name = f"{name} {suffix}"
    if planar and model.config.planes != PLANES[colour]:
        return Method(name, None, f"takes {model.config.planes} planes, the test set's bursts have {PLANES[colour]} "
                                  f"({colour})", model=model)
    if planar and options.get("ensemble"):
        return Method(name, None, "the flip/rotation ensemble is not available for a joint model", model=model)
    greens = None if planar else tuple(guide_planes(PLANES[colour]))  # every plane aligned on the greens, as `denoise`
    return Method(name, lambda planes, noise: denoise_tile(model, tile_align(planes) if align else planes, noise,
                                                           greens=greens, **options), model=model)


def resolve_colour_methods(spec: str, colour: str, models=(), max_bursts=(), bf16: bool = False,
                           ensemble: bool = False, tile_aligned: bool = False) -> list[Method]:
    """`evaluate.resolve_methods` for a colour set: ``all`` is `COLOUR_BASELINES` and the shipped models (per
    plane); other baseline names run per plane; ``--model`` files per plane or joint (`model_method`);
    twins: ``NAME bf16``, ``NAME x8`` (grayscale models only), ``NAME tile-aligned`` (one HDR+ tile alignment
    for all planes first, as ``burstkpn denoise``)."""
    if colour not in PLANES:
        raise BurstKPNError(f"unknown colour {colour!r}: a colour test set is one of {', '.join(PLANES)}")
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names and not models:
        raise BurstKPNError("no methods given: use --methods NAME,... or --methods all")
    everything = "all" in names
    if everything:
        names = [n for n in names if n != "all"] + [n for n in COLOUR_BASELINES if n not in names]
    methods = [baseline_method(name, colour) for name in dict.fromkeys(names)]
    for path in models:
        methods.append(_named_apart(model_method(path, colour), path, methods))
    from burstkpn.weights import shipped_weights

    for path in shipped_weights() if everything else []:
        try:
            methods.append(_named_apart(model_method(path, colour), path, methods))
        except BurstKPNError as exc:
            methods.append(Method(path.stem, None, str(exc)))
    out = []
    for m in methods:
        out.append(m)
        if m.model is None or not m.denoise:
            continue
        for wanted, suffix, options in ((bf16, "bf16", {"amp": True}), (ensemble, "x8", {"ensemble": True}),
                                        (tile_aligned, "tile-aligned", {"align": True})):
            if wanted:
                out.append(_model_method(m.model, colour, m.name, suffix, **options))
    return limit_methods(out, max_bursts)


# --- running ---------------------------------------------------------------------------------------


def evaluate_colour(testset: TestSet, methods: list[Method], gains=None, seed: int = 0, progress: bool = True,
                    raw_curve: bool = False) -> Evaluation:
    """`evaluate.evaluate` on a colour set: every available method on every burst at ``gains``, scored in raw
    and in sRGB (see the module docstring). ``ev.results`` are `ColourResult` rows; ``ev.crops`` hold the
    crop scene's estimates in the test set's layout."""
    colour = check_colour(testset)
    truths: dict[int, np.ndarray] = {}  # row -> the truth developed by its camera (the same for every method)

    def summary(name: str, gain: int, rows: list[dict], note: str) -> ColourResult:
        means = {k: mean_of(rows, k) for k in ("psnr_raw", "ssim_raw", "psnr_srgb", "ssim_srgb", "seconds")}
        return ColourResult(name, gain, means["psnr_raw"], means["ssim_raw"], means["seconds"], len(rows), note,
                            means["psnr_srgb"], means["ssim_srgb"])

    return run_methods(testset, methods, gains, seed, progress,
                       lambda m, i, ev: _run_one(testset, m, i, ev, truths, colour, raw_curve), summary)


def _run_one(testset: TestSet, method: Method, i: int, ev: Evaluation, truths: dict, colour: str, raw_curve: bool) -> dict:
    noise = NoiseLevel(float(testset.sigma_read[i]), float(testset.sigma_shot[i]))
    planes, clean = burst_planes(testset, i)
    start = time.perf_counter()
    estimate = np.asarray(method.denoise(planes, noise), np.float32)
    seconds = time.perf_counter() - start
    if estimate.shape != clean.shape:
        raise BurstKPNError(f"method {method.name!r} returned shape {estimate.shape}, expected {clean.shape}")
    white, gain, params = float(testset.white_level[i]), int(testset.gain[i]), testset.camera_params(i)
    image = from_planes(testset, estimate)
    mosaicked = colour == "bayer"
    if i not in truths:
        truths[i] = srgb_image(testset.clean[i], white, params, mosaicked)
    if int(testset.scene[i]) == ev.crop_scene:
        ev.crops[(method.name, gain)] = image
    psnr_raw, ssim_raw = raw_scores(estimate, clean, white, raw_curve)
    psnr_srgb, ssim_srgb = srgb_scores(image, truths[i], white, params, mosaicked)
    return {"method": method.name, "gain": gain, "scene": int(testset.scene[i]), "source": str(testset.source[i]),
            "psnr_raw": psnr_raw, "ssim_raw": ssim_raw, "psnr_srgb": psnr_srgb, "ssim_srgb": ssim_srgb, "seconds": seconds}


# --- writing ---------------------------------------------------------------------------------------


def srgb_view(ev: Evaluation) -> Evaluation:
    """The evaluation with the sRGB scores in ``psnr``/``ssim`` (for the grayscale table writers)."""
    return replace(ev, results=[Result(r.method, r.gain, r.psnr_srgb, r.ssim_srgb, r.seconds_per_burst, r.n_bursts, r.note)
                                for r in ev.results])


def describe_colour_testset(testset: TestSet, path: str | Path) -> str:
    """`evaluate.describe_testset` plus the colour layout."""
    colour = check_colour(testset)
    what = (f"{testset.meta.get('pattern', 'RGGB')} Bayer mosaics (scored as 4 RGGB planes)" if colour == "bayer"
            else "linear camera RGB")
    return describe_testset(testset, path) + f" Colour: {what}, a random camera per burst (Brooks et al. unprocessing)."


def colour_markdown(ev: Evaluation, description: str, raw_curve: bool = False) -> str:
    """Two Table-1-style tables, raw then sRGB (methods as rows, gains as columns, ``PSNR / SSIM`` cells)."""
    raw = markdown_table(ev, description, caption=RAW_CURVE_CAPTION if raw_curve else RAW_CAPTION)
    srgb = markdown_table(srgb_view(ev), description, caption=SRGB_CAPTION)
    return f"### Raw (camera raw planes)\n\n{raw}\n### sRGB (each burst's own processing)\n\n{srgb}"


def write_colour_markdown(ev: Evaluation, description: str, path: str | Path, raw_curve: bool = False) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(colour_markdown(ev, description, raw_curve))


def write_colour_csv(ev: Evaluation, path: str | Path) -> None:
    """``results.csv``: one row per method x gain, raw and sRGB scores (empty where a method did not run)."""
    def fmt(r: ColourResult) -> dict:
        ran = r.n_bursts > 0

        def v(x: float, digits: int) -> str:
            return f"{x:.{digits}f}" if ran else ""
        return {"method": r.method, "gain": r.gain, "psnr_raw": v(r.psnr, 4), "ssim_raw": v(r.ssim, 5),
                "psnr_srgb": v(r.psnr_srgb, 4), "ssim_srgb": v(r.ssim_srgb, 5),
                "seconds_per_burst": v(r.seconds_per_burst, 4), "n_bursts": r.n_bursts, "note": r.note}
    with atomic_output(path) as tmp:
        tmp.write_text(_csv_text([fmt(r) for r in ev.results], CSV_FIELDS))


def write_colour_per_burst(ev: Evaluation, path: str | Path) -> None:
    """``per_burst.csv``: every burst's raw and sRGB scores and time."""
    with atomic_output(path) as tmp:
        tmp.write_text(_csv_text(ev.per_burst, PER_BURST_FIELDS))


def plot_colour_crops(ev: Evaluation, testset: TestSet, path: str | Path, crop: int = 64) -> None:
    """The crop scene's central crop across methods (columns) and gains (rows), developed by its camera."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour = check_colour(testset)
    gains = sorted({g for _, g in ev.crops})
    names = list(dict.fromkeys(n for n, _ in ev.crops))
    fig, axes = plt.subplots(len(gains), len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.75 * len(gains)), squeeze=False)
    for row, g in enumerate(gains):
        i = int(np.flatnonzero((testset.scene == ev.crop_scene) & (testset.gain == g))[0])
        white, params = float(testset.white_level[i]), testset.camera_params(i)
        per_burst = {r["method"]: r["psnr_srgb"] for r in ev.per_burst if r["scene"] == ev.crop_scene and r["gain"] == g}
        panels = [("clean", testset.clean[i])] + [(n, ev.crops[(n, g)]) for n in names if (n, g) in ev.crops]
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(panels):
                continue
            name, image = panels[col]
            from burstkpn.camera import process

            display = process(np.asarray(image, np.float32) / np.float32(white), params, mosaicked=colour == "bayer")
            h, w = display.shape[:2]
            top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
            ax.imshow(np.clip(display[top : top + crop, left : left + crop], 0, 1))
            label = name if col == 0 else f"{name}\n{per_burst.get(name, float('nan')):.2f} dB sRGB"
            ax.set_title(f"gain {g}: {label}" if col == 0 else label, fontsize=7)
    fig.suptitle(f"scene {ev.crop_scene} ({testset.source[i]}), central {crop}x{crop} crop, its own camera", fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


__all__ = [
    "COLOUR_BASELINES", "ColourResult", "aligned_average_planes", "burst_planes", "cbm3d_merged", "cbm3d_rgb",
    "colour_markdown", "evaluate_colour", "from_planes", "hdrplus_planes", "model_method", "raw_scores",
    "resolve_colour_methods", "srgb_image", "srgb_scores", "to_planes", "write_colour_csv", "write_colour_markdown",
    "write_colour_per_burst",
]
