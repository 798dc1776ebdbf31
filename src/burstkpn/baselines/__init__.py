"""Classical burst denoisers, each ``denoise(burst (N, H, W) float32 linear, noise) -> (H, W)``.

`REGISTRY` maps the names used in tables to ``module:function`` and the optional packages the
method needs. Nothing here imports a method's module (or its package) until `load` asks for it,
so a missing or broken optional extra only affects its own row.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from burstkpn.errors import BurstKPNError
from burstkpn.noise import NoiseLevel

Denoiser = Callable[[np.ndarray, NoiseLevel], np.ndarray]


@dataclass(frozen=True)
class Entry:
    target: str  # "module:function" under burstkpn.baselines
    requires: tuple[str, ...] = ()  # importable names of optional packages
    pip: str = ""  # what to install when one is missing


REGISTRY: dict[str, Entry] = {
    "reference": Entry("average:reference"),
    "average": Entry("average:average"),
    "aligned-average": Entry("average:aligned_average"),
    "hdrplus": Entry("hdrplus:hdrplus"),
    "nlm": Entry("nlm:nlm", ("cv2",), "opencv-python-headless"),
    "bm3d": Entry("bm3d:bm3d", ("bm3d",), "bm3d"),
    "bm3d-merged": Entry("bm3d:bm3d_merged", ("bm3d",), "bm3d"),
    "bm4d-aligned": Entry("bm4d:bm4d_aligned", ("bm4d",), "bm4d"),
}


def missing(name: str) -> str | None:
    """Why method ``name`` cannot run here ("not installed (pip install …)"), or None if it can."""
    entry = _entry(name)
    absent = [pkg for pkg in entry.requires if importlib.util.find_spec(pkg) is None]
    return f"not installed (pip install {entry.pip})" if absent else None


def load(name: str) -> Denoiser:
    """The denoise function behind a table name; a one-line error if its extra is missing."""
    reason = missing(name)
    if reason:
        raise BurstKPNError(f"method {name!r}: {reason}")
    module, function = _entry(name).target.split(":")
    return getattr(importlib.import_module(f"burstkpn.baselines.{module}"), function)


def _entry(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BurstKPNError(f"unknown method {name!r}: known methods are {', '.join(REGISTRY)}") from None
