"""What this machine runs fast: bf16 autocast only pays where the hardware has bf16 arithmetic.

On a CPU without AVX512_BF16 or AMX, PyTorch emulates bf16 and a training step measured 20x
slower than float32 (2-vCPU AMD EPYC with AVX2 only, torch 2.13.0+cpu: 11.0 s vs 0.57 s per step of
16 bursts at 64², one thread), so "auto" turns it off there.
"""

from __future__ import annotations

from functools import cache

import torch


@cache
def native_bf16(device_type: str = "cpu") -> bool:
    """True where bf16 autocast runs on native bf16 units: a CUDA GPU that supports it, or a CPU
    whose flags (Linux /proc/cpuinfo) include avx512_bf16 or amx_bf16."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
