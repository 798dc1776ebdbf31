"""ONNX export: onnxruntime agrees with PyTorch (fp32) at two sizes, metadata, and clean errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from burstkpn.cli import main
from burstkpn.errors import BurstKPNError
from burstkpn.export import export_onnx, onnx_session, run_onnx, sample_inputs
from burstkpn.models.kpn import ModelConfig, build_model
from burstkpn.weights import save_weights

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SMALL = {"frames": 4, "kernel_size": 3, "widths": (8, 16, 16), "convs_per_level": 1, "init": "random"}


def small_model(**fields):
    torch.manual_seed(0)
    return build_model(ModelConfig(**(SMALL | fields))).eval()


# (H, W) pairs: neither side a multiple of the U-Net's 4, and both sides multiples (padding by 0)
SIZES = [(37, 50), (64, 32)]


@pytest.mark.parametrize("fields", [{}, {"kind": "dpn", "residual": True}, {"half_res_output": False, "prealign": "global"}],
                         ids=["kpn", "dpn", "kpn-full-res"])
def test_onnxruntime_matches_pytorch_at_two_sizes(fields, tmp_path):
    model = small_model(**fields)
    path = export_onnx(model, tmp_path / "m.onnx", check=False)
    session = onnx_session(path, threads=1)
    for seed, (h, w) in enumerate(SIZES):
        inputs = sample_inputs(model, h, w, batch=1 + seed, seed=seed)  # batch is dynamic too
        with torch.inference_mode():
            expected = model(*inputs)["output"].numpy()
        got = run_onnx(session, *inputs)
        assert got.shape == expected.shape == (1 + seed, h, w)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        assert np.abs(expected).max() > 1e-3  # not a trivial all-zero output


def test_blind_kpn_has_no_noise_map_input(tmp_path):
    model = small_model(kind="kpn-blind")
    session = onnx_session(export_onnx(model, tmp_path / "b.onnx"), threads=1)
    assert [i.name for i in session.get_inputs()] == ["burst"]


def test_metadata_says_prealignment_is_outside(tmp_path):
    model = small_model(prealign="global")
    proto = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", check=False)))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["config"])["prealign"] == "global"
    assert "align_global" in props["prealign"] and "not in this graph" in props["prealign"]
    assert "sigma_shot" in props["noise_model"] and "align_global" in proto.doc_string


def test_cli_export_writes_a_checked_file(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(small_model(), weights)
    assert main(["export", "--model", str(weights), "-o", str(tmp_path / "out" / "kpn.onnx")]) == 0
    assert "checked against PyTorch" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["kpn.onnx"]  # no temporary file left


def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    from burstkpn import export

    monkeypatch.setattr(export, "check_onnx", lambda model, path: 1.0)
    with pytest.raises(BurstKPNError, match="differs from PyTorch"):
        export_onnx(small_model(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--model", "{tmp}/missing.safetensors"], "missing.safetensors: no such weights file"),
])
def test_bad_arguments_are_one_line_errors(argv, message, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(small_model(), weights)
    argv = ["export", "--model", str(weights), "-o", str(tmp_path / "m.onnx")] + [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_extra_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(BurstKPNError, match=r"needs onnx: pip install 'burstkpn\[export\]'"):
        export_onnx(small_model(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
