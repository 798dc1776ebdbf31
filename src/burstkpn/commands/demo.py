"""``burstkpn demo``: the README's main job on an embedded default.

Synthesises a burst from a photo bundled with scikit-image (no download), at a chosen gain, and
writes the clean ground truth, the noisy reference frame, every frame and each method's result
(classical baselines and the shipped KPN, or ``--model``) as PNGs, with their PSNR/SSIM in
``summary.json``.

By default the burst is in colour: 256x256 crops of the astronaut. The models (and the classical
methods) are grayscale, so the colour burst is made, and denoised, one channel at a time, as
`burstkpn denoise` does with colour photos: `synth.make_scene` cuts each channel with an
identically seeded generator, so every channel gets the same crop, the same per-frame shifts and
the same white level (one camera motion, one exposure); noise is then drawn independently for each
pixel of each channel, each method runs on each channel's burst and the results are stacked back
into colour PNGs. PSNR is computed over all channels together (the mean squared error over R, G
and B), SSIM is the mean of the three channels' SSIMs. ``--gray`` gives the luminance burst of
earlier versions (``--gray --size 96`` reproduces their numbers exactly). A photo smaller than the
paper's geometry needs (4x area downsampling of a window with ±16-px shifts: 1152 px for 256-px
crops) is first enlarged (bilinear) to just that.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from burstkpn.camera import gamma_expand, linear_to_srgb8, to_grayscale
from burstkpn.io.images import atomic_output, check_output_folder, make_folder, write_png
from burstkpn.metrics import CAPTION, psnr, ssim
from burstkpn.noise import add_noise, noise_level_for_gain
from burstkpn.synth import BurstConfig, make_scene

BUNDLED = ("astronaut", "camera", "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel")
DEFAULT_SIZE = 256
COLOUR_CAPTION = (f"{CAPTION}; colour: PSNR over R, G and B together (one mean squared error), SSIM the mean "
                  "of the three channels' SSIMs; each channel was denoised as its own grayscale burst")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--image", default="astronaut", choices=BUNDLED, help="scikit-image bundled photo")
    p.add_argument("--gain", default="2", help="noise level: gain 1, 2, 4 or 8 (default 2)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"burst side in pixels (default {DEFAULT_SIZE})")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gray", action="store_true",
                   help="a grayscale (luminance) burst instead of colour (the demo of earlier versions with --size 96)")
    p.add_argument("--methods", default="reference,average,aligned-average,hdrplus",
                   help="classical methods to run beside the model (comma-separated)")
    p.add_argument("--model", help="weights file (default: the KPN shipped with burstkpn)")


def bundled_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as (H, W) linear grayscale float32."""
    return to_grayscale(bundled_photo_rgb(name)).astype(np.float32)


def bundled_photo_rgb(name: str) -> np.ndarray:
    """A scikit-image bundled photo, linear float32: (H, W, 3) for a colour photo, (H, W) for a gray one."""
    from skimage import data

    pixels = getattr(data, name)()
    if pixels.ndim == 3:
        pixels = pixels[..., :3]  # drop an alpha channel
    return gamma_expand(pixels.astype(np.float32) / 255.0).astype(np.float32)


def fit_to(photo: np.ndarray, cfg: BurstConfig) -> tuple[np.ndarray, float]:
    """``photo`` (H, W[, C]) enlarged (bilinear) so that its short side holds ``cfg``'s window, and the factor
    (1.0: the photo already fits and is returned unchanged)."""
    from scipy.ndimage import zoom

    short = min(photo.shape[:2])
    if short >= cfg.window:
        return photo, 1.0
    factor = cfg.window / short
    scale = (factor, factor) + (1,) * (photo.ndim - 2)
    big = zoom(photo, scale, order=1, grid_mode=True, mode="nearest")
    return np.clip(big, 0, None).astype(np.float32), factor


def colour_scene(photo: np.ndarray, cfg: BurstConfig, rng: np.random.Generator, seed: int):
    """The clean burst (N, S, S, C) of a linear photo (H, W, C): `make_scene` on each channel, the first with
    ``rng`` (which goes on to draw the noise) and the others with ``default_rng(seed)``, the generator ``rng``
    started as, so that all channels share the crop, the shifts and the white level. Returns the `Scene` of
    channel 0 and the stacked frames."""
    first = make_scene(photo[..., 0], rng, cfg)
    frames = [first.frames]
    for c in range(1, photo.shape[-1]):
        scene = make_scene(photo[..., c], np.random.default_rng(seed), cfg)
        assert np.array_equal(scene.shifts, first.shifts) and scene.white_level == first.white_level
        frames.append(scene.frames)
    return first, np.stack(frames, axis=-1)


def metrics(estimate: np.ndarray, clean: np.ndarray, white: float) -> dict[str, float]:
    """PSNR over all channels together and SSIM averaged over the channels (..., C)."""
    value = ssim(estimate[..., 0], clean[..., 0], white) if clean.shape[-1] == 1 else float(
        np.mean([ssim(estimate[..., c], clean[..., c], white) for c in range(clean.shape[-1])]))
    return {"psnr": psnr(estimate, clean, white), "ssim": value}


def run(args: argparse.Namespace) -> int:
    level = noise_level_for_gain(args.gain)
    out = check_output_folder(args.out)  # created only once there is something to write
    cfg = BurstConfig(frames=args.frames, size=args.size)
    photo = bundled_photo(args.image) if args.gray else bundled_photo_rgb(args.image)
    photo, enlarged = fit_to(photo if photo.ndim == 3 else photo[..., None], cfg)
    rng = np.random.default_rng(args.seed)
    scene, clean_frames = colour_scene(photo, cfg, rng, args.seed)  # (N, S, S, C) linear, C = 3 or 1
    white = scene.white_level
    noisy = add_noise(clean_frames, level, rng)
    clean = clean_frames[0]
    channels = clean.shape[-1]

    from burstkpn.evaluate import model_method, resolve_methods
    from burstkpn.weights import default_weights

    methods = resolve_methods(args.methods)
    weights = args.model or default_weights()
    if weights is not None:
        methods.append(model_method(weights))
    else:
        print("note: this install ships no trained model; pass --model WEIGHTS to add one")
    results = {m.name: np.stack([m.denoise(noisy[..., c], level) for c in range(channels)], axis=-1)
               for m in methods if m.denoise is not None}
    rows = {name: metrics(img, clean, white) for name, img in results.items()}
    caption = COLOUR_CAPTION if channels == 3 else CAPTION

    make_folder(out)

    def save(name: str, linear: np.ndarray) -> None:  # (S, S, C) linear -> an 8-bit colour or gray PNG
        write_png(out / f"{name}.png", linear_to_srgb8((linear[..., 0] if channels == 1 else linear) / white))

    save("clean", clean)
    for name, img in results.items():
        save(name, img)
    for i, frame in enumerate(noisy):
        save(f"frame_{i:02d}", frame)
    colour = "colour" if channels == 3 else "gray"
    summary = {
        "image": args.image, "gain": int(args.gain), "size": args.size, "frames": args.frames, "seed": args.seed,
        "colour": channels == 3, "photo_enlarged": round(enlarged, 4),
        "sigma_read": level.sigma_read, "sigma_shot": level.sigma_shot, "white_level": white,
        "shifts_px": scene.shifts.tolist(), "model": str(weights) if weights else None,
        "metrics": rows, "metrics_caption": caption,
    }
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    from burstkpn.report import demo_report

    model = next((m.model for m in methods if m.model is not None), None)
    images = {name: (out / f"{name}.png").read_bytes() for name in ("clean", *results)}
    shown = 1 if channels == 3 else 0  # the kernel figures show one grayscale burst: the green channel of a colour one
    facts = {k: summary[k] for k in ("image", "gain", "size", "frames", "seed", "model")}
    facts["burst"] = ("colour: each channel denoised as its own grayscale burst (one shared misalignment); "
                      "the kernel figures show the green channel") if channels == 3 else "gray (luminance)"
    demo_report(out, images, rows, caption, model, noisy[..., shown], level, white, facts)
    note = f", the photo enlarged {enlarged:.2f}x to fit" if enlarged > 1 else ""
    print(f"burst: {args.frames} {colour} frames of {args.size}x{args.size} from skimage '{args.image}'{note}, "
          f"gain {args.gain}, white level {white:.3f}")
    print(f"{'method':<16} {'PSNR':>7} {'SSIM':>7}")
    for name, r in rows.items():
        print(f"{name:<16} {r['psnr']:7.2f} {r['ssim']:7.4f}")
    print(f"({caption})")
    print(f"wrote {out}/: clean.png, frame_*.png, {', '.join(f'{n}.png' for n in results)}, summary.json, report.html")
    return 0
