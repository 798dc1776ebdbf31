"""``burstkpn demo``: the README's quick-start job on an embedded default.

Synthesises a burst from a photo bundled with scikit-image (no download), at a chosen gain, and
writes the clean ground truth, the noisy reference frame, every frame and each method's result
(classical baselines and the shipped KPN, or ``--model``) as PNGs, with their PSNR/SSIM in
``summary.json``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from burstkpn.camera import gamma_expand, linear_to_srgb8, sample_white_level, to_grayscale
from burstkpn.io.images import atomic_output, check_output_folder, make_folder, write_png
from burstkpn.metrics import CAPTION, psnr, ssim
from burstkpn.noise import add_noise, noise_level_for_gain
from burstkpn.synth import BurstConfig, synthesize_burst

BUNDLED = ("astronaut", "camera", "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--image", default="astronaut", choices=BUNDLED, help="scikit-image bundled photo")
    p.add_argument("--gain", default="2", help="noise level: gain 1, 2, 4 or 8 (default 2)")
    p.add_argument("--size", type=int, default=96, help="burst side in pixels (default 96)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="reference,average,aligned-average,hdrplus",
                   help="classical methods to run beside the model (comma-separated)")
    p.add_argument("--model", help="weights file (default: the KPN shipped with burstkpn)")


def bundled_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as (H, W) linear grayscale float32."""
    from skimage import data

    pixels = getattr(data, name)().astype(np.float32) / 255.0
    return to_grayscale(gamma_expand(pixels)).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    level = noise_level_for_gain(args.gain)
    out = check_output_folder(args.out)  # created only once there is something to write
    rng = np.random.default_rng(args.seed)
    cfg = BurstConfig(frames=args.frames, size=args.size)
    burst = synthesize_burst(bundled_photo(args.image), rng, cfg)
    white = sample_white_level(rng)
    clean_frames = burst.frames * white
    noisy = add_noise(clean_frames, level, rng)
    clean = clean_frames[0]

    from burstkpn.evaluate import model_method, resolve_methods
    from burstkpn.weights import default_weights

    methods = resolve_methods(args.methods)
    weights = args.model or default_weights()
    if weights is not None:
        methods.append(model_method(weights))
    else:
        print("note: this install ships no trained model; pass --model WEIGHTS to add one")
    results = {m.name: m.denoise(noisy, level) for m in methods if m.denoise is not None}
    rows = {name: {"psnr": psnr(img, clean, white), "ssim": ssim(img, clean, white)} for name, img in results.items()}

    make_folder(out)

    def save(name: str, linear: np.ndarray) -> None:
        write_png(out / f"{name}.png", linear_to_srgb8(linear / white))

    save("clean", clean)
    for name, img in results.items():
        save(name, img)
    for i, frame in enumerate(noisy):
        save(f"frame_{i:02d}", frame)
    summary = {
        "image": args.image, "gain": int(args.gain), "size": args.size, "frames": args.frames, "seed": args.seed,
        "sigma_read": level.sigma_read, "sigma_shot": level.sigma_shot, "white_level": white,
        "shifts_px": burst.shifts.tolist(), "model": str(weights) if weights else None,
        "metrics": rows, "metrics_caption": CAPTION,
    }
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    from burstkpn.report import demo_report

    model = next((m.model for m in methods if m.model is not None), None)
    images = {name: (out / f"{name}.png").read_bytes() for name in ("clean", *results)}
    demo_report(out, images, rows, CAPTION, model, noisy, level, white,
                {k: summary[k] for k in ("image", "gain", "size", "frames", "seed", "model")})
    print(f"burst: {args.frames} frames of {args.size}x{args.size} from skimage '{args.image}', gain {args.gain}, white level {white:.3f}")
    print(f"{'method':<16} {'PSNR':>7} {'SSIM':>7}")
    for name, r in rows.items():
        print(f"{name:<16} {r['psnr']:7.2f} {r['ssim']:7.4f}")
    print(f"({CAPTION})")
    print(f"wrote {out}/: clean.png, frame_*.png, {', '.join(f'{n}.png' for n in results)}, summary.json, report.html")
    return 0
