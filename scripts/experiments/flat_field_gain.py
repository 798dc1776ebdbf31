"""Does a model keep the brightness of a flat field? Output mean / input mean per plane, for grey and joint models.

    python scripts/experiments/flat_field_gain.py kpn kpn-bayer-preview ~/runs/snap.safetensors

Each burst: 8 static frames of 96², every plane flat at a level times a plane ratio, with the noise the model is
told (Gaussian with the shot + read variance of the level, `noise.add_noise`), at gain 2 of the paper. A joint raw
model gets typical white-balanced plane ratios (R, G, G, B) = (0.5, 1, 1, 0.45) and equal planes; a grey model
one plane. Ratios far from 1 are a brightness error (docs/experiments/colour-joint.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from burstkpn.noise import add_noise, noise_level_for_gain
from burstkpn.pipeline import denoise_tile
from burstkpn.weights import load_model, resolve_model


def flat_gains(model, ratios, level: float, gain: float = 2.0, seed: int = 0, side: int = 96) -> list[float]:
    noise = noise_level_for_gain(gain)
    rng = np.random.default_rng(seed)
    clean = np.broadcast_to(np.asarray(ratios, np.float32)[:, None, None, None] * level, (len(ratios), 8, side, side))
    out = denoise_tile(model, add_noise(clean, noise, rng), noise)  # grey: per plane; joint: all planes at once
    inner = out[..., 8:-8, 8:-8].mean(axis=(-2, -1))
    return [float(o / (r * level)) for o, r in zip(inner, ratios)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="shipped model names or weights files")
    p.add_argument("--levels", nargs="+", type=float, default=[0.1, 0.3, 0.6, 0.9])
    args = p.parse_args()
    for name in args.models:
        model = load_model(resolve_model(name, None)[1]).eval()
        planes = getattr(model.config, "planes", None)
        cases = {"wb": (0.5, 1, 1, 0.45), "equal": (1, 1, 1, 1)} if planes == 4 else {"": (1,) * (planes or 1)}
        for label, ratios in cases.items():
            for level in args.levels:
                gains = flat_gains(model, ratios, level)
                print(f"{name} {label} level {level:g}: " + " ".join(f"{g:.3f}" for g in gains))


if __name__ == "__main__":
    main()
