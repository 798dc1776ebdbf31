"""Denoise one real burst: the library call behind ``burstkpn denoise`` (`denoise_burst`).

Pipeline: load and linearise (`io.bursts`, or arrays as given) -> split into the grayscale bursts the
model denoises (colour: per channel; raw: each CFA plane, or the paper's 2x2 Bayer mean) -> noise level
(given, the DNG NoiseProfile tag, or estimated from the burst) -> tile by tile (`tiles.run_tiled`):
HDR+ tile pre-alignment (`align.tile_align`, one alignment for all planes) and the model, so that
memory stays within the budget at any image size -> a `Denoised` record. A grayscale model denoises each
plane on its own; a joint colour/raw model (`models.planar`: 4 RGGB planes or 3 channels) all planes of a
tile at once (`denoise_tile`). Writing files is
`io.outputs.write_denoised`'s job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.io.bursts import Burst
from burstkpn.noise import NoiseLevel

TILE_OVERLAP = 32  # pixels two neighbouring tiles share (blended by `tiles.run_tiled`)
RAW_MODES = ("full", "half")


@dataclass
class Denoised:
    """What `denoise_burst` made and decided.

    image: linear float32 — (H, W) grayscale, (H, W, 3) colour, or for raw ``raw_mode="full"`` the
    denoised (H, W) CFA mosaic (0 = black, 1 = white), ``"half"`` an (H/2, W/2) grayscale image.
    model: the weights' name; weights: their file; noise / noise_source: the input frames' noise level
    and where it came from; alignment: the pre-alignment ("hdrplus-tiles" or "none"); tile: tile side
    in pixels; burst: the loaded input (frames, kind, paths, raw metadata) for writing outputs;
    planes: the grayscale bursts the model was given, (C, n, H, W) (values cut at black filled in; for reports and
    inspection); declipped: the (black, white) clip points `noise.declip` corrected the output at; imputed_black:
    the black point whose cut values were filled in before the network (`noise.impute_black`); None: that side
    not clipped or declip off.
    """

    image: np.ndarray
    model: str
    weights: Path
    noise: NoiseLevel
    noise_source: str
    alignment: str
    tile: int
    seconds: float
    burst: Burst
    raw_mode: str = "full"
    gamma_16bit: bool = False
    ensemble: bool = False
    bf16: bool = False
    declipped: tuple[float | None, float | None] = (None, None)
    imputed_black: float | None = None
    planes: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The input's kind: "8bit", "16bit", "float", "raw" or "array"."""
        return self.burst.kind


def denoise_burst(burst, noise=None, *, model=None, align: bool = True, reference: int = 0,
                  tile: int | None = None, memory_gb: float = 2.0, raw_mode: str = "full",
                  gamma_16bit: bool = False, ensemble: bool = False, bf16: bool | None = None,
                  declip: bool = True, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> Denoised:
    """Denoise one burst and say what was decided.

    burst: a folder, a file list (one burst, sorted by name), or an array of linear frames in [0, 1]:
      (N, H, W) grayscale or (N, H, W, 3) colour, frame ``reference`` the reference.
    noise: ``None`` (the DNG NoiseProfile tag, else estimated from the burst), a `NoiseLevel`, or
      ``(sigma_read, sigma_shot)`` of the input frames in linear [0, 1] units (var = σr² + σs·x).
    model: a weights file or a shipped model's name (default: the shipped model for the burst's length);
      a joint model (`models.planar`) takes a raw (4 CFA planes, ``raw_mode="full"``) or colour (3 channels)
      burst, whichever it was built for, once per tile (no ``ensemble``).
    align: HDR+ tile pre-alignment of each tile before the model. tile: tile side (default: from
    ``memory_gb``). raw_mode: "full" (each CFA plane denoised, a mosaic out) or "half" (the 2x2 Bayer
    mean). gamma_16bit: 16-bit files are gamma-encoded, not linear. ensemble: the mean over the 8
    flips/rotations (8x the time). bf16: autocast the network (default: where the CPU has native bf16).
    declip: where the frames hit a clip point, undo what the clip did: values cut at the black point (0 after
    black subtraction) are filled in with their conditional mean before the network (`noise.impute_black`), and
    the output's bias next to the white level is taken out after it (`noise.declip`), both at the burst's noise
    level (docs/experiments/clipping.md).
    log: receives one-line notes (noise level, frame count); e.g. ``print``.

    >>> import numpy as np, burstkpn
    >>> frames = np.full((8, 32, 32), 0.5, np.float32)
    >>> result = burstkpn.denoise_burst(frames, noise=(0.01, 0.001))
    >>> result.image.shape, result.alignment
    ((32, 32), 'hdrplus-tiles')
    """
    from burstkpn.tiles import choose_tile

    start = time.perf_counter()
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if log is not None:
            log(text)

    if raw_mode not in RAW_MODES:
        raise BurstKPNError(f"raw_mode must be one of {', '.join(RAW_MODES)}, got {raw_mode!r}")
    if memory_gb <= 0 or (tile is not None and tile < 1):
        raise BurstKPNError(f"memory_gb and tile must be positive, got {memory_gb}, {tile}")
    loaded, net, weights, planes, level, source = prepare(burst, noise, model, reference, gamma_16bit, raw_mode, note)
    joint = joint_planes(net)
    if joint is not None:
        half = " (raw_mode 'half' makes one plane: use 'full')" if loaded.kind == "raw" and raw_mode == "half" else ""
        check_joint(net, len(planes), ensemble, half)
    h, w = planes.shape[-2:]
    per_pixel = model_bytes_per_pixel(net.config, planes.shape[1], len(planes))
    side = tile or choose_tile(h, w, memory_gb * 2**30, per_pixel, TILE_OVERLAP)
    if bf16 is None:
        from burstkpn.hardware import native_bf16

        bf16 = native_bf16("cpu")
    black = None
    if declip:  # in place when the planes are the pipeline's own copy (raw, colour), not the loaded frames (gray)
        planes, black = impute_input(planes, level, note, inplace=not np.shares_memory(planes, loaded.frames))
    work, pattern = rggb_planes(loaded, planes) if joint is not None else (planes, None)
    denoised = denoise_planes(net, work, level, side, align=align, amp=bf16, progress=progress, ensemble=ensemble,
                              greens=None if joint is not None else green_planes(loaded, raw_mode))
    points = (None, None)
    if declip:
        denoised, points = declip_output(denoised, planes, level, note, black=black is None)
    if pattern is not None:  # back to the mosaic's own plane positions
        from burstkpn.io.raw import bayer_planes
        from burstkpn.models.planar import planes_to_bayer

        denoised = bayer_planes(planes_to_bayer(denoised, pattern))
    image = merge_channels(loaded, denoised, raw_mode)
    return Denoised(image=image, model=weights.stem, weights=weights, noise=level, noise_source=source,
                    alignment="hdrplus-tiles" if align else "none", tile=side,
                    seconds=round(time.perf_counter() - start, 2), burst=loaded, raw_mode=raw_mode,
                    gamma_16bit=gamma_16bit, ensemble=ensemble, bf16=bool(bf16), declipped=points, imputed_black=black,
                    planes=planes,
                    notes=notes)


def rggb_planes(loaded: Burst, planes: np.ndarray) -> tuple[np.ndarray, str | None]:
    """What a joint model takes from ``planes`` (C, n, H, W) of ``loaded``: a raw burst's CFA planes flipped to RGGB
    when its layout is another (`models.planar.bayer_to_planes`), with that layout (None: nothing flipped)."""
    if loaded.kind != "raw" or loaded.raw_reference.pattern == "RGGB":
        return planes, None
    from burstkpn.io.raw import mosaic_from_planes
    from burstkpn.models.planar import bayer_to_planes

    pattern = loaded.raw_reference.pattern
    mosaics = mosaic_from_planes(np.ascontiguousarray(planes.transpose(1, 0, 2, 3)))
    return np.ascontiguousarray(bayer_to_planes(mosaics, pattern).transpose(1, 0, 2, 3)), pattern


def impute_input(planes: np.ndarray, level: NoiseLevel, note: Callable[[str], None] = lambda _: None,
                 inplace: bool = False) -> tuple[np.ndarray, float | None]:
    """Input planes (C, n, H, W) at noise ``level`` -> (the planes with the values cut at the black point filled
    in by `noise.impute_black`, that point), or (the planes themselves, None) when the frames hit no black point
    (`noise_estimation.clip_points`; synthetic frames hold negative values and are never touched). ``inplace``:
    fill ``planes`` itself (float32), frame by frame, rather than a copy (a 12-MP raw burst's planes: 0.4 GB)."""
    from burstkpn.noise import impute_black
    from burstkpn.noise_estimation import CLIP_TOLERANCE, clip_points

    low, _ = clip_points(planes)
    if low is None:
        return planes, None
    note(f"imputed: values cut at the black point {low:g} filled in with their conditional mean (noise.impute_black)")
    inplace = inplace and planes.dtype == np.float32 and planes.flags.c_contiguous
    return impute_black(planes, level, low, CLIP_TOLERANCE, inplace=inplace), low


def declip_output(denoised: np.ndarray, planes: np.ndarray, level: NoiseLevel,
                  note: Callable[[str], None] = lambda _: None,
                  black: bool = True) -> tuple[np.ndarray, tuple[float | None, float | None]]:
    """denoised (C, H, W) from the input planes (C, n, H, W) at noise ``level`` -> (the same with `noise.declip`
    applied at the clip points the input frames hit (`noise_estimation.clip_points`), those points); unchanged
    when they hit none (e.g. synthetic frames, which hold negative values). ``black=False``: the white side only
    (the black side's cut values were imputed before the network, `impute_input`)."""
    from burstkpn.noise import declip
    from burstkpn.noise_estimation import clip_points

    low, high = clip_points(planes)
    if not black:
        low = None
    if low is None and high is None:
        return denoised, (None, None)
    note("declipped: the merge's bias next to the clip point" + ("s" if low is not None and high is not None else "")
         + " " + " and ".join(f"{name} {v:g}" for name, v in (("black", low), ("white", high)) if v is not None)
         + " taken out (noise.declip)")
    return declip(denoised, level, low, high), (low, high)


def prepare(burst, noise=None, model=None, reference: int = 0, gamma_16bit: bool = False, raw_mode: str = "full",
            log: Callable[[str], None] | None = None):
    """The steps before the network, shared by `denoise_burst` and ``burstkpn inspect``: load the burst,
    pick the model for its length, split it into grayscale planes and resolve their noise level.
    Returns (burst, model, weights path, planes (C, n, H, W), NoiseLevel, noise source)."""
    from burstkpn.weights import resolve_model

    log = log or (lambda text: None)
    given = as_noise_level(noise)
    # a given model first (cheap, and a missing or broken weights file fails before a large burst is read);
    # the default after loading, since a raw or colour burst takes the shipped joint model when there is one
    if model:
        net, weights = resolve_model(model, log=log)
    loaded = load_input(burst, reference, linear16=not gamma_16bit)
    if not model:
        net, weights = resolve_model(None, len(loaded.frames), log=log, layout=burst_layout(loaded, raw_mode))
    check_length(len(loaded.frames), net.config, log)
    planes = split_channels(loaded, raw_mode)
    level, source = resolve_noise(loaded, planes, given, raw_mode)
    log(f"noise: sigma_read={level.sigma_read:.4g}, sigma_shot={level.sigma_shot:.4g} ({source})")
    return loaded, net, weights, planes, level, source


def as_noise_level(noise) -> NoiseLevel | None:
    """None, a `NoiseLevel` or a (sigma_read, sigma_shot) pair -> NoiseLevel or None; a one-line error otherwise."""
    if noise is None or isinstance(noise, NoiseLevel):
        return noise
    try:
        read, shot = (float(v) for v in noise)
    except (TypeError, ValueError):
        raise BurstKPNError(f"noise must be (sigma_read, sigma_shot), got {noise!r}") from None
    return NoiseLevel(read, shot)


def load_input(burst, reference: int = 0, linear16: bool = True) -> Burst:
    """Files or a folder (`io.bursts.load_burst`), or an array of linear frames -> a `Burst` (reference first)."""
    if isinstance(burst, Burst):
        return burst
    if isinstance(burst, np.ndarray) or hasattr(burst, "__array__") and not isinstance(burst, (str, Path, list, tuple)):
        frames = np.asarray(burst)
        if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3) or frames.shape[0] < 1:
            raise BurstKPNError(f"a burst array must be (N, H, W) or (N, H, W, 3), got shape {frames.shape}")
        if not np.issubdtype(frames.dtype, np.floating):
            raise BurstKPNError(f"a burst array must hold linear float values in [0, 1], got {frames.dtype}")
        if not np.isfinite(frames).all():
            raise BurstKPNError("the burst array contains NaN or Inf values")
        n = frames.shape[0]
        if not -n <= reference < n:
            raise BurstKPNError(f"reference frame {reference} is out of range for a burst of {n} frames")
        order = [reference % n] + [i for i in range(n) if i != reference % n]
        return Burst(np.ascontiguousarray(frames[order], np.float32), "array", [])
    from burstkpn.io.bursts import load_burst

    return load_burst([burst] if isinstance(burst, (str, Path)) else list(burst), reference, linear16=linear16)


def check_length(n: int, config, note: Callable[[str], None]) -> None:
    """Say how a burst of n frames meets a model built for N (see `models.kpn.predict`), or refuse it."""
    frames = config.frames
    if n < frames and not config.variable_frames:
        raise BurstKPNError(f"the model takes {frames} frames, the burst has {n} "
                            "(a model trained with variable_frames, like the shipped kpn-variable, takes fewer)")
    if n > frames:
        note(f"note: the model takes {frames} frames; each tile uses the reference and the {frames - 1} of the "
             f"other {n - 1} that align best to it")
    elif n < frames:
        note(f"note: {n} frame(s); the model takes up to {frames} and marks the {frames - n} missing ones as absent")


def burst_layout(burst: Burst, raw_mode: str = "full") -> str:
    """"raw" (a Bayer burst denoised at full resolution), "colour" or "gray": which default model it takes."""
    if burst.kind == "raw":
        return "raw" if raw_mode == "full" else "gray"
    return "colour" if burst.is_colour else "gray"


def split_channels(burst: Burst, raw_mode: str = "full") -> np.ndarray:
    """The grayscale bursts the model denoises, (C, n, H, W): per colour channel, per CFA plane, or the Bayer mean."""
    from burstkpn.io.raw import bayer_planes, bayer_to_gray

    if burst.kind == "raw":
        if raw_mode == "half":
            return bayer_to_gray(burst.frames)[None]
        return np.ascontiguousarray(bayer_planes(burst.frames).transpose(1, 0, 2, 3))  # (4, n, H/2, W/2)
    if burst.is_colour:
        return np.ascontiguousarray(burst.frames.transpose(3, 0, 1, 2))
    return burst.frames[None]


def merge_channels(burst: Burst, denoised: np.ndarray, raw_mode: str = "full") -> np.ndarray:
    """Inverse of `split_channels` for the denoised references: (C, H, W) -> the output image."""
    from burstkpn.io.raw import mosaic_from_planes

    if burst.kind == "raw" and raw_mode == "full":
        return mosaic_from_planes(np.asarray(denoised))
    return np.stack(denoised, axis=-1) if len(denoised) > 1 else np.asarray(denoised[0])


def resolve_noise(burst: Burst, planes: np.ndarray, given: NoiseLevel | None, raw_mode: str) -> tuple[NoiseLevel, str]:
    """The noise level of the model's input frames, and where it came from."""
    from burstkpn.io.raw import gray_noise

    half = burst.kind == "raw" and raw_mode == "half"
    if given is not None:
        return (gray_noise(given) if half else given), "given" + (" (halved for the 2x2 Bayer mean)" if half else "")
    profile = burst.raw_reference.noise if burst.kind == "raw" else None
    if profile is not None:
        where = f"DNG NoiseProfile tag of {burst.paths[0].name}"
        return (gray_noise(profile) if half else profile), where + (", halved for the 2x2 Bayer mean" if half else "")
    import warnings

    from burstkpn.noise_estimation import NoiseEstimateWarning, estimate_burst_noise

    # spatial (high-pass residual) and temporal (variance across the frames) estimates, clipped pixels left out;
    # the unaligned planes: tile-aligned frames match the noise and make the temporal estimate too low
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoiseEstimateWarning)
        estimate = estimate_burst_noise(planes)
    for w in caught:  # shown once, in the pipeline's own words (the CLI prints them as warnings)
        warnings.warn(str(w.message), NoiseEstimateWarning, stacklevel=2)
    return estimate.noise, f"estimated from the burst: {estimate.description}"


def model_bytes_per_pixel(config, frames: int | None = None, planes: int = 1) -> float:
    """Peak memory per pixel of one tile (bytes): `denoise_planes`'s HDR+ alignment of ``planes`` planes
    of ``frames`` frames (default the model's N), then the model on one plane at a time (a joint model: on all
    at once), inference.

    Counted in float32 maps per pixel, phase by phase (the peak is the largest phase plus what stays
    alive throughout), and fitted to the peak resident memory measured in fresh processes (VmHWM above
    the resident size before the tile; ``python benchmarks/speed.py --sections memory``,
    docs/speed-pipeline.md): the shipped ``kpn`` measured 2.2-2.4 kB/px at 512-1024² tiles (3.1 kB at
    256², where a fixed part shows; `burstkpn.tiles.choose_tile` keeps that back), 2.2-2.6 kB with
    3 planes, and the same process ±10 % run to run; this count gives 1.94 / 2.17 kB before the 1.3
    safety factor. A joint model (`models.planar`, ``config.planes``) runs all its planes at once: its kernel maps
    are counted for every plane (``kpn-bayer-preview`` measured 4.2-4.6 kB/px at 384-608² tiles of 4 planes).
    The network's phases:

    - head: its output (the kernel maps, N·K² + ...) and a transient copy of it as the 1x1 convolution
      writes it, its input, and the kernel application's padded burst, per-frame results and output;
    - after the head: the raw maps plus one copy per rescaling (validity, robust gate, normalisation);
    - robust gate: its 1x1 MLP's hidden maps (16 per frame, and their copy) and the mismatch maps;
    - full-resolution decoder: the upsampled coarser level, the skip, their concatenation and the
      convolution's output (twice: copies in and out of the convolution's layout), and the inputs;
    - global pre-alignment and the tile alignment (phase correlation, candidate shifts, pyramid,
      aligned copies): about 16 maps per frame plus 8 per frame and plane.
    """
    joint = getattr(config, "planes", None)  # a joint model (`models.planar`): all planes in one network pass
    if joint:
        planes = joint
    n = max(frames or config.frames, config.frames)
    big = config.frames  # the frames the network sees
    k2 = getattr(config, "kernel_size", 1) ** 2
    w0, w1 = config.widths[0], config.widths[1] if len(config.widths) > 1 else config.widths[0]
    variable, difference = int(getattr(config, "variable_frames", False)), int(getattr(config, "difference_inputs", False))
    gate, normalise = int(getattr(config, "robust_gate", False)), int(getattr(config, "normalize_kernels", False))
    inputs = big * (1 + variable + difference) + 1
    if config.kind == "dpn":
        out, head_in = 1, w0
        head = after = 2 * out + head_in + big
        gating = 0
    else:
        out = (big + len(getattr(config, "coarse_scales", ()))) * k2 + int(getattr(config, "mean_blend", False))
        if getattr(config, "half_res_output", False):
            out_full, head_in = out * 3 / 2, w1 / 4  # the head at half resolution, upsampled
        else:
            out_full, head_in = 2 * out, w0
        head = out_full + head_in + 3 * big
        after = out * (1 + variable + gate + normalise) + 3 * big
        gating = gate * (out * (1 + variable) + 2 * 16 * big + 8 * big)
        # agreement blend: the frames' squared differences, two mismatch stacks of the frames, its features
        # (7, + 1 each for the resampling and brightness inputs, + 2 with smoothed_mean) and two hidden layers of 16,
        # with smoothed_mean its blurred means and nested targets
        if getattr(config, "agreement_blend", False):
            smoothed = len(getattr(config, "smoothed_mean", ()))
            features = (7 + int(getattr(config, "resampling_input", False)) + int(getattr(config, "brightness_input", False))
                        + 2 * bool(smoothed))
            gating += 3 * big + features + 2 * 16 + 4 + 4 * smoothed
        if getattr(config, "noise_gain", False):  # its features (8), two hidden layers of 16, the scaled noise map
            gating += 3 * big + 8 + 2 * 16 + 2
        if getattr(config, "refine", 0):  # its features (4), three hidden layers (refine_hidden), K² + 1 outputs, the softmax,
            # one frame's squared kernels, with refine_context a float32 copy of the U-Net's last features, with
            # refine_search the non-local means' neighbours, distances, weights and their product (S² maps each), with
            # refine_wiener P the two DCTs, the gains and their product (P² maps each, on a frame grown by P - 1, over the
            # step² with refine_wiener_step), with
            # refine_wiener_mean the frames' mean, its noise and the two maps of their difference
            search, wiener = getattr(config, "refine_search", 0), getattr(config, "refine_wiener", 0)
            gating += (4 + 3 * getattr(config, "refine_hidden", 32) + 2 * (config.refine**2 + 1) + config.kernel_size**2 + 6
                       + config.widths[int(config.half_res_output)] * int(getattr(config, "refine_context", False))
                       + (4 * search**2 + 6) * bool(search)
                       + (4 * wiener**2 // getattr(config, "refine_wiener_step", 1) ** 2 + 6) * bool(wiener)
                       + 4 * int(getattr(config, "refine_wiener_mean", False)))
        if joint:  # every plane's kernel maps at once, views of the head's output (no transient copy), normalised
            # in place; the gate and the blend run on all planes together (measured: kpn-bayer-preview 4.2-4.6 kB/px)
            out_all = out * config.kernel_groups
            head = out_all + head_in + 3 * big * joint
            after = out_all * (1 + variable + gate) + 3 * big * joint
            gating *= joint
    decoder = 2 * (w1 + 2 * w0) + inputs + 4 * big * difference
    alignment = 16 * n + 8 * n * planes
    held = planes * (3 * n + 2) + 2 * (planes + 1)  # the tile's planes, their aligned copy, outputs; blending sums
    floats = max(head, after, gating, decoder, alignment) + held
    return 1.3 * 4 * floats


def denoise_planes(model, planes: np.ndarray, noise: NoiseLevel, tile: int, align: bool = True, amp: bool = False,
                   progress: bool = False, ensemble: bool = False, overlap: int = TILE_OVERLAP,
                   greens: tuple[int, ...] | None = None) -> np.ndarray:
    """The planes of one burst (colour channels or CFA planes), (C, n, H, W) linear ->
    their denoised references (C, H, W), tile by tile (`denoise_tile`: a grayscale model on each plane,
    its pre-alignment found on the ``greens`` planes' mean when given, a joint model (`models.planar`) once
    on all of them).

    Each tile is aligned on its own (``align``; one alignment for all planes), so alignment memory
    scales with the tile, not the image.
    """
    from burstkpn.align import tile_align
    from burstkpn.tiles import run_tiled

    if joint_planes(model) is not None:
        check_joint(model, len(planes), ensemble)

    def one_tile(part: np.ndarray) -> np.ndarray:  # (C, n, h, w) -> (C, h, w)
        part = tile_align(part) if align else part
        return denoise_tile(model, part, noise, amp=amp, ensemble=ensemble, greens=greens)

    return run_tiled(one_tile, np.asarray(planes), tile, overlap, progress=progress)


def joint_planes(model) -> int | None:
    """The planes a joint colour/raw model (`models.planar.PlanarKPN`) takes, or None for a grayscale model."""
    return getattr(getattr(model, "config", None), "planes", None)


def check_joint(model, planes: int, ensemble: bool = False, hint: str = "") -> None:
    """A one-line error unless a joint model can take a burst of ``planes`` planes."""
    want = joint_planes(model)
    kind = {4: "Bayer raw (4 CFA planes)", 3: "colour (3 channels)"}
    if planes == 1:
        raise BurstKPNError(f"this is a joint model for {kind.get(want, f'{want}-plane')} bursts; "
                            f"the burst is grayscale{hint}")
    if planes != want:
        raise BurstKPNError(f"this joint model takes {kind.get(want, f'{want}-plane')} bursts; "
                            f"the burst is {kind.get(planes, f'{planes} planes')}")
    if ensemble:
        raise BurstKPNError("the flip/rotation ensemble is not available for a joint model (flips move the CFA planes)")


def green_planes(burst: Burst, raw_mode: str = "full") -> tuple[int, ...] | None:
    """Which of `split_channels`'s planes are green: the G positions of the CFA pattern for a raw burst at
    full resolution (planes in position order TL, TR, BL, BR), channel 1 of colour, None otherwise."""
    if burst.kind == "raw":
        pattern = burst.raw_reference.pattern if burst.raw_reference is not None else ""
        greens = tuple(i for i, c in enumerate(pattern) if c == "G")
        return greens if raw_mode == "full" and len(greens) == 2 else None
    return (1,) if burst.is_colour else None


def denoise_tile(model, part: np.ndarray, noise: NoiseLevel, amp: bool = False, ensemble: bool = False,
                 greens: tuple[int, ...] | None = None) -> np.ndarray:
    """One tile's planes, (C, n, h, w) linear (already aligned, if at all) -> (C, h, w): a grayscale model on
    each plane on its own (`models.kpn.denoise_array`), a joint model once on all planes (`predict_planar`,
    which aligns on its green planes itself). ``greens``: the indices of the green planes (`green_planes`);
    given, a grayscale model's global pre-alignment is found once on their mean and serves every plane (a
    red or blue plane sees a fraction of the light, and alone it misaligns at high gain)."""
    if joint_planes(model) is None:
        from burstkpn.models.kpn import denoise_array, unwrap

        guide, shifts = None, None
        if greens and len(part) > 1 and unwrap(model).config.prealign != "none":
            guide = np.ascontiguousarray(part[list(greens)].mean(axis=0), np.float32)
            if not ensemble:  # one estimate for every plane (the ensemble's views each find their own)
                import torch

                from burstkpn.align import estimate_global_shifts

                shifts, guide = estimate_global_shifts(torch.from_numpy(guide)[None]), None
        return np.stack([denoise_array(model, p, noise, amp=amp, ensemble=ensemble, guide=guide, shifts=shifts)
                         for p in part])
    import torch

    from burstkpn.models.planar import predict_planar

    check_joint(model, len(part), ensemble)
    x = torch.from_numpy(np.ascontiguousarray(part, np.float32))[None]
    with torch.inference_mode():
        out = predict_planar(model, x, noise.sigma_read, noise.sigma_shot, amp=amp)["output"][0]
    return np.ascontiguousarray(out.float().numpy(), np.float32)


def report_frames(frames: np.ndarray, align: bool, side: int = 512) -> np.ndarray:
    """The centre crop (at most side x side) of one plane as the model sees it, for the report's kernel figures."""
    from burstkpn.align import tile_align

    h, w = frames.shape[-2:]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    crop = np.ascontiguousarray(frames[:, y : y + side, x : x + side])
    return tile_align(crop) if align else crop
