import json
from dataclasses import asdict, replace

import pytest

from burstkpn.card import WeightCard, ship, training_seconds
from burstkpn.config import to_dict
from burstkpn.errors import BurstKPNError
from burstkpn.models.kpn import ModelConfig, build_model
from burstkpn.weights import load_model, model_name, read_metadata, save_weights

TINY = ModelConfig(widths=(4, 8), convs_per_level=1, half_res_output=False, frames=3)


def card_for(config: ModelConfig, name: str = "kpn-tiny") -> WeightCard:
    return WeightCard(name=name, summary="A tiny test model.", architecture=to_dict(config), parameters=123,
                      training_data="none", steps=7, patch_size=32, batch_size=2, training_hours=0.01,
                      hardware="test", commands=["burstkpn train ..."], evaluation="| m | 1 |\n|---|---|")


def test_ship_embeds_the_card_and_names_the_row(tmp_path):
    save_weights(build_model(TINY), tmp_path / "run.safetensors")
    weights, text = ship(tmp_path / "run.safetensors", card_for(TINY), tmp_path / "pretrained")
    model = load_model(weights)
    assert model_name(model) == "kpn-tiny" and model.config == TINY
    card = read_metadata(weights)["info"]["card"]
    assert card["steps"] == 7 and card["architecture"] == to_dict(TINY)
    md = text.read_text()
    assert "# Weight card: `kpn-tiny`" in md and "| steps | 7 |" in md and '"frames": 3' in md
    assert model_name(load_model(tmp_path / "run.safetensors")) == "kpn"  # no card: the kind


def test_ship_refuses_a_card_for_another_architecture(tmp_path):
    save_weights(build_model(TINY), tmp_path / "run.safetensors")
    with pytest.raises(BurstKPNError, match="does not match"):
        ship(tmp_path / "run.safetensors", card_for(replace(TINY, widths=(4, 16))), tmp_path / "out")
    assert not (tmp_path / "out" / "kpn-tiny.safetensors").exists()


def test_training_seconds_sums_logged_windows(tmp_path):
    rows = [{"step": 0, "val_psnr": 20.0}, {"step": 10, "samples_per_s": 4.0}, {"step": 30, "samples_per_s": 8.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert training_seconds(path, batch_size=2) == pytest.approx(10 * 2 / 4 + 20 * 2 / 8)
    assert asdict(card_for(TINY))["name"] == "kpn-tiny"
