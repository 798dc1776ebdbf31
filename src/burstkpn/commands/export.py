"""``burstkpn export``: a trained model as an ONNX file (network + kernel application).

Pre-alignment and the noise map stay outside the graph (see `burstkpn.export`); the file's
metadata says what the caller must do. The export is checked against PyTorch with onnxruntime
before it is written (``--no-check`` skips that), and written atomically.
"""

from __future__ import annotations

import argparse

from burstkpn.export import FORMATS, OPSET, check_format, export_onnx
from burstkpn.io.images import check_output_file

EXPORT_DEFAULT = "kpn"  # the shipped network an exported graph can hold whole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=EXPORT_DEFAULT,
                   help=f"weights file (.safetensors) or shipped name; default: {EXPORT_DEFAULT} (the default denoiser, "
                        "kpn-refine, reads the pre-alignment's shifts, which an exported graph does not take)")
    p.add_argument("--format", default="onnx", help=f"output format: {', '.join(FORMATS)} (default onnx)")
    p.add_argument("-o", "--out", required=True, help="output file, e.g. kpn.onnx")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch parity check")


def run(args: argparse.Namespace) -> int:
    from burstkpn.weights import resolve_model

    check_format(args.format)
    out = check_output_file(args.out)  # fail before the work, not after it
    model, weights = resolve_model(args.model)
    export_onnx(model, out, opset=args.opset, check=not args.no_check)
    inputs = "burst (B, N, H, W)" + (" + noise_map (B, 1, H, W)" if model.config.uses_noise_map else "")
    print(f"wrote {out} ({args.format}, opset {args.opset}, from {weights}): {inputs} -> output (B, H, W); "
          f"pre-alignment ({model.config.prealign}) is not in the graph"
          + ("" if args.no_check else ", checked against PyTorch with onnxruntime"))
    return 0
