"""Weight cards: what a shipped model is, how it was trained and how well it does (timm-style).

A card travels in two places: inside the weights file's metadata (``info["card"]``, so a file
is self-describing) and as a Markdown file beside it (``pretrained/NAME.md``) for people.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output


@dataclass(frozen=True)
class WeightCard:
    """Everything needed to judge and reproduce a shipped model."""

    name: str  # its row in evaluation tables (kpn, kpn-blind, dpn, kpn-paper, ...)
    summary: str
    architecture: dict  # the ModelConfig, as stored in the weights file
    parameters: int
    training_data: str
    steps: int
    patch_size: int
    batch_size: int
    training_hours: float  # optimiser time summed over the run's logged windows (validation excluded)
    hardware: str
    commands: list[str] = field(default_factory=list)  # the exact commands, in order
    evaluation: str = ""  # Markdown table(s) with the commands that made them
    licence: str = "MIT (weights); training photos: see the training data line"
    notes: str = ""

    def markdown(self) -> str:
        arch = json.dumps(self.architecture, indent=2)
        commands = "\n".join(self.commands)
        return (
            f"# Weight card: `{self.name}`\n\n{self.summary}\n\n"
            f"| field | value |\n|---|---|\n"
            f"| parameters | {self.parameters:,} |\n| training data | {self.training_data} |\n"
            f"| steps | {self.steps:,} |\n| patch | {self.patch_size}×{self.patch_size} |\n"
            f"| batch | {self.batch_size} |\n| training time | {self.training_hours:.2f} h |\n"
            f"| hardware | {self.hardware} |\n| licence | {self.licence} |\n\n"
            f"## Architecture (the config stored in the weights file)\n\n```json\n{arch}\n```\n\n"
            f"## Commands\n\n```bash\n{commands}\n```\n\n"
            f"## Evaluation\n\n{self.evaluation}\n\n"
            + (f"## Notes\n\n{self.notes}\n" if self.notes else "")
        )


def training_seconds(metrics_path: str | Path, batch_size: int) -> float:
    """Optimiser wall time of a run, summed from its metrics.jsonl windows (validation excluded).

    Each logged row covers the steps since the previous row at its ``samples_per_s`` (samples
    per second over all ranks; ``batch_size`` per rank times the world size); rows of
    resumed segments repeat nothing, because resuming trims rows past the checkpoint.
    """
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    total, previous = 0.0, None
    for row in rows:
        if "samples_per_s" in row and previous is not None and row["step"] > previous:
            total += (row["step"] - previous) * batch_size / row["samples_per_s"]
        previous = row["step"]
    return total


def ship(weights: str | Path, card: WeightCard, out_dir: str | Path, base: str | None = None,
         half: bool = False) -> tuple[Path, Path]:
    """Write ``out_dir/NAME.safetensors`` (weights + card in metadata) and ``out_dir/NAME.md``. ``base``: the name of a
    model in ``out_dir`` the weights grew from with it frozen: only the grown part is written (`save_weights`).
    ``half``: float16 tensors (half the size; `load_model` casts them back to float32)."""
    import torch

    from burstkpn.weights import load_model, save_weights

    model = load_model(weights)
    if asdict(model.config) != _as_config(card.architecture):
        raise BurstKPNError(f"{weights}: the card's architecture does not match the weights' config")
    out_dir = Path(out_dir)
    target, text = out_dir / f"{card.name}.safetensors", out_dir / f"{card.name}.md"
    save_weights(model, target, info={"name": card.name, "card": asdict(card)},
                 base=None if base is None else out_dir / f"{base}.safetensors",
                 dtype=torch.float16 if half else torch.float32)
    with atomic_output(text) as tmp:
        tmp.write_text(card.markdown())
    return target, text


def _as_config(architecture: dict) -> dict:
    from burstkpn.config import from_dict
    from burstkpn.models.kpn import ModelConfig
    from burstkpn.models.planar import PlanarConfig

    return asdict(from_dict(PlanarConfig if "planes" in architecture else ModelConfig, architecture))
