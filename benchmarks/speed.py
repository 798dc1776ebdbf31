"""Seconds per megapixel and peak memory of every denoiser on one synthetic burst (issue 9).

    python benchmarks/speed.py [--size 1024] [--model W.safetensors] [--skip bm4d-aligned] [--threads 2]

One run, one burst: 8 frames of ``size`` x ``size`` (default 1 MP) cut from scikit-image's bundled
``astronaut`` photo (gray, linearised, bicubically upscaled), misaligned with the paper's synthesis
(small sub-pixel shifts, occasional large ones) and noised at gain 4 (`burstkpn.noise`).

1. Methods: the shipped KPN (or ``--model``), two untrained KPNs for scale (a small one and the
   authors' default widths), and every installed classical baseline. Each runs in a fresh
   subprocess that reports its wall time (median of ``--repeats`` when a run takes < 2 s) and its
   peak resident memory (VmHWM; "extra" = VmHWM minus the resident size after imports and the
   burst load). ``bm4d-aligned`` is very slow: it runs at ``--bm4d-size`` (marked *) and its time
   is scaled per megapixel. Ratios: how many times faster than BM3D and than HDR+.
2. KPN split: pre-alignment (`align_global`), the network, kernel application (`apply_kernels`).
3. onnxruntime vs PyTorch on network + kernel application (pre-alignment excluded, fp32).
4. Inference options, before/after on the same input: no_grad vs inference_mode, channels-last,
   bf16 autocast (with the PSNR change against the clean reference), thread counts.

5. ``--sections pipeline`` (not run by default): the whole ``burstkpn denoise`` command on an 8-frame
   grayscale 8-bit PNG burst of ``--size``² (``--photo``, default the astronaut; integer shifts up to
   ±8 px, gain 4), wall time (median of ``--repeats``), its stages from a cProfile run (noise
   estimation, tile alignment, network incl. its global pre-alignment, ...), and ``bm3d.bm3d`` on
   frame 0 in a fresh process. ``--src LABEL=DIR ...`` runs the command from other source trees too
   (``PYTHONPATH=DIR``, e.g. ``git archive OLD src | tar -x -C /tmp/old`` for a before/after),
   interleaved so that drifting load hits them alike; ``--json FILE`` appends every run.
6. ``--sections align`` (not run by default): HDR+ tile alignment alone (`burstkpn.align.tile_align`
   and its parts) on that burst, in a fresh process per source tree (``--src`` as above).
7. ``--sections memory`` (not run by default): the peak memory of one tile (VmHWM in a fresh process
   minus its resident size before the tile) for ``--memory-models`` at ``--memory-sides`` and 1 or 3
   planes, against `burstkpn.pipeline.model_bytes_per_pixel` (what ``--memory-gb`` plans with).

A benchmark, not a test: timings on shared cores are noisy, so each figure is a median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from burstkpn.models.kpn import ModelConfig, build_model, predict

GAIN = 4
UNTRAINED = {  # timing only: weights do not change the cost
    "kpn-small": ModelConfig.doubling(8, 4, half_res_output=False, prealign="global"),
    "kpn-authors": ModelConfig(prealign="global"),  # widths 64-128-256, half-resolution kernels
}


# --- the burst ---------------------------------------------------------------------------------


def make_burst(size: int, frames: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(noisy (N, S, S), clean (S, S), (sigma_read, sigma_shot)), linear, seeded."""
    from skimage import data, transform

    from burstkpn.camera import srgb8_to_linear, to_grayscale
    from burstkpn.noise import add_noise, noise_level_for_gain
    from burstkpn.synth import BurstConfig, synthesize_burst

    cfg = BurstConfig(frames=frames, size=size, downsample=2, small_shift=2, large_shift=8)
    photo = to_grayscale(srgb8_to_linear(data.astronaut()))
    photo = transform.resize(photo, (cfg.window + 2, cfg.window + 2), order=3, anti_aliasing=False).clip(0, 1)
    rng = np.random.default_rng(seed)
    clean = synthesize_burst(photo.astype(np.float32), rng, cfg).frames
    level = noise_level_for_gain(GAIN)
    return add_noise(clean, level, rng), clean[0], (level.sigma_read, level.sigma_shot)


# --- one method in a fresh process -------------------------------------------------------------


def vm_kib(field: str) -> int:
    """A field of /proc/self/status (VmHWM: peak resident set; VmRSS: current), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load_denoiser(method: str):
    """``fn(noisy (N, H, W), noise) -> (H, W)`` for a baseline name, a KPN name, or a weights path."""
    from burstkpn.noise import NoiseLevel

    amp = method.endswith(":bf16")  # the model under bf16 autocast (`burstkpn denoise`'s default)
    method = method.removesuffix(":bf16")
    if method.endswith(".safetensors") or method in UNTRAINED:
        from burstkpn.weights import load_model

        torch.manual_seed(0)
        model = load_model(method) if method.endswith(".safetensors") else build_model(UNTRAINED[method]).eval()

        def run(noisy: np.ndarray, noise: NoiseLevel) -> np.ndarray:
            with torch.inference_mode():
                out = predict(model, torch.from_numpy(noisy)[None], noise.sigma_read, noise.sigma_shot, amp=amp)
                return out["output"][0].float().numpy()

        return run
    from burstkpn.baselines import load

    return load(method)


def worker(method: str, burst_file: str, repeats: int) -> None:
    """Run ``method`` on the saved burst; print one JSON line: seconds, peak and extra memory."""
    from burstkpn.noise import NoiseLevel

    saved = np.load(burst_file)
    noisy, noise = saved["noisy"], NoiseLevel(*map(float, saved["noise"]))
    fn = load_denoiser(method)
    base = vm_kib("VmRSS")
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        out = fn(noisy, noise)
        times.append(time.perf_counter() - start)
        if times[0] > 2:
            break
    if len(times) > 2:
        times = times[1:]  # the first of several runs warms up
    psnr = -10 * np.log10(np.mean((np.clip(out, 0, 1) - saved["clean"]) ** 2))
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": vm_kib("VmHWM") / 1024,
                      "extra_mb": (vm_kib("VmHWM") - base) / 1024, "psnr": float(psnr)}))


def measure(method: str, burst_file: Path, repeats: int, threads: int) -> dict:
    """Run ``worker`` in a fresh interpreter (so peak memory is this method's own)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", method, "--burst-file", str(burst_file), "--repeats", str(repeats),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:100]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def methods_table(args, burst_files: dict[int, Path], models: list[str]) -> None:
    from burstkpn.baselines import REGISTRY, missing

    rows = {}
    for method in models + [m for m in REGISTRY if m not in args.skip]:
        if method in REGISTRY and missing(method):
            print(f"  {method}: {missing(method)}")
            continue
        size = args.bm4d_size if method == "bm4d-aligned" else args.size
        result = measure(method, burst_files[size], args.repeats, args.threads)
        result["size"] = size
        name = method.removesuffix(":bf16")
        name = f"{Path(name).stem} (weights)" if name.endswith(".safetensors") else name
        rows[name + (" bf16" if method.endswith(":bf16") else "")] = result
        print(f"  {method}: {result}", flush=True)
    per_mp = {m: r["seconds"] / (r["size"] ** 2 / 1e6) for m, r in rows.items() if "seconds" in r}
    print("\n| method | s/MP | peak MB | extra MB | PSNR dB | x faster than BM3D | x faster than HDR+ |")
    print("|---|---|---|---|---|---|---|")
    for m, r in rows.items():
        if "error" in r:
            print(f"| {m} | failed: {r['error']} | | | | | |")
            continue
        mark = "*" if r["size"] != args.size else ""
        bm3d, hdrplus = (f"{per_mp[ref] / per_mp[m]:.1f}" if ref in per_mp else "-" for ref in ("bm3d", "hdrplus"))
        print(f"| {m}{mark} | {per_mp[m]:.3f} | {r['peak_mb']:.0f} | {r['extra_mb']:.0f} | {r['psnr']:.2f} | "
              f"{bm3d} | {hdrplus} |")
    if any(r.get("size") != args.size for r in rows.values()):
        print(f"* run at {args.bm4d_size}x{args.bm4d_size} (time scaled per MP; memory and PSNR at that size)")


# --- in-process sections: split, ONNX, options --------------------------------------------------


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kpn_split(model, burst: torch.Tensor, noise_map: torch.Tensor, repeats: int) -> None:
    from burstkpn.align import align_global
    from burstkpn.kernels import apply_kernels

    cfg = model.config
    with torch.inference_mode():
        t_align = median_time(lambda: align_global(burst), repeats) if cfg.prealign == "global" else 0.0
        t_net = median_time(lambda: model.network(burst, noise_map), repeats)
        out = model.network(burst, noise_map)
        if cfg.kind == "dpn":
            t_kernels = 0.0
        else:
            kernels = out.reshape(1, cfg.frames, cfg.kernel_size, cfg.kernel_size, *burst.shape[-2:])
            t_kernels = median_time(lambda: apply_kernels(burst, kernels), repeats)
    total = t_align + t_net + t_kernels
    print("| part | s/MP | share |\n|---|---|---|")
    mp = burst.shape[-1] * burst.shape[-2] / 1e6
    for name, t in (("pre-alignment (align_global)", t_align), ("network", t_net), ("kernel application", t_kernels)):
        print(f"| {name} | {t / mp:.3f} | {100 * t / total:.0f} % |")


def onnx_vs_torch(model, burst: torch.Tensor, noise_map: torch.Tensor, repeats: int, threads: int) -> None:
    from burstkpn.export import export_onnx, onnx_session, run_onnx

    inputs = (burst, noise_map) if model.config.uses_noise_map else (burst,)
    mp = burst.shape[-1] * burst.shape[-2] / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", check=False)
        session = onnx_session(path, threads=threads)
        t_ort = median_time(lambda: run_onnx(session, *inputs), repeats)
        got = run_onnx(session, *inputs)
    with torch.inference_mode():
        t_torch = median_time(lambda: model(*inputs), repeats)
        diff = float(np.abs(model(*inputs)["output"].numpy() - got).max())
    print(f"| runtime | s/MP |\n|---|---|\n| PyTorch fp32 (inference_mode) | {t_torch / mp:.3f} |\n"
          f"| onnxruntime fp32 | {t_ort / mp:.3f} |\nonnxruntime is {t_torch / t_ort:.2f}x PyTorch's speed; "
          f"max |difference| {diff:.1e}")


def inference_options(model, noisy: torch.Tensor, clean: np.ndarray, noise: tuple[float, float], repeats: int,
                      threads: int) -> None:
    """Each option against the plain fp32 no_grad path, on the whole `predict` (pre-alignment included).

    The variants run interleaved, one call each per round, so drifting load hits them all alike.
    """
    mp = noisy.shape[-1] * noisy.shape[-2] / 1e6

    def once(context, amp=False, channels_last=False, n_threads=threads):
        """(seconds, output (H, W)) of one `predict` call with these settings."""
        model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.set_num_threads(n_threads)
        with context():
            start = time.perf_counter()
            out = predict(model, noisy, *noise, amp=amp)["output"][0].float().numpy()
            seconds = time.perf_counter() - start
        torch.set_num_threads(threads)
        return seconds, out

    fp32 = {"context": torch.inference_mode}
    variants = {
        "no_grad, fp32 (before)": {"context": torch.no_grad},
        "inference_mode, fp32": fp32,
        "inference_mode, channels-last": fp32 | {"channels_last": True},
        "inference_mode, bf16 autocast": fp32 | {"amp": True},
        "inference_mode, bf16 + channels-last": fp32 | {"amp": True, "channels_last": True},
        **{f"inference_mode, fp32, {n} thread(s)": fp32 | {"n_threads": n}
           for n in sorted({1, threads, os.cpu_count() or 1}) if n != threads},
    }
    outputs = {name: once(**kw)[1] for name, kw in variants.items()}  # warm-up round
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, kw in variants.items():
            times[name].append(once(**kw)[0])
    base = None
    print("| path | s/MP | speed-up | PSNR dB | ΔPSNR |\n|---|---|---|---|---|")
    for name in variants:
        t = statistics.median(times[name])
        psnr = -10 * np.log10(np.mean((np.clip(outputs[name], 0, 1) - clean) ** 2))
        base = base or (t, psnr)
        print(f"| {name} | {t / mp:.3f} | {base[0] / t:.2f}x | {psnr:.2f} | {psnr - base[1]:+.3f} |")


# --- the whole command: `burstkpn denoise` on a grayscale PNG burst -------------------------------

STAGES = {  # stage -> (file suffix, function) whose cumulative time it is, in a cProfile of the command
    "load the burst": ("pipeline.py", "load_input"),
    "noise estimation": ("pipeline.py", "resolve_noise"),
    "tile alignment": ("align/tiles.py", "tile_align"),
    "network (incl. global pre-alignment)": ("models/kpn.py", "denoise_array"),
    "  of which global pre-alignment": ("align/shifts.py", "align_global"),
    "write": ("io/outputs.py", "write_denoised"),
}


def write_gray_burst(folder: Path, size: int, photo: str | None, frames: int = 8, seed: int = 0):
    """8-bit grayscale PNG frames frame_00.png ... of ``size``², shifted by up to ±8 px, gain-4 noise."""
    from PIL import Image

    from burstkpn.camera import linear_to_srgb8, srgb8_to_linear
    from burstkpn.noise import add_noise, noise_level_for_gain

    if photo:
        image = Image.open(photo).convert("L")
    else:
        from skimage import color, data

        image = Image.fromarray((color.rgb2gray(data.astronaut()) * 255).round().astype(np.uint8))
    scale = (size + 16) / min(image.size)
    image = image.resize((max(size + 16, round(image.width * scale)), max(size + 16, round(image.height * scale))),
                         Image.LANCZOS)
    gray = srgb8_to_linear(np.asarray(image)[: size + 16, : size + 16])
    rng, level = np.random.default_rng(seed), noise_level_for_gain(GAIN)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        dy, dx = (0, 0) if i == 0 else rng.integers(-8, 9, size=2)
        crop = gray[8 + dy : 8 + dy + size, 8 + dx : 8 + dx + size]
        noisy = np.clip(add_noise(crop, level, rng), 0, 1)
        Image.fromarray(linear_to_srgb8(noisy)).save(folder / f"frame_{i:02d}.png")
    return level


def run_command(burst: Path, out: Path, src: str | None, threads: int, profile: Path | None = None) -> float:
    """Wall seconds of ``burstkpn denoise BURST -o OUT --model kpn`` in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    cmd += ["-m", "burstkpn.cli", "denoise", str(burst), "-o", str(out), "--model", "kpn", "--quiet",
            "--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return seconds


def stage_seconds(profile: Path) -> dict[str, float]:
    """Cumulative seconds of `STAGES` (and the profile's total) from a cProfile dump of the command."""
    import pstats

    stats = pstats.Stats(str(profile)).stats
    out = {"profiled total": max(ct for _, _, _, ct, _ in stats.values())}
    for stage, (suffix, name) in STAGES.items():
        out[stage] = sum(ct for (file, _, func), (_, _, _, ct, _) in stats.items()
                         if func == name and file.replace(os.sep, "/").endswith(suffix))
    return out


def bm3d_worker(burst_dir: str) -> None:
    """``bm3d.bm3d`` on frame 0 of the burst (linear, one σ at the image mean, the gain's noise): seconds."""
    import bm3d as bm3d_package
    from PIL import Image

    from burstkpn.baselines.vst import effective_sigma
    from burstkpn.camera import srgb8_to_linear
    from burstkpn.noise import noise_level_for_gain

    frame = srgb8_to_linear(np.asarray(Image.open(Path(burst_dir) / "frame_00.png"))).astype(np.float64)
    sigma = effective_sigma(frame, noise_level_for_gain(GAIN))
    start = time.perf_counter()
    bm3d_package.bm3d(frame, sigma)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def pipeline_section(args) -> None:
    """Each repeat: per source tree a plain run (wall) and a profiled run (stages), then bm3d; the rows
    go to ``--json`` (if given), and the table is made from all rows there (earlier invocations too)."""
    sources = dict(item.split("=", 1) for item in args.src) if args.src else {"this tree": None}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        burst = Path(tmp) / "burst"
        write_gray_burst(burst, args.size, args.photo)
        for r in range(args.repeats):
            for label, src in sources.items():
                for kind in [k for k in ("plain", "profiled") if k in args.runs]:
                    row = {"label": label, "kind": kind, "size": args.size, "threads": args.threads,
                           "load": os.getloadavg()[0]}
                    prof = Path(tmp) / "prof.out" if kind == "profiled" else None
                    row["wall"] = run_command(burst, Path(tmp) / "out.png", src, args.threads, prof)
                    if prof:
                        row.update(stage_seconds(prof))
                    rows.append(row)
                    print(f"  run {r + 1} {label} ({kind}): {row['wall']:.1f} s", flush=True)
            if "bm3d" in args.runs:
                proc = subprocess.run([sys.executable, __file__, "--worker", "bm3d", "--burst-file", str(burst)],
                                      capture_output=True, text=True, check=False,
                                      env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                if proc.returncode:
                    print(f"  bm3d: {(proc.stderr.strip().splitlines() or ['failed'])[-1][:100]}")
                    continue
                rows.append({"label": "bm3d", "kind": "bm3d", "wall": json.loads(proc.stdout.strip().splitlines()[-1])["seconds"],
                             "load": os.getloadavg()[0]})
                print(f"  run {r + 1} bm3d.bm3d (frame 0): {rows[-1]['wall']:.1f} s", flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        rows = [json.loads(line) for line in Path(args.json).read_text().splitlines() if line.strip()]
    print_pipeline_table(rows)


def print_pipeline_table(rows: list[dict]) -> None:
    """Medians (and run counts) per stage for each source tree; the command's speed against bm3d."""
    labels = list(dict.fromkeys(r["label"] for r in rows if r["kind"] != "bm3d"))
    plain = {lab: [r["wall"] for r in rows if r["label"] == lab and r["kind"] == "plain"] for lab in labels}
    prof = {lab: [r for r in rows if r["label"] == lab and r["kind"] == "profiled"] for lab in labels}
    bm3d_times = [r["wall"] for r in rows if r["kind"] == "bm3d"]

    def med(values) -> str:
        values = list(values)
        return f"{statistics.median(values):.2f}" if values else "-"

    print("\n| stage (median s) | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
    print("| **burstkpn denoise, wall** | " + " | ".join(f"**{med(plain[lab])}** (n={len(plain[lab])})"
                                                       for lab in labels) + " |")
    print("| profiled run, wall | " + " | ".join(f"{med(r['wall'] for r in prof[lab])} (n={len(prof[lab])})"
                                               for lab in labels) + " |")
    for key in STAGES:
        print(f"| {key} | " + " | ".join(med(r[key] for r in prof[lab]) for lab in labels) + " |")
    print("| other: start-up (imports, model), profiler | " + " | ".join(
        med(r["wall"] - sum(r[k] for k in STAGES if not k.startswith(" ")) for r in prof[lab]) for lab in labels) + " |")
    if bm3d_times:
        bm3d = statistics.median(bm3d_times)
        print(f"| bm3d.bm3d on frame 0 (n={len(bm3d_times)}) | " + " | ".join(f"{bm3d:.2f}" for _ in labels) + " |")
        print("| bm3d time / command time | " + " | ".join(
            f"{bm3d / statistics.median(plain[lab]):.2f}x" if plain[lab] else "-" for lab in labels) + " |")


def align_worker(burst_dir: str, repeats: int) -> None:
    """`tile_align` (as the pipeline calls it, one tile = the whole burst) and its parts on the PNG
    burst, in this process: median seconds of ``repeats`` runs after a warm-up, as one JSON line."""
    from PIL import Image

    from burstkpn.align import tiles
    from burstkpn.align.shifts import estimate_global_shifts
    from burstkpn.camera import srgb8_to_linear

    paths = sorted(Path(burst_dir).glob("frame_*.png"))
    frames = np.stack([srgb8_to_linear(np.asarray(Image.open(p))) for p in paths]).astype(np.float32)
    x = torch.from_numpy(frames)
    padded, _ = tiles.pad_for_tiles(x, tiles.DEFAULT.tile)
    disp = tiles.align_tiles(padded)
    prior = -estimate_global_shifts(x[None])[0].round().long()
    parts = {
        "tile_align (all)": lambda: tiles.tile_align(frames[None]),
        "align_tiles (pyramid + search)": lambda: tiles.align_tiles(padded),
        "global-shift prior (estimate_global_shifts)": lambda: estimate_global_shifts(x[None]),
        "snap_to_prior": lambda: tiles.snap_to_prior(padded, disp, prior, tiles.DEFAULT.tile, tiles.TILE_SNAP_MARGIN),
        "aligned_stack without the snap": lambda: tiles.aligned_stack(frames),
    }
    print(json.dumps({name: median_time(fn, repeats) for name, fn in parts.items()}))


def align_section(args) -> None:
    """The tile alignment alone, per source tree (fresh process each, interleaved)."""
    sources = dict(item.split("=", 1) for item in args.src) if args.src else {"this tree": None}
    results: dict[str, list[dict]] = {label: [] for label in sources}
    with tempfile.TemporaryDirectory() as tmp:
        burst = Path(tmp) / "burst"
        write_gray_burst(burst, args.size, args.photo)
        for _ in range(args.repeats):
            for label, src in sources.items():
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                if src:
                    env["PYTHONPATH"] = str(Path(src).resolve())
                proc = subprocess.run([sys.executable, __file__, "--worker", "align", "--burst-file", str(burst),
                                       "--repeats", "1", "--threads", str(args.threads)],
                                      capture_output=True, text=True, env=env, check=False)
                if proc.returncode:
                    raise RuntimeError(proc.stderr[-1000:])
                results[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"  {label}: {results[label][-1]}", flush=True)
    labels = list(sources)
    print("\n| part (median s) | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
    for part in results[labels[0]][0]:
        print(f"| {part} | " + " | ".join(f"{statistics.median(r[part] for r in results[lab]):.3f}" for lab in labels) + " |")


# --- peak memory of one tile ---------------------------------------------------------------------


def memory_worker(spec: str) -> None:
    """One tile in this (fresh) process: ``MODEL:SIDE:PLANES[:bf16]`` -> JSON with the peak above the
    resident size before the tile (VmHWM - VmRSS), after a 64² warm-up tile (lazy initialisation)."""
    from burstkpn.noise import NoiseLevel
    from burstkpn.pipeline import denoise_planes
    from burstkpn.weights import resolve_model

    model, side, planes, *flags = spec.split(":")
    side, planes, amp = int(side), int(planes), "bf16" in flags
    net, _ = resolve_model(model, None)
    noisy, _, noise = make_burst(side, frames=net.config.frames)
    burst = np.stack([noisy * (0.6 + 0.2 * c) for c in range(planes)]).astype(np.float32)  # (C, N, S, S)
    level = NoiseLevel(*noise)
    denoise_planes(net, burst[..., :64, :64], level, 64, amp=amp)
    base = vm_kib("VmRSS")
    denoise_planes(net, burst, level, side, amp=amp)
    print(json.dumps({"extra_mb": (vm_kib("VmHWM") - base) / 1024, "base_mb": base / 1024}))


def memory_section(args) -> None:
    from burstkpn.pipeline import model_bytes_per_pixel
    from burstkpn.tiles import TILE_FIXED_BYTES
    from burstkpn.weights import resolve_model

    print("| model | planes | tile | peak above start MB | bytes/px | planned bytes/px | planned MB (+ fixed part) "
          "| planned / measured |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.memory_models:
        config = resolve_model(model, None)[0].config
        for planes in args.memory_planes:
            for side in args.memory_sides:
                spec = f"{model}:{side}:{planes}" + (":bf16" if args.memory_bf16 else "")
                cmd = [sys.executable, __file__, "--worker", "memory", "--burst-file", spec, "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                      env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                if proc.returncode:
                    print(f"| {model} | {planes} | {side} | failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:80]} |")
                    continue
                extra = json.loads(proc.stdout.strip().splitlines()[-1])["extra_mb"]
                per_px = extra * 2**20 / side**2
                planned = model_bytes_per_pixel(config, config.frames, planes)
                planned_mb = (TILE_FIXED_BYTES + planned * side**2) / 2**20  # what `choose_tile` plans with
                print(f"| {model} | {planes} | {side} | {extra:.0f} | {per_px:.0f} | {planned:.0f} | {planned_mb:.0f} | "
                      f"{planned_mb / extra:.2f} |", flush=True)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024, help="burst side in pixels (default 1024: 1 MP)")
    p.add_argument("--model", help="weights of the KPN to time (default: the shipped model)")
    p.add_argument("--skip", nargs="*", default=[], help="baselines not to run, e.g. bm4d-aligned")
    p.add_argument("--bm4d-size", type=int, default=256, help="side for bm4d-aligned, which is very slow (default 256)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of fast steps (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sections", nargs="+", default=["methods", "split", "onnx", "options"],
                   choices=["methods", "split", "onnx", "options", "pipeline", "memory", "align"])
    p.add_argument("--photo", help="pipeline: the photo the grayscale burst is cut from (default: the astronaut)")
    p.add_argument("--src", nargs="*", metavar="LABEL=DIR", help="pipeline: source trees to run the command from")
    p.add_argument("--json", help="pipeline: append every run as a JSON line to this file (the table then covers "
                                  "all of its runs, earlier invocations too)")
    p.add_argument("--runs", nargs="+", default=["plain", "profiled", "bm3d"], choices=["plain", "profiled", "bm3d"],
                   help="pipeline: what each repeat runs (default all three)")
    p.add_argument("--memory-models", nargs="+", default=["kpn"], help="memory: shipped models (or weights)")
    p.add_argument("--memory-sides", nargs="+", type=int, default=[256, 512, 768, 1024])
    p.add_argument("--memory-planes", nargs="+", type=int, default=[1, 3])
    p.add_argument("--memory-bf16", action="store_true", help="memory: under bf16 autocast")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--burst-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker == "bm3d":
        return bm3d_worker(args.burst_file)
    if args.worker == "memory":  # the allocator as `burstkpn denoise` has it
        return memory_worker(args.burst_file)
    if args.worker == "align":
        return align_worker(args.burst_file, args.repeats)
    from burstkpn.train import fix_allocator

    fix_allocator()
    if args.worker:
        return worker(args.worker, args.burst_file, args.repeats)
    if {"pipeline", "memory", "align"} & set(args.sections):
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, "
              f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}")
        if "memory" in args.sections:
            print("\n## Peak memory of one tile (fresh process each)")
            memory_section(args)
        if "pipeline" in args.sections:
            print(f"\n## burstkpn denoise on an 8-frame {args.size}² grayscale PNG burst, {args.threads} threads")
            pipeline_section(args)
        if "align" in args.sections:
            print(f"\n## Tile alignment alone on the same burst, {args.threads} threads")
            align_section(args)
        args.sections = [s for s in args.sections if s not in ("pipeline", "memory", "align")]
        if not args.sections:
            return None

    from burstkpn.noise import noise_std_map
    from burstkpn.weights import default_weights, load_model

    weights = args.model or default_weights()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}; burst 8 x {args.size}^2, gain {GAIN}")
    if weights is None:
        print("no shipped model in this install and no --model: timing the untrained KPNs only")
    models = ([str(weights), f"{weights}:bf16"] if weights else []) + list(UNTRAINED)
    noisy, clean, noise = make_burst(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for size in {args.size, args.bm4d_size}:
            files[size] = Path(tmp) / f"burst{size}.npz"
            n, c, s = (noisy, clean, noise) if size == args.size else make_burst(size)
            np.savez(files[size], noisy=n, clean=c, noise=np.array(s))
        if "methods" in args.sections:
            print("\n## Methods (each in a fresh process)")
            methods_table(args, files, models)

    model = load_model(weights) if weights else build_model(UNTRAINED["kpn-small"]).eval()
    name = Path(weights).stem if weights else "kpn-small (untrained)"
    burst = torch.from_numpy(noisy)[None]
    with torch.inference_mode():
        if model.config.prealign == "global":
            from burstkpn.align import align_global

            burst = align_global(burst)[0]
        noise_map = noise_std_map(burst[:, :1], *noise)
    if "split" in args.sections:
        print(f"\n## KPN time split ({name}, fp32, inference_mode)")
        kpn_split(model, burst, noise_map, args.repeats)
    if "onnx" in args.sections:
        print(f"\n## onnxruntime vs PyTorch ({name}: network + kernel application)")
        onnx_vs_torch(model, burst, noise_map, args.repeats, args.threads)
    if "options" in args.sections:
        print(f"\n## Inference options ({name}, whole predict incl. pre-alignment)")
        inference_options(model, torch.from_numpy(noisy)[None], clean, noise, args.repeats, args.threads)


if __name__ == "__main__":
    main()
