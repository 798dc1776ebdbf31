"""Training samples/s and inference seconds per megapixel for the default and a small KPN.

    python benchmarks/train_speed.py [--steps 5] [--size 512] [--fp32] [--threads 2]

Training: forward + annealed loss + backward + Adam on random 8-frame bursts (burst synthesis not
included), bf16 autocast and the allocator fix as in `burstkpn train`. Inference: one
size x size burst through `predict` under `torch.inference_mode` (in-place kernel application).
A benchmark, not a test: timings on shared cores are noisy, so each figure is a median.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from burstkpn.losses import total_loss
from burstkpn.models import ModelConfig, build_model, predict
from burstkpn.train import fix_allocator

CONFIGS = {  # name: (model config, batch, patch) — the authors' defaults, and the CPU pilot's size
    "default": (ModelConfig(), 4, 128),
    "small": (ModelConfig.doubling(16, 4, half_res_output=False), 16, 64),
}


def random_batch(batch: int, frames: int, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, size, size, generator=g)
    return {"burst": clean[:, None] + 0.02 * torch.randn(batch, frames, size, size, generator=g), "clean": clean,
            "sigma_read": torch.full((batch,), 0.01), "sigma_shot": torch.full((batch,), 1e-3),
            "white_level": torch.ones(batch)}


def train_speed(cfg: ModelConfig, batch: int, size: int, steps: int, amp: bool) -> float:
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = random_batch(batch, cfg.frames, size)
    times = []
    for i in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        result = predict(model, data["burst"], data["sigma_read"], data["sigma_shot"], amp=amp)
        loss, _ = total_loss(result, data["clean"], data["white_level"], i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:])


def inference_seconds_per_mp(cfg: ModelConfig, size: int, repeats: int, amp: bool) -> float:
    model = build_model(cfg).eval()
    data = random_batch(1, cfg.frames, size)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            predict(model, data["burst"], data["sigma_read"], data["sigma_shot"], amp=amp)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / (size * size / 1e6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed training steps per config")
    p.add_argument("--size", type=int, default=512, help="inference burst side")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = p.parse_args()
    fix_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = not args.fp32
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{'bf16 autocast' if amp else 'fp32'}")
    print(f"{'config':<8} {'params':>7} {'batch x patch':>14} {'train samples/s':>16} {f'inference s/MP ({args.size}²)':>22}")
    for name in args.configs:
        cfg, batch, size = CONFIGS[name]
        params = sum(p.numel() for p in build_model(cfg).parameters())
        sps = train_speed(cfg, batch, size, args.steps, amp)
        spm = inference_seconds_per_mp(cfg, args.size, args.repeats, amp)
        print(f"{name:<8} {params / 1e6:6.2f}M {f'{batch} x {size}²':>14} {sps:16.1f} {spm:22.2f}", flush=True)


if __name__ == "__main__":
    main()
