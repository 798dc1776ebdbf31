"""``burstkpn train``: train a KPN (or σ-blind KPN / DPN) on synthetic bursts from photo folders.

Settings come from the defaults (the authors'), then ``--config FILE.toml``, then flags; the
resolved config is written to RUN_DIR/config.toml. ``--resume`` continues RUN_DIR's run with its
own config (``--steps`` may raise the total). Runs under ``torchrun --nproc_per_node=N`` as is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from burstkpn.config import from_dict, read_toml
from burstkpn.errors import BurstKPNError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, nargs="+", help="folder(s) or files of training photos")
    p.add_argument("--out", required=True, help="run folder (config, checkpoint, metrics, final weights)")
    p.add_argument("--config", help="TOML file overriding the defaults (keys as in RUN_DIR/config.toml)")
    p.add_argument("--steps", type=int, help="total optimiser steps of the run (default 500000)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", help="start from these weights (.safetensors) with a fresh optimiser")
    p.add_argument("--batch-size", type=int, help="bursts per step and process (default 4)")
    p.add_argument("--patch-size", type=int, help="burst side in pixels (default 128; bsds432's 321-px photos allow 48)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--kind", choices=["kpn", "kpn-blind", "dpn"], help="model kind (default kpn)")
    p.add_argument("--width", type=int, help="U-Net base width (widths double per level)")
    p.add_argument("--levels", type=int, help="U-Net levels (with --width; default 3)")
    p.add_argument("--frames", type=int, help="frames per burst (default 8)")
    p.add_argument("--prealign", choices=["none", "global", "global-integer"], help="align frames globally before the network")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (default: bf16 autocast)")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--workers", type=int, help="DataLoader processes synthesising bursts (default 0: in the training process; "
                   "on a GPU, about the CPU cores minus one)")
    p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace):
    """Defaults <- TOML (or the run's own config on --resume) <- flags."""
    from dataclasses import replace

    from burstkpn.train import TrainConfig, with_overrides

    saved = Path(args.out) / "config.toml"
    if args.config:
        cfg = from_dict(TrainConfig, read_toml(args.config))
    elif args.resume and saved.exists():
        cfg = from_dict(TrainConfig, read_toml(saved))
    else:
        cfg = TrainConfig()
    model = cfg.model
    if args.width is not None or args.levels is not None:
        base = args.width if args.width is not None else model.widths[0]
        levels = args.levels if args.levels is not None else len(model.widths)
        model = replace(model, widths=tuple(base * 2**i for i in range(levels)))
    if args.kind is not None:
        model = replace(model, kind=args.kind)
    if args.prealign is not None:
        model = replace(model, prealign=args.prealign)
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "lr_schedule": args.lr_schedule,
             "seed": args.seed, "threads": args.threads, "workers": args.workers, "checkpoint_minutes": args.checkpoint_minutes}
    fields = {k: v for k, v in flags.items() if v is not None}
    if args.no_bf16:
        fields["bf16"] = False
    try:
        return with_overrides(cfg, patch_size=args.patch_size, frames=args.frames, model=model, **fields)
    except (TypeError, ValueError) as exc:
        raise BurstKPNError(f"invalid training settings ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from burstkpn.train import train

    if args.init and not Path(args.init).is_file():
        raise BurstKPNError(f"{args.init}: no such weights file")
    cfg = resolve_config(args)
    summary = train(cfg, args.images, args.out, resume=args.resume, init=args.init, progress=not args.quiet)
    if summary["steps"] == 0 and cfg.steps == 0:
        return 0
    last = summary["last"]
    text = f"step {summary['steps']}"
    if "loss" in last:
        text += f", loss {last['loss']:.4f}, {last['samples_per_s']:.1f} samples/s"
    if "val_psnr" in last:
        text += f", validation PSNR {last['val_psnr']:.2f} dB"
    if summary["interrupted"]:
        print(f"interrupted at {text}; continue with --resume")
        return 130
    print(f"done: {text}; weights in {Path(args.out) / 'model.safetensors'}")
    return 0
