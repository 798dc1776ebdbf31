"""Why bm3d-merged gains from a black clip and the default does not: upper bounds on the model's side (issue 27).

    python scripts/experiments/black_clip_gain.py --images ../shared/data/test/lomiri13 --per-image 3 \
        --table1 lomiri13.npz --table1-bursts 30

Part 1, the black-clipped set of `scripts/clipped_table.py --clip black` (whole-pixel shifts, content scale 2,
exposure 0.05-0.3, 64², gains 1 / 2 / 4) and its unclipped twin (same scenes, shifts and noise draws). PSNR on the
truth's unclipped pixels (display space, range 1), mean over bursts, of:
  - the model on the twin, and on the clipped frames imputed as `denoise` does (`noise.impute_black`: the scene
    under a cut value from the frame's 5x5 mean);
  - the same imputation with a better scene under each cut value: the truth itself (an oracle: no estimate can do
    better), or the model's own first output moved to each frame by the test set's true shifts (a second pass);
  - the model on the cut frames as they are, its output declipped (`noise.declip`), and the mean of that and the
    imputed output (two runs of the model);
  - bm3d-merged on the twin, and on the clipped frames declipped;
  - the mean of the model's and bm3d-merged's outputs (clipped: imputed and declipped; twin: as they are), and the
    per-pixel pick of whichever of the two clipped outputs is nearer the truth (an oracle gate).
Part 2 (``--table1``): bm3d-merged on the Table 1 set as it is, against the same frames clipped at 0 and its output
declipped (a baseline that always works in the clipped domain), PSNR per gain over the first K bursts of each.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def impute_with_scene(frames: np.ndarray, scene: np.ndarray, level) -> np.ndarray:
    """frames (n, H, W) cut at 0, scene (n, H, W) the value under each pixel -> the cut values replaced by
    E[v | v <= 0] for v ~ N(scene, var(scene)) (`noise.impute_black` with the scene given instead of estimated)."""
    from burstkpn.noise import mean_below

    out = np.array(frames, np.float32)
    cut = np.abs(out) <= 1e-4
    out[cut] = mean_below(np.maximum(scene[cut], 0.0), level)
    return out


def to_frames(image: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The reference's image (H, W) moved to each frame by the test set's whole-pixel shifts (n, 2) -> (n, H, W)."""
    return np.stack([np.roll(image, (-int(dy), -int(dx)), axis=(0, 1)) for dy, dx in shifts])


def clipped_part(images, model: str, per_image: int) -> None:
    from burstkpn.evaluate import resolve_methods
    from burstkpn.metrics import BORDER, masked_psnr, saturated_mask, to_display
    from burstkpn.noise import NoiseLevel, declip, impute_black
    from burstkpn.testset import build_testset

    common = dict(gains=["1", "2", "4"], size=64, per_image=per_image, seed=0, motion="integer", progress=False,
                  downsample=2, white_level=(0.05, 0.3))
    clipped = build_testset(images, clip_black=True, **common)
    twin = build_testset(images, **common)
    bm3d, net = resolve_methods("bm3d-merged", [model])
    columns = ("model, twin", "model, imputed", "model, imputed from the truth", "model, second pass",
               "model, cut frames declipped", "mean of the model's two",
               "bm3d-merged, twin", "bm3d-merged, declipped", "mean of both, clipped", "mean of both, twin",
               "oracle pick, clipped")
    per_gain: dict[int, list] = {}
    for i in range(len(clipped)):
        level = NoiseLevel(float(clipped.sigma_read[i]), float(clipped.sigma_shot[i]))
        truth = np.clip(twin.clean[i], 0, 1)
        mask = ~saturated_mask(truth) & (truth[BORDER:-BORDER, BORDER:-BORDER] > 0)

        def run(method, frames):
            return np.asarray(method.denoise(np.ascontiguousarray(frames, np.float32), level), np.float32)

        cut = clipped.noisy[i]
        model_twin, bm3d_twin = run(net, twin.noisy[i]), run(bm3d, twin.noisy[i])
        imputed = run(net, impute_black(cut, level))
        oracle = run(net, impute_with_scene(cut, to_frames(truth, twin.shifts[i]), level))
        second = run(net, impute_with_scene(cut, to_frames(imputed, twin.shifts[i]), level))
        cut_declipped = declip(run(net, cut), level, 0.0, None)
        declipped = declip(run(bm3d, cut), level, 0.0, None)
        shown = to_display(truth)
        pick = np.minimum((to_display(imputed) - shown) ** 2, (to_display(declipped) - shown) ** 2)
        row = [masked_psnr(x, truth, mask) for x in (model_twin, imputed, oracle, second, cut_declipped,
                                                     (imputed + cut_declipped) / 2, bm3d_twin, declipped,
                                                     (imputed + declipped) / 2, (model_twin + bm3d_twin) / 2)]
        per_gain.setdefault(int(clipped.gain[i]), []).append(row + [float(10 * np.log10(1 / pick[mask].mean()))])
    print(f"{len(clipped)} bursts ({len(clipped) // 3} per gain), model {model}\n")
    print("| gain | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for gain, rows in sorted(per_gain.items()):
        print(f"| {gain} | " + " | ".join(f"{v:.2f}" for v in np.mean(rows, axis=0)) + " |")


def table1_part(path: str, bursts: int) -> None:
    from burstkpn.baselines.bm3d import bm3d_merged
    from burstkpn.metrics import psnr
    from burstkpn.noise import NoiseLevel, declip

    data = np.load(path)
    print(f"\nbm3d-merged on {path}, the first {bursts} bursts of each gain\n")
    print("| gain | as it is | frames clipped at 0, output declipped | difference (mean, worst burst) |")
    print("|---|---|---|---|")
    for gain in sorted(set(data["gain"].tolist())):
        rows = []
        for i in np.flatnonzero(data["gain"] == gain)[:bursts]:
            level = NoiseLevel(float(data["sigma_read"][i]), float(data["sigma_shot"][i]))
            frames, white = data["noisy"][i].astype(np.float32), float(data["white_level"][i])
            cut = declip(bm3d_merged(np.maximum(frames, 0), level), level, 0.0, None)
            rows.append((psnr(bm3d_merged(frames, level), data["clean"][i], white), psnr(cut, data["clean"][i], white)))
        a = np.array(rows)
        d = a[:, 1] - a[:, 0]
        print(f"| {gain} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | {d.mean():+.2f}, {d.min():+.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--model", default="kpn-refine")
    p.add_argument("--per-image", type=int, default=1)
    p.add_argument("--table1", help="a Table 1 test set (.npz from burstkpn synth) for part 2")
    p.add_argument("--table1-bursts", type=int, default=30)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    clipped_part(args.images, args.model, args.per_image)
    if args.table1:
        table1_part(args.table1, args.table1_bursts)
    print(f"\n{(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
