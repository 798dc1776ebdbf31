"""The model shipped inside the package: its card, and a regression guard on the demo burst."""

import json

import pytest

from burstkpn.cli import main
from burstkpn.config import from_dict
from burstkpn.models import ModelConfig
from burstkpn.weights import default_weights, load_model, model_name, read_metadata

WEIGHTS = default_weights()
# Measured when the model was shipped (demo defaults: astronaut, gain 2, seed 0): kpn 29.63 dB,
# average 16.79, aligned-average 27.19, hdrplus 28.26. The guards keep half of each margin.
MARGIN_OVER_AVERAGE = 6.4
MARGIN_OVER_ALIGNED = 1.2
pytestmark = pytest.mark.skipif(WEIGHTS is None, reason="this install ships no trained model")


def test_card_matches_the_weights():
    meta = read_metadata(WEIGHTS)
    card = meta["info"]["card"]
    assert from_dict(ModelConfig, card["architecture"]) == meta["config"]  # fields added later take defaults
    assert card["name"] == "kpn" == model_name(load_model(WEIGHTS))
    markdown = WEIGHTS.with_suffix(".md").read_text()
    assert f"| steps | {card['steps']:,} |" in markdown and "## Evaluation" in markdown
    assert WEIGHTS.stat().st_size < 15e6


def test_shipped_model_denoises_the_demo_burst(tmp_path):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    psnr = {k: v["psnr"] for k, v in json.loads((tmp_path / "summary.json").read_text())["metrics"].items()}
    assert psnr["kpn"] > psnr["average"] + MARGIN_OVER_AVERAGE
    assert psnr["kpn"] > psnr["aligned-average"] + MARGIN_OVER_ALIGNED
    assert psnr["kpn"] > psnr["hdrplus"]
