"""Which image the last stage's Wiener filter should read: the merge, or the frames' mean (issue 25).

    python scripts/experiments/wiener_input.py kpn-refine --images ../shared/data/test/lomiri13 \
        --cells "static s1 gbase;static s4 gbase;static s4 g1;integer s4 gbase;global s4 g4"

Offline, on a model without the filter: its last stage's output r is the pilot of `dct_wiener` (8x8 DCT, the noise
factors 1, the strength 1 everywhere) run on (a) the stage's input, the merge, with the merge's noise std
(`output_noise`), or (b) the mean of the pre-aligned frames the network saw, with sigma/sqrt(N); each also with the
clean image as pilot (the filter's ceiling), and (c) a grouped variant of (b): for every 8x8 patch the K patches of
the pilot nearest to it in a search window, a DCT across the group, the Wiener gains from the pilot's group and only
the reference patch put back (BM3D's second step with reference-only aggregation). Each entry: mean gamma PSNR (dB)
over the cell's scenes, float32; bm3d-merged beside it. The filter assumes white noise: the frames' mean keeps it
white where the frames line up, a merge's kernels spread it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from burstkpn.baselines.bm3d import bm3d_merged
from burstkpn.metrics import psnr
from burstkpn.models.kpn import dct_matrix, dct_wiener, denoise_array, frame_mean, patch_dct, patch_idct
from burstkpn.noise import NoiseLevel
from burstkpn.sweep import cell_testset, grid
from burstkpn.weights import resolve_model


def grouped_wiener(noisy: torch.Tensor, pilot: torch.Tensor, sigma: torch.Tensor, size: int = 8, search: int = 15,
                   group: int = 8) -> torch.Tensor:
    """(1, 1, H, W) each -> (1, 1, H, W): `dct_wiener` with each patch filtered in a group of its ``group`` nearest
    pilot patches (a ``group``-point DCT across them), only the reference patch of each group put back."""
    m, pad, r = dct_matrix(size), (size - 1,) * 4, search // 2
    cx = patch_dct(F.pad(noisy, pad, mode="replicate"), m)[0]
    cp = patch_dct(F.pad(pilot, pad, mode="replicate"), m)[0]
    var = F.avg_pool2d(F.pad(sigma**2, pad, mode="replicate"), size, stride=1)[0].clamp(min=1e-12)
    c, h, w = cx.shape
    cxp, cpp = (F.pad(t[None], (r,) * 4, mode="replicate")[0] for t in (cx, cp))
    xs, ps, ds = [], [], []
    for dy in range(search):
        for dx in range(search):
            shifted = cpp[:, dy : dy + h, dx : dx + w]
            xs.append(cxp[:, dy : dy + h, dx : dx + w])
            ps.append(shifted)
            ds.append(((shifted - cp) ** 2).sum(0) - (1.0 if dy == dx == r else 0.0))  # the reference patch first
    index = torch.stack(ds).topk(group, dim=0, largest=False).indices[:, None].expand(group, c, h, w)
    xg, pg = torch.stack(xs).gather(0, index), torch.stack(ps).gather(0, index)
    t = dct_matrix(group)
    x3, p3 = torch.einsum("jk,kchw->jchw", t, xg), torch.einsum("jk,kchw->jchw", t, pg)
    gain = p3**2 / (p3**2 + var[None])
    weight = 1 / (var * gain.square().sum((0, 1))[None]).clamp(min=1e-12)
    reference = torch.einsum("j,jchw->chw", t[:, 0], x3 * gain)
    total = patch_idct((reference * weight)[None], m)
    coverage = F.conv_transpose2d(weight[None], torch.ones(1, 1, size, size))
    crop = (slice(None), slice(None), slice(size - 1, -(size - 1)), slice(size - 1, -(size - 1)))
    return total[crop] / coverage[crop]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="weights file or shipped model name (a model with a last stage)")
    p.add_argument("--images", nargs="+", required=True, help="held-out photos")
    p.add_argument("--cells", required=True, help="sweep cell labels separated by ';'")
    p.add_argument("--white-level", nargs="+", default=["1,1", "0.1,0.3"], help="exposure ranges LOW,HIGH")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model)[0].eval()
    seen: dict[str, torch.Tensor] = {}
    model.register_forward_pre_hook(lambda mod, a: seen.update(burst=a[0].float(), noise=a[1][:, 0].float()))
    model.refine.register_forward_hook(lambda mod, a, out: seen.update(merge=a[0].float(), merge_sigma=a[1].float(),
                                                                       refined=out[0].float()))
    exposures = [tuple(float(v) for v in e.split(",")) for e in args.white_level]
    wanted = args.cells.split(";")
    cells = [c for c in grid(exposures=exposures) if c.label in wanted]
    columns = ["model", "merge", "merge, clean pilot", "mean", "mean, clean pilot", "mean, grouped", "bm3d-merged"]
    print("| cell | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    start = time.time()
    matrix = dct_matrix(8)
    for cell in cells:
        ts = cell_testset(args.images, cell)
        rows = []
        for i in range(len(ts)):
            noise, white = NoiseLevel(float(ts.sigma_read[i]), float(ts.sigma_shot[i])), float(ts.white_level[i])
            noisy = np.ascontiguousarray(ts.noisy[i])
            out = denoise_array(model, noisy, noise)
            crop = (slice(0, out.shape[0]), slice(0, out.shape[1]))
            merge, sigma, pilot = (seen[k][:, None] for k in ("merge", "merge_sigma", "refined"))
            mean = frame_mean(seen["burst"])[:, None]
            mean_sigma = seen["noise"][:, None] / seen["burst"].shape[1] ** 0.5
            clean = torch.from_numpy(np.ascontiguousarray(ts.clean[i])).float()
            clean = F.pad(clean[None, None], (0, merge.shape[-1] - clean.shape[1], 0, merge.shape[-2] - clean.shape[0]),
                          mode="replicate")
            with torch.no_grad():
                images = [pilot, dct_wiener(merge, pilot, sigma, matrix), dct_wiener(merge, clean, sigma, matrix),
                          dct_wiener(mean, pilot, mean_sigma, matrix), dct_wiener(mean, clean, mean_sigma, matrix),
                          grouped_wiener(mean, pilot, mean_sigma)]
            row = [psnr(y[0, 0].numpy()[crop], ts.clean[i], white) for y in images]
            row.append(psnr(bm3d_merged(noisy, noise), ts.clean[i], white))
            rows.append(row)
        print(f"| {cell.label} | " + " | ".join(f"{v:.2f}" for v in np.mean(rows, axis=0)) + " |", flush=True)
    print(f"\n{len(cells)} cells in {(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
