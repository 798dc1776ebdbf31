"""Multi-frame non-local means (Buades, Coll & Morel, CVPR 2005 / "Denoising image sequences does
not require motion estimation", AVSS 2005), through OpenCV's ``fastNlMeansDenoisingMulti``.

The burst is first aligned to the reference with HDR+ tile alignment (`burstkpn.align.aligned_stack`) so
that the large misalignments fall inside NLM's search window, stabilised with the generalised
Anscombe transform (unit noise σ) and scaled to 8 bits, where OpenCV's filter strength ``h`` is set
to ``H_PER_SIGMA`` noise σ. Simplified: OpenCV's 8-bit implementation (a quantisation step of
about 0.2 σ or finer at the paper's gains), a temporal window of the largest odd size centred on the reference (7 of 8 frames).
"""

from __future__ import annotations

import numpy as np

from burstkpn.align import aligned_stack
from burstkpn.baselines.vst import anscombe, inverse_anscombe
from burstkpn.noise import NoiseLevel

H_PER_SIGMA = 0.8  # filter strength in noise σ; of 0.6-2.0 on training bursts, 0.8 had the best mean PSNR
PATCH, SEARCH = 7, 21  # OpenCV's template and search window sizes


def nlm(burst: np.ndarray, noise: NoiseLevel, h_per_sigma: float = H_PER_SIGMA) -> np.ndarray:
    """(N, H, W) linear burst -> (H, W) estimate of the reference frame."""
    import cv2

    stabilised = anscombe(aligned_stack(burst), noise)  # (N, H, W), noise σ ≈ 1
    lo, hi = float(stabilised.min()), float(stabilised.max())
    scale = 255.0 / max(hi - lo, 1e-6)  # 8-bit levels per noise σ
    frames = [np.round((f - lo) * scale).clip(0, 255).astype(np.uint8) for f in stabilised]
    n = len(frames)
    centre = n // 2
    frames.insert(centre, frames.pop(0))  # the reference in the middle of the temporal window
    window = 2 * min(centre, n - 1 - centre) + 1
    out = cv2.fastNlMeansDenoisingMulti(frames, centre, window, None, h_per_sigma * scale, PATCH, SEARCH)
    return inverse_anscombe(out.astype(np.float64) / scale + lo, noise).astype(np.float32)
