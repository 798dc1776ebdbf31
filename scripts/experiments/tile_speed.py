"""One tile through the network alone: seconds per model, and where the last stage's time goes.

    python scripts/experiments/tile_speed.py --models kpn kpn-refine [--bf16] [--breakdown]

An 8-frame tile of uniform noise (size --size, default 480: the tile `denoise` picks for the README's 12-MP raw
example) through `models.kpn.predict` after one warm-up call; the fastest of --repeats calls, 2 threads. With
--breakdown, the time spent inside the last stage's building blocks (`dct_wiener`, `nonlocal_means`, `box_blur`, ...;
nested calls count in both) and in each top-level module of the last model. For A/B runs, check out one version of
`src/burstkpn/models/kpn.py`, run this, check out the other, run it again, and repeat: runs of one version vary by
several percent.
"""

from __future__ import annotations

import argparse
import time

import torch

BLOCKS = ("dct_wiener", "nonlocal_means", "box_blur", "patch_dct", "patch_idct", "apply_kernels", "mismatch_maps")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["kpn", "kpn-refine"])
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast, what denoise uses where the CPU has it natively")
    p.add_argument("--breakdown", action="store_true")
    args = p.parse_args()
    import burstkpn.models.kpn as kpn
    from burstkpn.weights import resolve_model

    torch.set_num_threads(2)
    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            out = fn(*a, **kw)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
            return out
        return wrapper

    if args.breakdown:
        for name in BLOCKS:
            setattr(kpn, name, timed(name, getattr(kpn, name)))
    burst = torch.rand(1, 8, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 0.5
    line = []
    for name in args.models:
        model = resolve_model(name)[0].eval()
        if args.breakdown:
            for child, module in model.named_children():
                module.forward = timed(f"module {child}", module.forward)
        with torch.inference_mode():
            kpn.predict(model, burst, 0.03, 0.01, amp=args.bf16)
            best = float("inf")
            for _ in range(args.repeats):
                spent.clear()
                start = time.perf_counter()
                kpn.predict(model, burst, 0.03, 0.01, amp=args.bf16)
                best = min(best, time.perf_counter() - start)
        line.append(f"{name} {best:.3f} s")
    print(f"{args.size}² x 8 frames, {'bf16' if args.bf16 else 'float32'}: " + ", ".join(line))
    for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):  # the last call of the last model
        print(f"  {seconds * 1e3:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
