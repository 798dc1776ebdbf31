"""Export a trained model to ONNX: the network and the kernel application, nothing else.

The exported graph maps

    burst (B, N, H, W) float32, linear, *already pre-aligned*   ("burst")
    noise_map (B, 1, H, W) float32                              ("noise_map"; absent for kpn-blind)
    -> output (B, H, W) float32, the denoised reference frame   ("output")

with dynamic B, H and W: the U-Net's replicate padding to its multiple and the crop back are
traced from the input's shape, so any H, W >= 1 works (the tracing input is deliberately not a
multiple, so the padding is always in the graph; padding by 0 is a no-op).

Not in the graph, and left to the caller exactly as `burstkpn.models.kpn.predict` does it:

- pre-alignment: with ``prealign = "global"`` in the model's config, align the frames to frame 0
  first with `burstkpn.align.align_global` (FFT phase correlation + bilinear warp); it uses
  FFTs and data-dependent shifts, which ONNX cannot express well;
- the noise map: ``sqrt(sigma_read**2 + sigma_shot * max(burst[:, :1], 0))`` from the (aligned)
  reference frame (`burstkpn.noise.noise_std_map`).

Both facts, the model's config and its card go into the ONNX file's ``doc_string`` and
``metadata_props``. onnx and onnxruntime are the optional ``export`` extra and are imported only here.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from burstkpn import __version__
from burstkpn.config import to_dict
from burstkpn.errors import BurstKPNError
from burstkpn.io.images import atomic_output
from burstkpn.models.kpn import BurstDenoiser

FORMATS = ("onnx",)
OPSET = 17
TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted by `check_onnx` (fp32)
NOISE_MODEL = ("noise_map = sqrt(sigma_read^2 + sigma_shot * max(reference, 0)), reference = burst[:, 0] "
               "after pre-alignment, linear [0, 1] units (burstkpn.noise.noise_std_map)")
PREALIGN_NOTE = {
    "global": "required, not in this graph: align every frame to frame 0 with burstkpn.align.align_global "
              "(FFT phase correlation, bilinear warp) before feeding the burst",
    "global-integer": "required, not in this graph: align every frame to frame 0 with "
                      "burstkpn.align.align_global(burst, integer=True) (FFT phase correlation, shifts rounded "
                      "to whole pixels) before feeding the burst",
    "none": "none expected by the model (burstkpn denoise still applies HDR+ tile alignment to real bursts first)",
}


def require(*modules: str) -> None:
    """Import the ``export`` extra's modules, or raise a one-line error naming what to install."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise BurstKPNError(f"ONNX export needs {name}: pip install 'burstkpn[export]'") from None


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise BurstKPNError(f"unknown export format {name!r}: known formats are {', '.join(FORMATS)}")
    return name


class Exportable(nn.Module):
    """(burst, noise_map) -> output (B, H, W): a model's forward without its dict and extra outputs."""

    def __init__(self, model: BurstDenoiser):
        super().__init__()
        self.model = model

    def forward(self, burst: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(burst, noise_map)["output"]


def input_names(model: BurstDenoiser) -> list[str]:
    return ["burst", "noise_map"] if model.config.uses_noise_map else ["burst"]


def metadata(model: BurstDenoiser) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file."""
    config = model.config
    return {
        "format": "burstkpn-onnx", "burstkpn_version": __version__,
        "config": json.dumps(to_dict(config)), "info": json.dumps(getattr(model, "info", {}) or {}),
        "inputs": "burst (B, N, H, W) float32 linear pre-aligned" + (
            "; noise_map (B, 1, H, W) float32" if config.uses_noise_map else ""),
        "outputs": "output (B, H, W) float32 linear, the denoised reference frame",
        "prealign": f"{config.prealign}: {PREALIGN_NOTE[config.prealign]}",
        "noise_model": NOISE_MODEL if config.uses_noise_map else "none (noise-blind model)",
    }


def doc_string(model: BurstDenoiser) -> str:
    config = model.config
    return (f"burstkpn {config.kind} ({config.frames} frames"
            + (f", {config.kernel_size}x{config.kernel_size} kernels" if config.kind != "dpn" else "")
            + f"): network + kernel application; dynamic batch, height and width. Pre-alignment "
            f"{PREALIGN_NOTE[config.prealign]}. " + (f"Noise map: {NOISE_MODEL}." if config.uses_noise_map else ""))


def sample_inputs(model: BurstDenoiser, height: int, width: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random burst (B, N, H, W) in [0, 1] and its noise map (B, 1, H, W) (if the model takes one)."""
    g = torch.Generator().manual_seed(seed)
    burst = torch.rand(batch, model.config.frames, height, width, generator=g)
    if not model.config.uses_noise_map:
        return (burst,)
    return burst, 0.01 + 0.05 * torch.rand(batch, 1, height, width, generator=g)


def _trace_size(model: BurstDenoiser) -> int:
    """A side that is not a multiple of the U-Net's, so the (dynamic) padding is traced into the graph."""
    multiple = model.unet.multiple
    return 2 * multiple + 1 if multiple > 1 else 17


def export_onnx(model: BurstDenoiser, path: str | Path, opset: int = OPSET, check: bool = True) -> Path:
    """Write ``model`` (eval, float32) as ONNX to ``path`` atomically; with ``check``, verify it first.

    The check runs onnxruntime and PyTorch on two random bursts of different sizes and refuses to
    write a file whose outputs differ by more than `TOLERANCE`.
    """
    if getattr(model.config, "resampling_input", False) or getattr(model.config, "gain_resampling", False):
        raise BurstKPNError("this model reads the pre-alignment's shifts (resampling_input / gain_resampling), which "
                            "the exported graph does not take: not exportable to ONNX yet")
    require("onnx", *(("onnxruntime",) if check else ()))
    import onnx

    wrapper = _frozen(model)
    names = input_names(model)
    side = _trace_size(model)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in names} | {"output": {0: "batch", 1: "height", 2: "width"}}
    with atomic_output(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on the shape checks, the legacy exporter's notice
            torch.onnx.export(wrapper, sample_inputs(model, side, side + 2), str(tmp), dynamo=False,
                              input_names=names, output_names=["output"], dynamic_axes=axes, opset_version=opset)
        proto = onnx.load(str(tmp))
        proto.doc_string = doc_string(model)
        onnx.helper.set_model_props(proto, metadata(model))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if check:
            error = check_onnx(model, tmp)
            if error > TOLERANCE:
                raise BurstKPNError(f"{path}: exported model differs from PyTorch by {error:.2e} (> {TOLERANCE:g}); not written")
    return Path(path)


def _frozen(model: BurstDenoiser) -> Exportable:
    """A copy of the model wrapped for export: eval, float32, no parameter gradients (so the kernels
    take the inference path of `apply_kernels`)."""
    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Exportable(model)


def onnx_session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session for ``path`` (``threads`` = 0: onnxruntime's default)."""
    require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, *inputs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run an exported model: inputs as in the graph (burst[, noise_map]) -> output (B, H, W)."""
    feeds = {i.name: np.asarray(x, dtype=np.float32) for i, x in zip(session.get_inputs(), inputs)}
    return session.run(["output"], feeds)[0]


def check_onnx(model: BurstDenoiser, path: str | Path, sizes=((37, 50), (64, 29))) -> float:
    """Max |onnxruntime - PyTorch| over random bursts of the given (H, W) sizes."""
    session = onnx_session(path)
    wrapper = _frozen(model)
    error = 0.0
    for i, (h, w) in enumerate(sizes):
        inputs = sample_inputs(model, h, w, seed=i)
        with torch.inference_mode():
            expected = wrapper(*inputs).numpy()
        error = max(error, float(np.abs(run_onnx(session, *inputs) - expected).max()))
    return error
