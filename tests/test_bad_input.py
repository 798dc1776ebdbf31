"""Bad input never crashes: every case runs the real CLI and must fail cleanly (issue 10).

Each `Case` builds its bad input in a fresh folder and returns the command line; the check is the
same for all of them: exit status 2, exactly one ``burstkpn: error:`` line on stderr that names
the offending file (or value), no traceback, and nothing left behind (the folder's file list is
unchanged, so no partial output and no stray temporary file).

Cases already covered elsewhere are not repeated here: unknown evaluate method, bad --max-bursts
(test_evaluate.py); one-frame burst, different frame sizes, bad --noise, junk weights
(test_denoise.py); unknown synth gain, empty/unreadable synth folder (test_testset.py); the
library-level image and burst errors (test_io.py, test_bursts.py).

"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from burstkpn.cli import main
from conftest import TINY_KPN

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- building bad inputs -----------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, bit_depth: int = 8, colour_type: int = 0, side: int = 100_000) -> Path:
    """A PNG whose IHDR claims ``side`` x ``side`` pixels, with one tiny IDAT (a decompression bomb header)."""
    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + png_chunk(b"IEND", b""))
    return path


def huge_tiff(path: Path, side: int = 100_000) -> Path:
    """A little-endian baseline TIFF whose IFD claims ``side`` x ``side`` 8-bit gray pixels, 8 bytes of data."""
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, side), (279, 4, 1, 8)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 16) + b"\x80" * 8 + ifd)
    return path


def frames(folder: Path, n: int = 4, shape=(32, 32), suffix: str = ".png", seed: int = 0) -> list[Path]:
    """``n`` random 8-bit frames (0.png, 1.png, ...) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}{suffix}")
        iio.imwrite(paths[-1], rng.integers(0, 255, shape, dtype=np.uint8))
    return paths


def float_tiffs(folder: Path, bad: float, n: int = 4) -> Path:
    """``n`` float32 TIFF frames in [0, 1] (0.tif, 1.tif, ...); the last one, ``frame_badvalue_{n-1}.tif``,
    holds ``bad`` in one pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.full((32, 32), 0.5, np.float32)
        if i == n - 1:
            image[3, 4] = bad
        tifffile.imwrite(folder / (f"frame_badvalue_{i}.tif" if i == n - 1 else f"{i}.tif"), image)
    return folder / f"frame_badvalue_{n - 1}.tif"


def truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def weights_file(path: Path, **changes) -> Path:
    """A weights file of conftest's tiny KPN with ``changes`` to its config (the `tiny_weights` fixture has none)."""
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    save_weights(build_model(ModelConfig(**(TINY_KPN | changes))), path)
    return path


def other_architecture(path: Path) -> Path:
    """A burstkpn weights file whose tensors are from another architecture than its stored config."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights_file(path.with_suffix(".a.safetensors"), widths=(4, 8), kind="dpn")
    weights_file(path.with_suffix(".b.safetensors"))
    with safe_open(str(path.with_suffix(".b.safetensors")), framework="pt") as f:
        metadata = f.metadata()
    save_file(load_file(str(path.with_suffix(".a.safetensors"))), str(path), metadata=metadata)
    path.with_suffix(".a.safetensors").unlink()
    path.with_suffix(".b.safetensors").unlink()
    return path


def foreign_safetensors(path: Path) -> Path:
    """A valid safetensors file from some other project (no burstkpn metadata)."""
    import torch
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path), metadata={"format": "pt"})
    return path


def regular_file(path: Path) -> Path:
    path.write_text("a regular file, used as a folder by mistake\n")
    return path


def dng_burst(folder: Path, n: int = 4) -> list[Path]:
    from rawburst import write_raw_burst

    folder.mkdir(parents=True, exist_ok=True)
    return write_raw_burst(folder, frames=n, size=32)[1]


# Unique names for the offending files: an error line must name them, and no other path can match by accident.
NOT_A_DIR = "plainfile_notdir_7"  # a regular file where a folder is expected
OUT_DIR = "out_is_folder_7"  # an existing folder where an output file is expected
BAD_TOML = "config_bad_7.toml"
BAD_PNG = "frame_bad_9.png"  # sorts after the good frames 0.png, 1.png, ...
CUT_DNG = "frame_cut_z.dng"  # sorts after frame_00.dng, frame_01.dng, ...


def new_folder(path: Path) -> Path:
    path.mkdir()
    return path


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    """``build(tmp, ctx) -> argv``; ``names``: what the error line must contain (a file name, a value)."""

    id: str
    build: Callable[[Path, dict], list[str]]
    names: tuple[str, ...]
    needs: str = ""  # an optional module the case needs


def denoise(inputs, out, model, *extra) -> list[str]:
    return ["denoise", *map(str, inputs), "-o", str(out), "--model", str(model), "--quiet", "--tile", "32", *map(str, extra)]


def synth(images, out, *extra) -> list[str]:
    return ["synth", "--images", *map(str, images), "--out", str(out), "--size", "32", "--gains", "1", "--quiet", *map(str, extra)]


def train(images, out, *extra) -> list[str]:
    return ["train", "--images", str(images), "--out", str(out), "--steps", "1", "--quiet", *map(str, extra)]


def evaluate(testset, out, *extra) -> list[str]:
    return ["evaluate", "--testset", str(testset), "--out", str(out), "--methods", "reference", "--quiet", *map(str, extra)]


def inspect(inputs, out, model, *extra) -> list[str]:
    return ["inspect", *map(str, inputs), "-o", str(out), "--model", str(model), *map(str, extra)]


def export(model, out, *extra) -> list[str]:
    return ["export", "--model", str(model), "-o", str(out), *map(str, extra)]


def photos_plus(tmp: Path, ctx: dict, name: str, make: Callable[[Path], object]) -> Path:
    """A folder with one good photo and one bad file ``name`` made by ``make(path)``."""
    folder = tmp / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes((ctx["photo_dir"] / "camera.png").read_bytes())
    make(folder / name)
    return folder


def burst_plus(tmp: Path, name: str, make: Callable[[Path], object], n: int = 3) -> Path:
    """A folder with ``n`` good 8-bit frames and one bad frame ``name`` made by ``make(path)``."""
    frames(tmp / "in", n)
    make(tmp / "in" / name)
    return tmp / "in"


def jpeg(path: Path) -> Path:
    iio.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    return path


CASES = [
    # synth
    Case("synth-missing-folder", lambda t, c: synth([t / "missing_input_7"], t / "ts.npz"), ("missing_input_7",)),
    Case("synth-zero-byte-photo", lambda t, c: synth([photos_plus(t, c, "zero.png", lambda p: p.write_bytes(b""))],
                                                      t / "ts.npz"), ("zero.png", "empty file")),
    Case("synth-truncated-jpeg", lambda t, c: synth([photos_plus(t, c, "cut.jpg", lambda p: truncated(jpeg(p)))],
                                                     t / "ts.npz"), ("cut.jpg", "cannot read image")),
    Case("synth-huge-png-header", lambda t, c: synth([photos_plus(t, c, "bomb.png", huge_png)], t / "ts.npz"),
         ("bomb.png",)),
    Case("synth-huge-png16-header", lambda t, c: synth([photos_plus(t, c, "bomb16.png", lambda p: huge_png(p, 16, 2))],
                                                        t / "ts.npz"), ("bomb16.png", "header claims")),
    Case("synth-huge-tiff-header", lambda t, c: synth([photos_plus(t, c, "bomb.tif", huge_tiff)], t / "ts.npz"),
         ("bomb.tif", "header claims")),
    Case("synth-text-file-as-photo", lambda t, c: synth([regular_file(t / "notes.txt")], t / "ts.npz"),
         ("notes.txt", "cannot read image")),
    Case("synth-gain-not-a-number", lambda t, c: synth([c["photo_dir"]], t / "ts.npz", "--gains", "high"),
         ("unknown gain", "high")),
    Case("synth-gain-nan", lambda t, c: synth([c["photo_dir"]], t / "ts.npz", "--gains", "nan"), ("unknown gain", "nan")),
    Case("synth-out-is-folder", lambda t, c: synth([c["photo_dir"]], new_folder(t / OUT_DIR)), (OUT_DIR, "is a folder")),
    Case("synth-out-under-a-file", lambda t, c: synth([c["photo_dir"]], regular_file(t / NOT_A_DIR) / "ts.npz"), (NOT_A_DIR,)),
    Case("synth-out-in-proc", lambda t, c: synth([c["photo_dir"]], Path("/proc/burstkpn-test.npz")),
         ("/proc/burstkpn-test.npz",)),
    # train
    Case("train-missing-folder", lambda t, c: train(t / "missing_input_7", t / "run"), ("missing_input_7",)),
    Case("train-empty-folder", lambda t, c: train(new_folder(t / "photos_empty_7"), t / "run"),
         ("photos_empty_7", "no images found")),
    Case("train-malformed-toml", lambda t, c: train(c["photo_dir"], t / "run", "--config",
                                                    (t / BAD_TOML).write_text("steps = = 3") and t / BAD_TOML),
         (BAD_TOML, "malformed TOML")),
    Case("train-toml-not-utf8", lambda t, c: train(c["photo_dir"], t / "run", "--config",
                                                   (t / BAD_TOML).write_bytes(b"steps = \xff\xfe\n") and t / BAD_TOML),
         (BAD_TOML,)),
    Case("train-config-is-folder", lambda t, c: train(c["photo_dir"], t / "run", "--config",
                                                      new_folder(t / "config_is_folder_7")),
         ("config_is_folder_7",)),
    Case("train-config-missing", lambda t, c: train(c["photo_dir"], t / "run", "--config", t / "config_absent_7.toml"),
         ("config_absent_7.toml",)),
    Case("train-config-unknown-key", lambda t, c: train(c["photo_dir"], t / "run", "--config",
                                                        (t / BAD_TOML).write_text("[model]\nwidht = 3\n") and t / BAD_TOML),
         ("model.widht",)),
    Case("train-config-bad-value", lambda t, c: train(c["photo_dir"], t / "run", "--config",
                                                      (t / BAD_TOML).write_text('[model]\nkind = "gan"\n') and t / BAD_TOML),
         ("gan",)),
    Case("train-out-is-a-file", lambda t, c: train(c["photo_dir"], regular_file(t / "run_is_a_file_7")), ("run_is_a_file_7",)),
    Case("train-out-under-a-file", lambda t, c: train(c["photo_dir"], regular_file(t / NOT_A_DIR) / "run"), (NOT_A_DIR,)),
    Case("train-init-foreign-safetensors",
         lambda t, c: train(c["photo_dir"], t / "run", "--init", foreign_safetensors(t / "foreign.safetensors")),
         ("foreign.safetensors", "not a burstkpn weights file")),
    Case("train-resume-corrupt-checkpoint", lambda t, c: _corrupt_run(t, c), ("checkpoint.pt", "unreadable checkpoint")),
    # evaluate
    Case("evaluate-missing-testset", lambda t, c: evaluate(t / "testset_absent_7.npz", t / "o"), ("testset_absent_7.npz",)),
    Case("evaluate-truncated-testset", lambda t, c: evaluate(_copy_testset(t, c, truncate=True), t / "o"), ("testset_copy_7.npz",)),
    Case("evaluate-image-as-testset", lambda t, c: evaluate(frames(t / "x", 1)[0].rename(t / "image_as_testset_7.npz"), t / "o"),
         ("image_as_testset_7.npz",)),
    Case("evaluate-testset-with-nan", lambda t, c: evaluate(_copy_testset(t, c, nan=True), t / "o"), ("testset_copy_7.npz", "NaN")),
    Case("evaluate-weights-other-architecture",
         lambda t, c: evaluate(c["testset"], t / "o", "--model", other_architecture(t / "weights_bad_7.safetensors")),
         ("weights_bad_7.safetensors", "do not match")),
    Case("evaluate-checkpoint-as-weights", lambda t, c: evaluate(c["testset"], t / "o", "--model", _torch_file(t)),
         ("checkpoint_as_weights_7.pt",)),
    Case("evaluate-no-methods", lambda t, c: evaluate(c["testset"], t / "o") + ["--methods", ","], ("no methods",)),
    Case("evaluate-out-under-a-file", lambda t, c: evaluate(c["testset"], regular_file(t / NOT_A_DIR) / "o"), (NOT_A_DIR,)),
    # denoise
    Case("denoise-missing-input", lambda t, c: denoise([t / "missing_input_7"], t / "out.png", c["weights"]), ("missing_input_7",)),
    Case("denoise-empty-folder", lambda t, c: denoise([new_folder(t / "burst_empty_7")], t / "out.png", c["weights"]),
         ("burst_empty_7", "no images")),
    Case("denoise-zero-byte-frame", lambda t, c: denoise([burst_plus(t, BAD_PNG, lambda p: p.write_bytes(b""))],
                                                         t / "out.png", c["weights"]), (BAD_PNG, "empty file")),
    Case("denoise-truncated-png", lambda t, c: denoise([burst_plus(t, BAD_PNG, lambda p: truncated(frames(t / "x", 1)[0].rename(p)))],
                                                       t / "out.png", c["weights"]), (BAD_PNG, "cannot read image")),
    Case("denoise-truncated-jpeg", lambda t, c: denoise([burst_plus(t, "frame_bad_9.jpg", lambda p: truncated(jpeg(p)))],
                                                        t / "out.png", c["weights"]), ("frame_bad_9.jpg", "cannot read image")),
    Case("denoise-text-file-named-png", lambda t, c: denoise([burst_plus(t, BAD_PNG, regular_file)], t / "out.png",
                                                             c["weights"]), (BAD_PNG, "cannot read image")),
    Case("denoise-mixed-bit-depths", lambda t, c: denoise(
        [burst_plus(t, BAD_PNG, lambda p: iio.imwrite(p, np.zeros((32, 32), np.uint16)))], t / "out.png", c["weights"]),
         (BAD_PNG, "mixed bit depths")),
    Case("denoise-colour-and-gray", lambda t, c: denoise(
        [burst_plus(t, BAD_PNG, lambda p: iio.imwrite(p, np.zeros((32, 32, 3), np.uint8)))], t / "out.png", c["weights"]),
         (BAD_PNG, "must match")),
    Case("denoise-raw-and-image", lambda t, c: denoise([*frames(t / "in", 3), dng_burst(t / "raw", 1)[0]], t / "out.png",
                                                       c["weights"]), ("frame_00.dng", "mixed formats"), needs="rawpy"),
    Case("denoise-truncated-dng", lambda t, c: denoise([*dng_burst(t / "in", 3), truncated(dng_burst(t / "x", 1)[0].rename(t / "in" / CUT_DNG), 0.3)],
                                                       t / "out.png", c["weights"]), (CUT_DNG,), needs="rawpy"),
    Case("denoise-garbage-dng", lambda t, c: denoise([*dng_burst(t / "in", 3), _write(t / "in" / CUT_DNG, b"II*\x00" + bytes(range(256)) * 8)],
                                                     t / "out.png", c["weights"]), (CUT_DNG, "cannot read raw file"), needs="rawpy"),
    Case("denoise-nan-tiff", lambda t, c: denoise([float_tiffs(t / "in", np.nan).parent], t / "out.tif", c["weights"]),
         ("frame_badvalue_3.tif", "NaN")),
    Case("denoise-inf-tiff", lambda t, c: denoise([float_tiffs(t / "in", np.inf).parent], t / "out.tif", c["weights"]),
         ("frame_badvalue_3.tif", "Inf")),
    Case("denoise-negative-tiff", lambda t, c: denoise([float_tiffs(t / "in", -0.25).parent], t / "out.tif", c["weights"]),
         ("frame_badvalue_3.tif", "[0, 1]")),
    Case("denoise-huge-png-header", lambda t, c: denoise([burst_plus(t, BAD_PNG, huge_png)], t / "out.png", c["weights"]),
         (BAD_PNG,)),
    Case("denoise-huge-tiff-header", lambda t, c: denoise([burst_plus(t, "frame_bad_9.tif", huge_tiff)], t / "out.png", c["weights"]),
         ("frame_bad_9.tif", "header claims")),
    Case("denoise-weights-other-architecture", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png",
                                                                    other_architecture(t / "weights_bad_7.safetensors")),
         ("weights_bad_7.safetensors", "do not match")),
    Case("denoise-foreign-safetensors", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png",
                                                             foreign_safetensors(t / "weights_bad_7.safetensors")),
         ("weights_bad_7.safetensors", "not a burstkpn weights file")),
    Case("denoise-model-wants-more-frames", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png",
                                                                 weights_file(t / "w8.safetensors", frames=8)),
         ("the model takes 8 frames",)),
    Case("denoise-out-under-a-file", lambda t, c: denoise([frames(t / "in")[0].parent], regular_file(t / NOT_A_DIR) / "out.png",
                                                          c["weights"]), (NOT_A_DIR,)),
    Case("denoise-out-in-proc", lambda t, c: denoise([frames(t / "in")[0].parent], Path("/proc/burstkpn-test.png"),
                                                     c["weights"]), ("/proc/burstkpn-test.png",)),
    Case("denoise-negative-tile", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png", c["weights"],
                                                       "--tile", "-5"), ("tile",)),
    Case("denoise-zero-memory", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png", c["weights"])[:-2]
         + ["--memory-gb", "0"], ("memory",)),
    Case("denoise-noise-not-numbers", lambda t, c: denoise([frames(t / "in")[0].parent], t / "out.png", c["weights"],
                                                           "--noise", "low,high"), ("--noise", "low,high")),
    # demo
    Case("demo-unknown-gain", lambda t, c: ["demo", "--out", str(t / "d"), "--gain", "3", "--model", str(c["weights"])],
         ("unknown gain", "3")),
    Case("demo-unknown-method", lambda t, c: ["demo", "--out", str(t / "d"), "--methods", "average,magic",
                                              "--model", str(c["weights"])], ("magic",)),
    Case("demo-out-under-a-file", lambda t, c: ["demo", "--out", str(regular_file(t / NOT_A_DIR) / "d"), "--model",
                                                str(c["weights"])], (NOT_A_DIR,)),
    Case("demo-weights-other-architecture", lambda t, c: ["demo", "--out", str(t / "d"), "--model",
                                                          str(other_architecture(t / "weights_bad_7.safetensors"))],
         ("weights_bad_7.safetensors", "do not match")),
    Case("demo-zero-frames", lambda t, c: ["demo", "--out", str(t / "d"), "--frames", "0", "--model", str(c["weights"])],
         ("frames",)),
    Case("demo-zero-size", lambda t, c: ["demo", "--out", str(t / "d"), "--size", "0", "--model", str(c["weights"])],
         ("size",)),
    # inspect
    Case("inspect-missing-path", lambda t, c: inspect([t / "missing_input_7"], t / "o", c["weights"]), ("missing_input_7",)),
    Case("inspect-truncated-png", lambda t, c: inspect([burst_plus(t, BAD_PNG, lambda p: truncated(frames(t / "x", 1)[0].rename(p)))],
                                                       t / "o", c["weights"]), (BAD_PNG,)),
    Case("inspect-corrupt-dng", lambda t, c: inspect([*dng_burst(t / "in", 3), truncated(dng_burst(t / "x", 1)[0].rename(t / "in" / CUT_DNG), 0.3)],
                                                     t / "o", c["weights"]), (CUT_DNG,), needs="rawpy"),
    Case("inspect-foreign-safetensors", lambda t, c: inspect([frames(t / "in")[0].parent], t / "o",
                                                             foreign_safetensors(t / "weights_bad_7.safetensors")),
         ("weights_bad_7.safetensors", "not a burstkpn weights file")),
    Case("inspect-truncated-testset", lambda t, c: inspect([_copy_testset(t, c, truncate=True)], t / "o", c["weights"]),
         ("testset_copy_7.npz",)),
    Case("inspect-out-under-a-file", lambda t, c: inspect([frames(t / "in")[0].parent], regular_file(t / NOT_A_DIR) / "o",
                                                          c["weights"]), (NOT_A_DIR,)),
    # export
    Case("export-foreign-safetensors", lambda t, c: export(foreign_safetensors(t / "weights_bad_7.safetensors"), t / "m.onnx"),
         ("weights_bad_7.safetensors", "not a burstkpn weights file"), needs="onnx"),
    Case("export-weights-other-architecture", lambda t, c: export(other_architecture(t / "weights_bad_7.safetensors"), t / "m.onnx"),
         ("weights_bad_7.safetensors", "do not match"), needs="onnx"),
    Case("export-missing-weights", lambda t, c: export(t / "weights_absent_7.safetensors", t / "m.onnx"),
         ("weights_absent_7.safetensors",)),
    Case("export-unknown-format", lambda t, c: export(c["weights"], t / "m.onnx", "--format", "tflite"),
         ("unknown export format", "tflite")),
    Case("export-out-is-folder", lambda t, c: export(c["weights"], new_folder(t / OUT_DIR)), (OUT_DIR, "is a folder")),
    Case("export-out-under-a-file", lambda t, c: export(c["weights"], regular_file(t / NOT_A_DIR) / "m.onnx"), (NOT_A_DIR,)),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _torch_file(tmp: Path) -> Path:
    import torch

    torch.save({"step": 1, "model": {}}, tmp / "checkpoint_as_weights_7.pt")
    return tmp / "checkpoint_as_weights_7.pt"


def _copy_testset(tmp: Path, ctx: dict, truncate: bool = False, nan: bool = False) -> Path:
    from burstkpn.testset import load_testset, save_testset

    path = tmp / "testset_copy_7.npz"
    if nan:
        ts = load_testset(ctx["testset"])
        ts.noisy[0, 0, 1, 1] = np.nan
        save_testset(ts, path)
    else:
        path.write_bytes(ctx["testset"].read_bytes())
    return truncated(path, 0.6) if truncate else path


def _corrupt_run(tmp: Path, ctx: dict) -> list[str]:
    run = tmp / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a checkpoint")
    return train(ctx["photo_dir"], run, "--resume")


@pytest.fixture(scope="module")
def ctx(photo_dir, tiny_weights, tmp_path_factory):
    from burstkpn.testset import build_testset, save_testset

    folder = tmp_path_factory.mktemp("bad-input")
    testset = folder / "tiny.npz"
    save_testset(build_testset(photo_dir, gains=(1,), size=32, frames=4, progress=False), testset)
    return {"photo_dir": photo_dir, "weights": tiny_weights, "testset": testset}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def expected(names, ctx) -> list[str]:
    return [n(ctx) if callable(n) else n for n in names]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, ctx, tmp_path, capsys):
    if case.needs:
        pytest.importorskip(case.needs)
    work = tmp_path / "work"
    work.mkdir()
    argv = case.build(work, ctx)
    before = files_under(work)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("burstkpn: error:")]
    assert rc == 2, f"exit {rc}, stderr: {err}"
    assert "Traceback" not in err
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err  # warnings may precede the one error line
    for name in expected(case.names, ctx):
        assert name in errors[0], f"{name!r} not in {errors[0]!r}"
    assert files_under(work) == before, f"left behind: {files_under(work) - before}"


def test_at_least_twenty_cases_across_the_commands():
    commands = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 20 and {"synth", "train", "evaluate", "denoise", "demo", "inspect", "export"} <= commands


# --- through a real process: no traceback reaches stderr, unless --debug ------------------------

SUBPROCESS_CASES = ["train-toml-not-utf8", "denoise-truncated-png", "evaluate-truncated-testset", "denoise-out-under-a-file"]


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "burstkpn.cli", *argv], capture_output=True, text=True, env=ENV, check=False,
                          timeout=120)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_subprocess_prints_one_line_and_no_traceback(case_id, ctx, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    work = tmp_path / "work"
    work.mkdir()
    argv = case.build(work, ctx)
    before = files_under(work)
    proc = run_cli(argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("burstkpn: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_under(work) == before


def test_debug_flag_shows_the_traceback(ctx, tmp_path):
    proc = run_cli(["--debug", *denoise([tmp_path / "nope"], tmp_path / "o.png", ctx["weights"])])
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "BurstKPNError" in proc.stderr


# --- argparse-level mistakes: usage plus one error line, exit 2, no traceback -------------------


@pytest.mark.parametrize("argv, name", [
    (["demo", "--image", "moon-landing"], "moon-landing"),
    (["train", "--images", ".", "--out", "x", "--kind", "transformer"], "transformer"),
    (["denoise", ".", "-o", "x.png", "--raw-mode", "quarter"], "quarter"),
    (["synth", "--images", ".", "--out", "x.npz", "--size", "big"], "big"),
    (["frobnicate"], "frobnicate"),
])
def test_argument_errors_are_usage_errors(argv, name, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(("burstkpn", "usage")) and name in err.splitlines()[-1]
