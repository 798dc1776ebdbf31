"""The recipes in configs/ and the README, as a user meets them: every recipe is a valid TrainConfig whose
header says what it produces, what it starts from and how to run it; the README is short, carries the CI
commands, and names no commit or date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from burstkpn.config import from_dict, read_toml
from burstkpn.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))
PRETRAINED = ROOT / "src" / "burstkpn" / "pretrained"
README = ROOT / "README.md"
HEADER_KEYS = ("produces", "init", "command")


def header(path: Path) -> dict[str, str]:
    """The ``# key: value`` lines of the comment block a config starts with (keys in HEADER_KEYS)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"# (\w+): (.+)$", line)
        if m and m.group(1) in HEADER_KEYS:
            assert m.group(1) not in found, f"{path}: two '# {m.group(1)}:' lines"
            found[m.group(1)] = m.group(2).strip()
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


HEADERS = {rel(p): header(p) for p in CONFIGS}
PRODUCED = {h["produces"]: name for name, h in HEADERS.items() if "produces" in h}


def test_configs_exist():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_every_recipe_is_a_valid_config(path):
    cfg = from_dict(TrainConfig, read_toml(path))
    assert cfg.steps > 0 and cfg.model.frames == cfg.data.burst.frames


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_every_recipe_says_what_it_produces_and_starts_from(path):
    h = HEADERS[rel(path)]
    assert "produces" in h, f"{rel(path)}: no '# produces: NAME' line at its top"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", h["produces"]), h["produces"]
    init = h.get("init")
    if init is None:
        return
    own = f"src/burstkpn/pretrained/{h['produces']}.safetensors"
    assert init not in (h["produces"], own), f"{rel(path)}: starts from its own output"
    if init.endswith(".safetensors"):
        assert (ROOT / init).is_file(), f"{rel(path)}: init {init} is not in the repository"
    else:
        assert PRODUCED.get(init) not in (None, rel(path)), f"{rel(path)}: no other config produces {init!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_a_recipes_command_runs_that_recipe_from_its_init(path):
    h = HEADERS[rel(path)]
    if "command" not in h:
        pytest.skip("no '# command:' line")
    command = h["command"]
    assert command.startswith("burstkpn train ") and f"--config {rel(path)}" in command
    init = h.get("init")
    if init is None:
        assert "--init" not in command
    else:
        weights = init if init.endswith(".safetensors") else f"runs/{init}/model.safetensors"
        assert f"--init {weights}" in command


def test_each_name_is_produced_once_and_each_shipped_model_by_a_config():
    names = [h["produces"] for h in HEADERS.values() if "produces" in h]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    # NAME-preview: the run of the recipe that produces NAME, shipped before its schedule ended
    shipped = {p.stem.removesuffix("-preview") for p in PRETRAINED.glob("*.safetensors")}
    assert shipped, PRETRAINED
    assert not shipped - set(names), f"shipped without a recipe: {sorted(shipped - set(names))}"


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_readme_names_no_commit_and_no_date():
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        # a 7-40 hex-digit commit hash (with a digit and a letter, so that words like "defaced" pass)
        commit = re.search(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", line, re.IGNORECASE)
        assert commit is None, f"README.md:{number}: {commit.group()}"
        assert not re.search(r"\b2026-\d\d-\d\d\b", line), f"README.md:{number}: a date"


@pytest.mark.parametrize("marker", ["ci:setup", "ci:test"])
def test_readme_keeps_the_ci_blocks(marker):
    lines = README.read_text(encoding="utf-8").splitlines()
    at = lines.index(f"<!-- {marker} -->")
    assert lines[at + 1] == "```bash" and lines[at + 2].strip() and lines[at + 3] == "```"
