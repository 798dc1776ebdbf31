"""Camera stages as forward/inverse pairs: display gamma, the sRGB curve, white level, grayscale.

All functions take numpy arrays or torch tensors (anything with ``clip`` and ``**``) in [0, 1].

Below them, numpy only: Brooks et al.'s full unprocessing (`unprocess`: tone curve, gamma, colour
correction, white balance, Bayer mosaic inverted with a random `CameraParams`) and its forward
`process`, each stage a forward/inverse pair.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# --- Full unprocessing and processing (Brooks et al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019) ---
#
# A display-referred sRGB image becomes plausible raw data by inverting, stage by stage, what a camera's
# pipeline does; `process` applies the same stages forwards. Images are channels-last, (..., H, W, 3); mosaics
# (..., H, W) with the CFA pattern named by its top-left 2x2 block (as `burstkpn.io.raw`). The grayscale path
# above (`gamma_expand`, `to_grayscale`) is the paper's (Mildenhall et al.) and is not used here.
#
#   unprocess: inverse_tone_curve -> safe_gamma_expand -> inverse_colour_correction -> inverse_white_balance
#              -> clip to [0, 1] -> mosaic
#   process:   white_balance -> clip -> demosaic -> colour_correction -> clip -> safe_gamma_compress -> tone_curve

# linear sRGB (D65) -> CIE XYZ (the matrix Brooks et al. compose with)
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))

# The four XYZ -> camera matrices Brooks et al. publish with their code (google-research/unprocessing,
# `random_ccm`): the cameras of the Darmstadt Noise Dataset. Three are Adobe's ColorMatrix values as dcraw/LibRaw
# tabulate them (Sony A7R, Olympus E-M10/E-P5, Sony RX100 III-V); the first, by elimination, the Nexus 6P's.
XYZ_TO_CAMS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "Huawei Nexus 6P": ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    "Sony ILCE-7R": ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    "Olympus E-M10": ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    "Sony DSC-RX100 IV": ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
}

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
# each pattern is RGGB seen through flips of the (even-sized) image: axes of an (..., H, W) mosaic
PATTERN_FLIPS = {"RGGB": (), "GRBG": (-1,), "GBRG": (-2,), "BGGR": (-2, -1)}
WB_INFLECTION = 0.9  # `inverse_white_balance`: above this mean value the gains fade to 1 (highlights stay bright)
GAMMA_FLOOR = 1e-8  # Brooks et al.'s clamp before the power law


def tone_curve(x):
    """Global tone mapping, the smoothstep ``3x² - 2x³`` on [0, 1] (clipped); any shape -> same shape."""
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_tone_curve(y):
    """Inverse of `tone_curve`: ``0.5 - sin(asin(1 - 2y) / 3)`` on [0, 1] (clipped); any shape -> same shape."""
    y = np.clip(y, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)


def safe_gamma_expand(x, gamma: float = DISPLAY_GAMMA):
    """Display -> linear as Brooks et al.: ``max(x, 1e-8) ** gamma``; any shape -> same shape."""
    return np.maximum(x, GAMMA_FLOOR) ** gamma


def safe_gamma_compress(x, gamma: float = DISPLAY_GAMMA):
    """Inverse of `safe_gamma_expand`: ``max(x, 1e-8) ** (1 / gamma)``; any shape -> same shape."""
    return np.maximum(x, GAMMA_FLOOR) ** (1.0 / gamma)


def apply_colour_matrix(image: np.ndarray, matrix) -> np.ndarray:
    """Each pixel times a 3x3 matrix, ``out[..., i] = sum_j matrix[i, j] * image[..., j]``: (..., 3) -> (..., 3)."""
    image = np.asarray(image)
    m = np.asarray(matrix, dtype=image.dtype if image.dtype.kind == "f" else np.float64)
    if image.shape[-1:] != (3,) or m.shape != (3, 3):
        raise ValueError(f"expected (..., 3) pixels and a (3, 3) matrix, got {image.shape} and {m.shape}")
    return image @ m.T


def rgb_to_camera_matrix(xyz2cam) -> np.ndarray:
    """An XYZ -> camera matrix composed with sRGB -> XYZ, each row normalised to sum 1 (white stays white): (3, 3)."""
    rgb2cam = np.asarray(xyz2cam, dtype=np.float64) @ np.asarray(SRGB_TO_XYZ)
    return rgb2cam / rgb2cam.sum(axis=1, keepdims=True)


def sample_rgb2cam(rng: np.random.Generator) -> np.ndarray:
    """A random sRGB -> camera matrix (3, 3): a random convex combination of `XYZ_TO_CAMS`, then `rgb_to_camera_matrix`."""
    weights = rng.uniform(1e-8, 1.0, size=len(XYZ_TO_CAMS))
    xyz2cam = np.tensordot(weights / weights.sum(), np.asarray(list(XYZ_TO_CAMS.values())), axes=1)
    return rgb_to_camera_matrix(xyz2cam)


def inverse_colour_correction(rgb: np.ndarray, rgb2cam) -> np.ndarray:
    """Linear sRGB -> linear camera RGB (undoes the camera's colour correction): (..., 3) -> (..., 3)."""
    return apply_colour_matrix(rgb, rgb2cam)


def colour_correction(cam: np.ndarray, rgb2cam) -> np.ndarray:
    """Inverse of `inverse_colour_correction`: camera RGB -> linear sRGB with ``inv(rgb2cam)``: (..., 3) -> (..., 3)."""
    return apply_colour_matrix(cam, np.linalg.inv(np.asarray(rgb2cam, dtype=np.float64)))


def sample_gains(rng: np.random.Generator) -> tuple[float, float, float]:
    """(rgb_gain, red_gain, blue_gain) as Brooks et al. draw them: 1 / N(0.8, 0.1) brightening, U(1.9, 2.4), U(1.5, 1.9)."""
    rgb_gain = 1.0 / max(float(rng.normal(0.8, 0.1)), 0.1)  # the floor is 7 sigma out: it only guards the division
    return rgb_gain, float(rng.uniform(1.9, 2.4)), float(rng.uniform(1.5, 1.9))


def _channel_gains(rgb_gain: float, red_gain: float, blue_gain: float) -> np.ndarray:
    return rgb_gain * np.array([red_gain, 1.0, blue_gain])


def white_balance(image: np.ndarray, rgb_gain: float, red_gain: float, blue_gain: float, pattern: str | None = None) -> np.ndarray:
    """Camera RGB times ``rgb_gain * (red_gain, 1, blue_gain)``: (..., 3) -> (..., 3); with ``pattern``, a
    (..., H, W) mosaic, each pixel by its colour's gain -> (..., H, W)."""
    image = np.asarray(image)
    gains = _channel_gains(rgb_gain, red_gain, blue_gain).astype(image.dtype if image.dtype.kind == "f" else np.float64)
    if pattern is None:
        return image * gains
    _check_pattern(pattern)
    out = image * gains[1]
    for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        if pattern[k] != "G":
            out[..., i::2, j::2] = image[..., i::2, j::2] * gains["RGB".index(pattern[k])]
    return out


def inverse_white_balance(cam: np.ndarray, rgb_gain: float, red_gain: float, blue_gain: float,
                          inflection: float = WB_INFLECTION) -> np.ndarray:
    """Inverse of `white_balance` (Brooks et al.'s safe inverse gains): (..., 3) -> (..., 3).

    Exact where a pixel's channel mean is at most ``inflection``; above it the inverse gains fade towards 1
    (a quadratic mask of the mean), so saturated highlights are not dimmed into a coloured grey that would
    never clip: they stay at 1 in every channel, as a real sensor's saturated pixels do. ``inflection=1`` (or
    above) is the plain inverse everywhere.
    """
    cam = np.asarray(cam)
    dtype = cam.dtype if cam.dtype.kind == "f" else np.float64
    gains = (1.0 / _channel_gains(rgb_gain, red_gain, blue_gain)).astype(dtype)
    if inflection >= 1.0:
        return cam * gains
    mask = (np.maximum(cam.mean(axis=-1, keepdims=True) - inflection, 0.0) / (1.0 - inflection)) ** 2
    return cam * np.maximum(mask + (1.0 - mask) * gains, gains)


def _check_pattern(pattern: str) -> None:
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}: use one of {', '.join(BAYER_PATTERNS)}")


def _check_even(shape: tuple[int, ...], what: str) -> None:
    if len(shape) < 2 or shape[0] % 2 or shape[1] % 2:
        raise ValueError(f"{what} needs an even height and width, got {shape[1] if len(shape) > 1 else '?'}x{shape[0] if shape else '?'}")


def mosaic(rgb: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Bayer mosaic of camera RGB: (..., H, W, 3) -> (..., H, W), H and W even; RGGB sampled directly, the
    other patterns by flipping the image before and the mosaic after (GRBG: left-right, GBRG: up-down, BGGR: both)."""
    _check_pattern(pattern)
    rgb = np.asarray(rgb)
    if rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3), got shape {rgb.shape}")
    _check_even(rgb.shape[-3:-1], "a Bayer mosaic")
    flips = PATTERN_FLIPS[pattern]
    image = np.flip(rgb, axis=tuple(a - 1 for a in flips)) if flips else rgb
    out = np.empty(image.shape[:-1], dtype=image.dtype)
    out[..., 0::2, 0::2] = image[..., 0::2, 0::2, 0]
    out[..., 0::2, 1::2] = image[..., 0::2, 1::2, 1]
    out[..., 1::2, 0::2] = image[..., 1::2, 0::2, 1]
    out[..., 1::2, 1::2] = image[..., 1::2, 1::2, 2]
    return np.ascontiguousarray(np.flip(out, axis=flips)) if flips else out


def demosaic(raw: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Malvar-He-Cutler (2004) demosaicing by `colour-demosaicing`: (..., H, W) mosaic -> (..., H, W, 3), the
    input's float dtype. Needs the ``colour`` extra (``pip install 'burstkpn[colour]'``)."""
    _check_pattern(pattern)
    raw = np.asarray(raw)
    if raw.ndim < 2:
        raise ValueError(f"expected a (..., H, W) mosaic, got shape {raw.shape}")
    malvar = _malvar2004()
    dtype = raw.dtype if raw.dtype.kind == "f" else np.float64
    _check_even(raw.shape[-2:], "demosaicing")
    # The library's filters reflect at the border, which mixes colours there; a 2-px reflection (the 5x5
    # filters' reach) keeps every padded pixel's CFA colour, so the border is demosaiced like the interior.
    flat = np.pad(raw.reshape(-1, *raw.shape[-2:]).astype(np.float64), ((0, 0), (2, 2), (2, 2)), mode="reflect")
    out = np.stack([np.asarray(malvar(m, pattern))[2:-2, 2:-2] for m in flat])
    return out.reshape(*raw.shape, 3).astype(dtype)


def _malvar2004():
    import warnings

    try:
        with warnings.catch_warnings():  # colour-demosaicing 0.2.7 imports scipy.ndimage.filters (deprecated in scipy 1.x)
            warnings.simplefilter("ignore", DeprecationWarning)
            from colour_demosaicing import demosaicing_CFA_Bayer_Malvar2004
    except ImportError:
        from burstkpn.errors import BurstKPNError

        raise BurstKPNError("demosaicing needs colour-demosaicing: pip install 'burstkpn[colour]'") from None
    return demosaicing_CFA_Bayer_Malvar2004


@dataclass(frozen=True)
class CameraParams:
    """One unprocessed image's camera: rgb2cam (3, 3) sRGB -> camera (rows sum to 1), the brightening
    ``rgb_gain`` and the white-balance ``red_gain``, ``blue_gain`` that `process` applies, and the CFA
    ``pattern``. Plain values (tuples, floats, str), so it compares, hashes and serialises (`to_dict`)."""

    rgb2cam: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    rgb_gain: float
    red_gain: float
    blue_gain: float
    pattern: str = "RGGB"

    def __post_init__(self) -> None:
        m = np.asarray(self.rgb2cam, dtype=np.float64)
        if m.shape != (3, 3) or not np.isfinite(m).all() or abs(np.linalg.det(m)) < 1e-12:
            raise ValueError(f"rgb2cam must be an invertible finite 3x3 matrix, got {self.rgb2cam!r}")
        gains = (self.rgb_gain, self.red_gain, self.blue_gain)
        if not all(np.isfinite(g) and g > 0 for g in gains):
            raise ValueError(f"gains must be finite and positive, got {gains}")
        _check_pattern(self.pattern)
        object.__setattr__(self, "rgb2cam", tuple(tuple(float(v) for v in row) for row in m))
        for name, g in zip(("rgb_gain", "red_gain", "blue_gain"), gains):
            object.__setattr__(self, name, float(g))

    @property
    def matrix(self) -> np.ndarray:
        """rgb2cam as a (3, 3) float64 array."""
        return np.array(self.rgb2cam, dtype=np.float64)

    @property
    def cam2rgb(self) -> np.ndarray:
        """The colour correction `process` applies, ``inv(rgb2cam)``: (3, 3)."""
        return np.linalg.inv(self.matrix)

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON, test-set metadata); `from_dict` reads it back exactly."""
        return {"rgb2cam": [list(row) for row in self.rgb2cam], "rgb_gain": self.rgb_gain,
                "red_gain": self.red_gain, "blue_gain": self.blue_gain, "pattern": self.pattern}

    @classmethod
    def from_dict(cls, d: dict) -> CameraParams:
        """Inverse of `to_dict`."""
        return cls(rgb2cam=tuple(tuple(row) for row in d["rgb2cam"]), rgb_gain=d["rgb_gain"],
                   red_gain=d["red_gain"], blue_gain=d["blue_gain"], pattern=d.get("pattern", "RGGB"))


def sample_camera_params(rng: np.random.Generator, pattern: str = "RGGB") -> CameraParams:
    """A random camera as Brooks et al. draw one: `sample_rgb2cam`, then `sample_gains` (in that order from ``rng``)."""
    rgb2cam = sample_rgb2cam(rng)
    rgb_gain, red_gain, blue_gain = sample_gains(rng)
    return CameraParams(tuple(map(tuple, rgb2cam)), rgb_gain, red_gain, blue_gain, pattern)


def _float_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype.kind != "f":
        raise TypeError(f"expected a float image in [0, 1] (or uint8), got {image.dtype}")
    return image


def unprocess(rgb: np.ndarray, rng: np.random.Generator | None = None, *, params: CameraParams | None = None,
              pattern: str = "RGGB", mosaicked: bool = True) -> tuple[np.ndarray, CameraParams]:
    """Display sRGB (..., H, W, 3) in [0, 1] (or uint8) -> plausible raw: the (..., H, W) Bayer mosaic, or with
    ``mosaicked=False`` linear camera RGB (..., H, W, 3), clipped to [0, 1], in the input's float dtype; and
    the `CameraParams` used: ``params`` if given, else drawn from ``rng`` (`sample_camera_params` with ``pattern``)."""
    if params is None:
        if rng is None:
            raise ValueError("unprocess needs a numpy Generator (rng) or CameraParams (params)")
        params = sample_camera_params(rng, pattern)
    image = _float_image(rgb)
    if image.shape[-1:] != (3,):
        raise ValueError(f"expected (..., H, W, 3), got shape {image.shape}")
    linear = safe_gamma_expand(inverse_tone_curve(image))
    cam = inverse_colour_correction(linear, params.matrix)
    cam = np.clip(inverse_white_balance(cam, params.rgb_gain, params.red_gain, params.blue_gain), 0.0, 1.0)
    return (mosaic(cam, params.pattern) if mosaicked else cam), params


def process(raw: np.ndarray, params: CameraParams, *, mosaicked: bool = True) -> np.ndarray:
    """Raw -> display sRGB in [0, 1], (..., H, W, 3): the (..., H, W) mosaic in ``params.pattern``, or with
    ``mosaicked=False`` linear camera RGB (..., H, W, 3); the inverse of `unprocess` (`demosaic` needs the
    ``colour`` extra). Brooks et al.'s forward pipeline, with the brightening ``rgb_gain`` and the tone curve
    applied too so that the round trip is the identity."""
    raw = np.asarray(raw)
    if raw.dtype.kind != "f":
        raise TypeError(f"expected a float raw image, got {raw.dtype}")
    gains = (params.rgb_gain, params.red_gain, params.blue_gain)
    if mosaicked:
        cam = demosaic(np.clip(white_balance(raw, *gains, pattern=params.pattern), 0.0, 1.0), params.pattern)
    else:
        cam = np.clip(white_balance(raw, *gains), 0.0, 1.0)
    linear = np.clip(colour_correction(cam, params.matrix), 0.0, 1.0)
    return tone_curve(safe_gamma_compress(linear))
