"""Model weights as safetensors, with the model's config (JSON) in the file's metadata.

`load_model(path)` rebuilds the network from that config alone, so a weights file carries
everything needed to use it, its preprocessing (pre-alignment, noise map) included.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from burstkpn.config import from_dict, to_dict
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.models.kpn import BurstDenoiser, ModelConfig, build_model, unwrap

FORMAT = "burstkpn-weights"
VERSION = 1
PRETRAINED = "pretrained"  # package folder of the shipped weights and their cards
DEFAULT_MODEL = "kpn-refine"


def shipped_weights() -> list[Path]:
    """Weights files shipped inside the package (``burstkpn/pretrained/*.safetensors``), sorted."""
    folder = resources.files("burstkpn") / PRETRAINED
    if not folder.is_dir():
        return []
    return sorted(Path(str(f)) for f in folder.iterdir() if f.name.endswith(".safetensors"))


SHORT_BURST_MODEL = "kpn-variable-refine"  # shipped model for bursts shorter than the default takes (grown on kpn-variable)


JOINT_MODELS = {"raw": "kpn-bayer", "colour": "kpn-rgb"}  # shipped joint models, default for these bursts


def default_weights(frames: int | None = None, layout: str | None = None) -> Path | None:
    """The shipped default model (``pretrained/kpn.safetensors``), or None if this install has none.

    ``layout``: "raw" (a Bayer burst denoised at full resolution) or "colour" picks the shipped joint model
    for it (`JOINT_MODELS`) when there is one and it takes a burst of ``frames`` frames; otherwise the
    grayscale default runs per plane. With ``frames`` (a burst's length) shorter than the default model
    takes, the shipped variable-length model (`SHORT_BURST_MODEL`) when there is one.
    """
    shipped = {p.stem: p for p in shipped_weights()}
    joint = shipped.get(JOINT_MODELS.get(layout, ""))
    if joint is not None:
        config = read_metadata(joint)["config"]
        if frames is None or frames >= config.frames or config.variable_frames:
            return joint
    default = shipped.get(DEFAULT_MODEL)
    if (frames is not None and default is not None and SHORT_BURST_MODEL in shipped
            and frames < read_metadata(default)["config"].frames):
        return shipped[SHORT_BURST_MODEL]
    return default


def model_name(model: BurstDenoiser) -> str:
    """The model's row name in tables: its card's ``name``, else its kind (kpn, kpn-blind, dpn)."""
    return str(getattr(model, "info", {}).get("name") or model.config.kind)


def save_weights(model: torch.nn.Module, path: str | Path, info: dict | None = None,
                 dtype: torch.dtype = torch.float32, base: str | Path | None = None) -> None:
    """Write ``model``'s parameters and config atomically; ``info`` (JSON-able) goes in metadata too.
    ``dtype``: float32 (shipped weights), or float16 for half-size snapshots (`load_model` casts back).
    ``base``: a weights file (a shipped one, by path) that ``model`` grew from with every old weight frozen
    (``trainable``): only the grown parts' tensors are written (`models.kpn.GROWN_MODULES`), with the base's
    file name and a digest of its tensors; `load_model` puts them back on it (a few KB instead of 12 MB)."""
    from safetensors.torch import save_file

    core = unwrap(model)
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).cpu().contiguous()
               for k, v in core.state_dict().items()}
    metadata = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(to_dict(core.config)),
                "info": json.dumps(info or {})}
    if base is not None:
        from burstkpn.models.kpn import GROWN_MODULES, grow_state

        base_model = load_model(base)
        expected = grow_state(base_model.state_dict(), core, base_model.config)
        tensors = {k: v for k, v in tensors.items() if k.startswith(GROWN_MODULES)}
        moved = [k for k, v in core.state_dict().items() if k not in tensors and not torch.equal(v.cpu(), expected[k])]
        if moved or not tensors:
            raise BurstKPNError(f"{path}: not a part grown on {base} (changed: {', '.join(moved[:3]) or 'no grown part'})")
        metadata["base"] = json.dumps({"file": Path(base).name, "digest": state_digest(base_model.state_dict())})
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names and float32 bytes: which weights a grown part was fitted on."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict:
    """The file's metadata: ``config`` (ModelConfig) and ``info`` (dict); one-line errors for bad files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BurstKPNError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise BurstKPNError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0][:120]})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise BurstKPNError(f"{path}: not a burstkpn weights file (no model config in its metadata)")
    try:
        values = json.loads(metadata["config"])
        if isinstance(values, dict) and "planes" in values:  # a planar (colour/raw) model, `models.planar`
            from burstkpn.models.planar import PlanarConfig

            config = from_dict(PlanarConfig, values)
        else:
            config = from_dict(ModelConfig, values)
        info = json.loads(metadata.get("info", "{}"))
        base = json.loads(metadata["base"]) if "base" in metadata else None
    except (json.JSONDecodeError, BurstKPNError) as exc:
        raise BurstKPNError(f"{path}: unusable model config in its metadata ({exc})") from None
    return {"config": config, "info": info, "base": base}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> BurstDenoiser:
    """The network stored at ``path``, in eval mode, with ``.config`` and ``.info`` set."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if hasattr(meta["config"], "planes"):  # a planar (colour/raw) model
        from burstkpn.models.planar import build_planar

        model = build_planar(meta["config"])
    else:
        model = build_model(meta["config"])
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - as above
        raise BurstKPNError(f"{path}: cannot read the weights ({str(exc).splitlines()[0][:120]})") from None
    if meta["base"] is not None:
        state = {**base_state(path, meta["base"], model), **state}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise BurstKPNError(f"{path}: weights do not match the architecture in its config ({first[:160]})") from None
    model.info = meta["info"]
    return model.to(device).eval()


def base_state(path: Path, base: dict, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a grown part stored at ``path`` sits on (`save_weights` with ``base``): the base file next to it, or
    else the shipped model of that name (a part fitted on a shipped model can be kept anywhere: the digest says it is
    the same file), grown to ``model``'s config; one-line errors when it is missing or is not the file the part was
    fitted on."""
    from burstkpn.models.kpn import can_grow, grow_state

    name = str(base.get("file", ""))
    where = Path(path).parent / name
    if not where.is_file():
        shipped = {p.name: p for p in shipped_weights()}
        if name not in shipped:
            raise BurstKPNError(f"{path}: a part fitted on {where.name}, which is neither beside it nor shipped")
        where = shipped[name]
    base_model = load_model(where)
    if not can_grow(base_model.config, model.config) or state_digest(base_model.state_dict()) != base.get("digest"):
        raise BurstKPNError(f"{path}: fitted on other weights than {where} (its digest or config differs)")
    return grow_state(base_model.state_dict(), model, base_model.config)


def resolve_model(name_or_path: str | Path | None = None, frames: int | None = None,
                  log=None, layout: str | None = None) -> tuple[BurstDenoiser, Path]:
    """(model, weights path): ``name_or_path`` (a .safetensors file, or the name of a model shipped with
    burstkpn, e.g. ``kpn-local``), else the shipped model for a burst of ``frames`` frames
    (`default_weights`); a one-line error if neither. ``log`` (e.g. ``print``) receives a note when a
    burst's length picks another shipped model than the default."""
    path = str(name_or_path) if name_or_path else None
    if path and not Path(path).exists():
        path = str({p.stem: p for p in shipped_weights()}.get(path, path))
    weights = Path(path) if path else default_weights(frames, layout)
    if weights is None:
        raise BurstKPNError("no model given and no default model is shipped with this version of burstkpn yet: "
                            "pass a weights file (see `burstkpn train`)")
    if not path and weights.stem != DEFAULT_MODEL and weights.stem not in JOINT_MODELS.values() and log is not None:
        log(f"note: {frames} frames: using the shipped {weights.stem} model (the default {DEFAULT_MODEL} takes more)")
    return load_model(weights), weights
