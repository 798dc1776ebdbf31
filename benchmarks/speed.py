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
                   choices=["methods", "split", "onnx", "options"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--burst-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from burstkpn.train import fix_allocator

    fix_allocator()
    if args.worker:
        return worker(args.worker, args.burst_file, args.repeats)

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
