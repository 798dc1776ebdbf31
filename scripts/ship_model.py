"""Package a training run's final weights with a weight card into ``src/burstkpn/pretrained/``.

    python scripts/ship_model.py --run runs/kpn --name kpn --summary "..." --training-data "..." \
        --hardware "..." --command "burstkpn train ..." [--command ...] --evaluation eval/results.md \
        [--notes notes.md]

Steps, patch, batch and the architecture are read from the run itself (its weights' metadata);
training time is summed from its metrics.jsonl (`burstkpn.card.training_seconds`). A run started
with ``--init`` adds the steps and hours of the weights it started from (recorded in RUN/init.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from burstkpn.card import WeightCard, ship, training_seconds
from burstkpn.config import to_dict
from burstkpn.weights import load_model

PRETRAINED = Path(__file__).resolve().parents[1] / "src" / "burstkpn" / "pretrained"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--training-data", required=True)
    p.add_argument("--hardware", required=True)
    p.add_argument("--command", action="append", default=[])
    p.add_argument("--evaluation", type=Path, required=True, help="Markdown file with the evaluation")
    p.add_argument("--notes", type=Path)
    p.add_argument("--out", type=Path, default=PRETRAINED)
    p.add_argument("--base", help="a shipped model the run grew from with it frozen (trainable): ship the grown part alone")
    p.add_argument("--half", action="store_true", help="float16 tensors: half the size (evaluate the shipped file itself)")
    args = p.parse_args()

    weights = args.run / "model.safetensors"
    model = load_model(weights)
    train = model.info["train"]
    # a run started from other weights (--init): add up their training (older runs kept it only in init.json)
    lineage = args.run / "init.json"
    parent = model.info.get("init") or (json.loads(lineage.read_text()) if lineage.exists() else {})
    card = WeightCard(
        name=args.name, summary=args.summary, architecture=to_dict(model.config),
        parameters=sum(t.numel() for t in model.parameters()), training_data=args.training_data,
        steps=int(model.info["steps"]) + int(parent.get("total_steps", 0)), patch_size=int(train["data"]["burst"]["size"]),
        batch_size=int(train["batch_size"]),
        training_hours=training_seconds(args.run / "metrics.jsonl", int(train["batch_size"])) / 3600
        + float(parent.get("training_hours", 0.0)),
        hardware=args.hardware, commands=args.command, evaluation=args.evaluation.read_text().strip(),
        notes=args.notes.read_text().strip() if args.notes else "",
    )
    for path in ship(weights, card, args.out, base=args.base, half=args.half):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
