"""How far global alignment lands from the true shifts of a synthetic test set.

    python scripts/experiments/alignment_errors.py lomiri13.npz

Prints, per gain and in all, how many alternate frames `burstkpn.align.estimate_global_shifts` puts more
than 1 px and more than 3 px (largest of |dy|, |dx|) from the shift the test-set builder drew.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from burstkpn.align import estimate_global_shifts
from burstkpn.testset import load_testset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("testset")
    args = p.parse_args()
    ts = load_testset(args.testset)
    noisy = torch.from_numpy(np.asarray(ts.noisy, np.float32))
    found = torch.cat([estimate_global_shifts(noisy[i : i + 32]) for i in range(0, len(noisy), 32)]).numpy()
    error = np.abs(found - np.asarray(ts.shifts, np.float32)).max(axis=-1)[:, 1:]  # (bursts, N-1)
    gains = np.asarray(ts.gain)
    for g in sorted(set(gains.tolist())):
        e = error[gains == g]
        print(f"gain {g}: {int((e > 1).sum())} / {e.size} frames off by > 1 px, {int((e > 3).sum())} by > 3 px")
    print(f"all: {int((error > 1).sum())} / {error.size} frames off by > 1 px, {int((error > 3).sum())} by > 3 px")


if __name__ == "__main__":
    main()
