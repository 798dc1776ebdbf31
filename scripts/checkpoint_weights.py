"""Weights from a training run's latest checkpoint, to evaluate a run while it trains.

    python scripts/checkpoint_weights.py runs/kpn-reach /tmp/kpn-reach-2000.safetensors
    burstkpn evaluate --testset lomiri13.npz --methods "" --model /tmp/kpn-reach-2000.safetensors

The run keeps going; a run with `ema_decay` gives its averaged weights, as its final file will. The
file records the checkpoint's step (and the run's init lineage) like a finished run's model.safetensors.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from burstkpn.config import from_dict
from burstkpn.models import build_model
from burstkpn.train import TrainConfig, load_checkpoint, planar_config
from burstkpn.weights import save_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a training run folder (holds checkpoint.pt)")
    p.add_argument("out", type=Path, help="the .safetensors file to write")
    p.add_argument("--half", action="store_true",
                   help="float16 tensors: half the size, for a snapshot committed at a stop (start from it with --init)")
    args = p.parse_args()
    checkpoint = load_checkpoint(args.run / "checkpoint.pt")
    cfg = from_dict(TrainConfig, checkpoint["config"])
    if cfg.colour.planar:  # a joint colour/raw run
        from burstkpn.models.planar import build_planar

        model = build_planar(planar_config(cfg))
    else:
        model = build_model(cfg.model)
    model.load_state_dict(checkpoint.get("ema") or checkpoint["model"])  # averaged weights when the run keeps them
    info = {"steps": int(checkpoint["step"]), "train": checkpoint["config"]}
    if (args.run / "init.json").exists():
        info["init"] = json.loads((args.run / "init.json").read_text())
    save_weights(model, args.out, info=info, dtype=torch.float16 if args.half else torch.float32)
    print(f"wrote {args.out}: step {info['steps']} of {args.run}")


if __name__ == "__main__":
    main()
