"""How much better a model would be with perfect global alignment: its PSNR per gain with the frames
aligned by its own estimator and by the test set's true shifts (an oracle only a synthetic set has).

    python scripts/experiments/oracle_alignment.py lomiri13.npz src/burstkpn/pretrained/kpn.safetensors
    python scripts/experiments/oracle_alignment.py bayer13.npz src/burstkpn/pretrained/kpn.safetensors

On a Bayer set (`burstkpn synth --colour bayer`) the true shifts are halved onto the RGGB planes; a
grayscale model runs per plane (its own alignment: each plane's own estimate, as `burstkpn evaluate`'s
per-plane row), a joint model once (its own alignment: one estimate on the green planes' mean), and PSNR is
the planes' through the sRGB curve (`models.planar.planes_psnr`, `evaluate --raw-curve`). On a static set
(`--motion static`) the oracle is the zero shift.

Rows: the model, own alignment / oracle; the aligned mean of the same frames, own / oracle (same PSNR
protocol as `burstkpn evaluate`, `burstkpn.metrics.psnr`); then how far the estimator's shifts are from the
true ones: the share of frames (the reference excluded) more than 0.5 and 2 px off in either axis, and the
median of that error.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.align import estimate_global_shifts
from burstkpn.colour_eval import burst_planes
from burstkpn.metrics import psnr
from burstkpn.models.kpn import predict
from burstkpn.models.planar import planes_psnr, predict_planar
from burstkpn.testset import load_testset
from burstkpn.weights import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("testset")
    p.add_argument("weights")
    args = p.parse_args()
    ts, model = load_testset(args.testset), load_model(args.weights).eval()
    if model.config.prealign != "global":
        raise SystemExit(f"{args.weights}: the model does not pre-align globally (prealign = {model.config.prealign!r})")
    if ts.colour not in (None, "", "bayer"):
        raise SystemExit(f"{args.testset}: a {ts.colour} set; this script takes grayscale and Bayer sets")
    bayer = ts.colour == "bayer"
    joint = getattr(model.config, "planes", None) is not None
    if joint and not bayer:
        raise SystemExit(f"{args.weights}: a joint model needs a Bayer test set")
    scores: dict[str, dict[int, list[float]]] = {}
    errors: dict[int, list[np.ndarray]] = {}
    for i in range(len(ts.gain)):
        sr, ss, white, gain = float(ts.sigma_read[i]), float(ts.sigma_shot[i]), float(ts.white_level[i]), int(ts.gain[i])
        true = torch.from_numpy(np.asarray(ts.shifts[i : i + 1], np.float32))
        if bayer:
            noisy, clean = burst_planes(ts, i)
            planes, true = torch.from_numpy(noisy), true / 2  # mosaic pixels -> plane pixels
            guides = [((planes[1] + planes[2]) / 2)[None]] if joint else [planes[c][None] for c in range(len(planes))]
        else:
            burst, clean = torch.from_numpy(np.asarray(ts.noisy[i : i + 1], np.float32)), ts.clean[i]
            guides = [burst]
        for guide in guides:  # what the pre-alignment estimates on: the green mean, each plane, the frames
            found = estimate_global_shifts(guide)
            errors.setdefault(gain, []).append((found[0] - true[0]).abs().amax(-1)[1:].numpy())
        for name in ("own", "oracle"):
            shifts = true if name == "oracle" else None  # the oracle: precomputed shifts, the test set's true ones
            with torch.inference_mode():
                if joint:
                    out = predict_planar(model, planes[None], sr, ss, shifts=shifts)
                    image, mean = out["output"][0], out["burst"][0].mean(1)
                elif bayer:
                    outs = [predict(model, planes[c][None], sr, ss, shifts=shifts) for c in range(len(planes))]
                    image = torch.stack([o["output"][0] for o in outs])
                    mean = torch.stack([o["burst"][0].mean(0) for o in outs])
                else:
                    out = predict(model, burst, sr, ss, shifts=shifts)
                    image, mean = out["output"][0], out["burst"][0].mean(0)
            for row, result in ((f"model, {name} alignment", image), (f"aligned mean, {name} alignment", mean)):
                score = planes_psnr(result.numpy(), clean, white) if bayer else psnr(result.numpy(), clean, white)
                scores.setdefault(row, {}).setdefault(gain, []).append(score)
    gains = sorted(next(iter(scores.values())))
    print("| | " + " | ".join(f"gain {g}" for g in gains) + " |\n|---|" + "---|" * len(gains))
    for row, per_gain in scores.items():
        print(f"| {row} | " + " | ".join(f"{np.mean(per_gain[g]):.2f}" for g in gains) + " |")
    err = {g: np.concatenate(errors[g]) for g in gains}
    for label, stat in (("frames > 0.5 px off", lambda e: f"{np.mean(e > 0.5):.0%}"),
                        ("frames > 2 px off", lambda e: f"{np.mean(e > 2):.0%}"),
                        ("median error (px)", lambda e: f"{np.median(e):.2f}")):
        print(f"| {label} | " + " | ".join(stat(err[g]) for g in gains) + " |")


if __name__ == "__main__":
    main()
