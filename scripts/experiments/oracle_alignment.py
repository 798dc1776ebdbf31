"""How much better a model would be with perfect global alignment: its PSNR per gain with the frames
aligned by its own estimator and by the test set's true shifts (an oracle only a synthetic set has).

    python scripts/experiments/oracle_alignment.py lomiri13.npz src/burstkpn/pretrained/kpn.safetensors

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
from burstkpn.metrics import psnr
from burstkpn.models.kpn import predict
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
    scores: dict[str, dict[int, list[float]]] = {}
    errors: dict[int, list[np.ndarray]] = {}
    for i in range(len(ts.gain)):
        burst = torch.from_numpy(np.asarray(ts.noisy[i : i + 1], np.float32))
        true = torch.from_numpy(np.asarray(ts.shifts[i : i + 1], np.float32))
        for name in ("own", "oracle"):
            with torch.inference_mode():  # the oracle: predict's precomputed shifts, the test set's true ones
                out = predict(model, burst, float(ts.sigma_read[i]), float(ts.sigma_shot[i]),
                              shifts=true if name == "oracle" else None)
            if name == "own":
                found = estimate_global_shifts(burst)  # what predict's pre-alignment uses
                errors.setdefault(int(ts.gain[i]), []).append((found[0] - true[0]).abs().amax(-1)[1:].numpy())
            for row, image in ((f"model, {name} alignment", out["output"][0]), (f"aligned mean, {name} alignment", out["burst"][0].mean(0))):
                scores.setdefault(row, {}).setdefault(int(ts.gain[i]), []).append(
                    psnr(image.numpy(), ts.clean[i], float(ts.white_level[i])))
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
