"""Inference time of a KPN on one large burst, on the GPU when there is one (else the CPU).

    python benchmarks/gpu_speed.py [--size 1024] [--model W.safetensors] [--repeats 10]

Times `predict` (global pre-alignment + network + kernel application) on one 8-frame burst of
``size`` x ``size``, float32 and under bf16 autocast, and the pre-alignment alone; each figure is the
median of ``--repeats`` runs after 3 warm-ups, synchronised, in one process. The burst is random
noise around a random smooth image: the cost does not depend on the content.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from burstkpn.align import align_global
from burstkpn.models.kpn import predict
from burstkpn.weights import default_weights, load_model


def timed(fn, device: torch.device, repeats: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--model", help="weights file (default: the shipped kpn)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    model = load_model(args.model or default_weights()).eval().to(device)
    params = sum(t.numel() for t in model.parameters())
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, args.size // 32, args.size // 32, generator=gen),
                                             size=(args.size, args.size), mode="bicubic").clamp(0, 1)
    burst = (smooth.expand(1, 8, -1, -1) + 0.02 * torch.randn(1, 8, args.size, args.size, generator=gen)).to(device)
    mp = args.size**2 / 1e6
    print(f"{name}, torch {torch.__version__}; model {params / 1e6:.2f}M params; burst 8 x {args.size}^2 ({mp:.2f} MP)")
    rows = []
    with torch.inference_mode():
        rows.append(("pre-alignment alone (align_global)", timed(lambda: align_global(burst), device, args.repeats)))
        rows.append(("predict, float32", timed(lambda: predict(model, burst, 0.01, 0.001), device, args.repeats)))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            predict(model, burst, 0.01, 0.001)
            peak = torch.cuda.max_memory_allocated() / 2**20
            rows.append(("predict, bf16 autocast", timed(lambda: predict(model, burst, 0.01, 0.001, amp=True), device,
                                                         args.repeats)))
    print("| part | s per burst | s/MP |\n|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.4f} | {seconds / mp:.4f} |")
    if device.type == "cuda":
        print(f"peak GPU memory of one float32 predict: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
