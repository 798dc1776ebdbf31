"""Fuzzing the loaders and parsers (issue 10): whatever the bytes, only `BurstKPNError` may escape.

Valid seed files (PNG 8/16-bit gray and colour, JPEG, BMP, TIFF 8/16-bit and float, DNG, a test
set, a weights file, a config) are mutated by hypothesis: bytes flipped, overwritten with large
integers (header fields), ranges deleted or inserted, the file truncated. Example counts are
modest so that the file runs in well under 30 s; ``BURSTKPN_FUZZ=N`` runs N examples per test,
with fresh randomness, for a longer local session.

The pixel limit is lowered while fuzzing so that a mutated header claiming a large (but allowed)
image cannot make a test allocate gigabytes; the code paths are the same.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burstkpn.config import from_dict, read_toml, to_toml
from burstkpn.errors import BurstKPNError

DEEP = int(os.environ.get("BURSTKPN_FUZZ", "0"))
FUZZ = settings(max_examples=DEEP or 100, deadline=None, derandomize=not DEEP, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def small_pixel_limit(monkeypatch):
    from burstkpn.io import images

    monkeypatch.setattr(images, "MAX_PIXELS", 1_000_000)


# --- seeds and mutations -----------------------------------------------------------------------


def _encode(write, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"seed{suffix}"
        write(path)
        return path.read_bytes()


def _png16_rgb(path: Path) -> None:
    import png

    a = (np.arange(8 * 8 * 3).reshape(8, 8 * 3) * 997 % 65536).astype(np.uint16)
    png.from_array(a, "RGB;16").save(str(path))


_RNG = np.random.default_rng(0)
_GRAY8 = _RNG.integers(0, 255, (8, 8), dtype=np.uint8)
_RGB8 = _RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)
IMAGE_SEEDS = {
    "gray.png": _encode(lambda p: iio.imwrite(p, _GRAY8), ".png"),
    "rgb.png": _encode(lambda p: iio.imwrite(p, _RGB8), ".png"),
    "gray16.png": _encode(lambda p: iio.imwrite(p, _GRAY8.astype(np.uint16) * 257), ".png"),
    "rgb16.png": _encode(_png16_rgb, ".png"),
    "rgb.jpg": _encode(lambda p: iio.imwrite(p, _RGB8), ".jpg"),
    "rgb.bmp": _encode(lambda p: iio.imwrite(p, _RGB8), ".bmp"),
    "gray16.tif": _encode(lambda p: tifffile.imwrite(p, _GRAY8.astype(np.uint16) * 257), ".tif"),
    "float.tif": _encode(lambda p: tifffile.imwrite(p, _RGB8.astype(np.float32) / 255, photometric="rgb"), ".tif"),
    "deflate.tif": _encode(lambda p: tifffile.imwrite(p, _RGB8, compression="zlib"), ".tif"),
}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with 1-4 random edits: flip, overwrite with a big integer, delete, insert, truncate."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "int", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "int":
            value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**16 + 1]))
            width = draw(st.sampled_from([2, 4]))
            order = draw(st.sampled_from(["big", "little"]))
            data[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, order)
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[at:]
    return bytes(data)


def only_our_error(fn, *args):
    """Call ``fn``; a `BurstKPNError` is fine (one line), any other exception fails the test."""
    try:
        return fn(*args)
    except BurstKPNError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


# --- image reader -------------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(IMAGE_SEEDS)))
def test_read_image_on_mutated_images(data, name, tmp_path):
    from burstkpn.io.images import read_image

    path = tmp_path / name
    path.write_bytes(data.draw(mutated(IMAGE_SEEDS[name])))
    image = only_our_error(read_image, path)
    if image is not None:  # whatever decodes is a sane image
        assert image.pixels.dtype == np.float32 and np.isfinite(image.pixels).all()
        assert image.pixels.ndim in (2, 3) and 0 <= image.pixels.min() <= image.pixels.max() <= 1


@FUZZ
@given(blob=st.binary(max_size=512), suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]),
       magic=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM"]))
def test_read_image_on_random_bytes(blob, suffix, magic, tmp_path):
    from burstkpn.io.images import read_image

    path = tmp_path / f"x{suffix}"
    path.write_bytes(magic + blob)
    only_our_error(read_image, path)


@FUZZ
@given(data=st.data())
def test_load_burst_on_mutated_frames(data, tmp_path):
    from burstkpn.io.bursts import load_burst

    names = data.draw(st.lists(st.sampled_from(sorted(IMAGE_SEEDS)), min_size=1, max_size=3))
    folder = tmp_path / f"burst{len(list(tmp_path.iterdir()))}"  # tmp_path is shared by the examples
    folder.mkdir()
    for i, name in enumerate(names):
        seed = IMAGE_SEEDS[name]
        (folder / f"{i}_{name}").write_bytes(data.draw(mutated(seed)) if data.draw(st.booleans()) else seed)
    burst = only_our_error(load_burst, [folder], data.draw(st.integers(-3, 3)))
    if burst is not None:
        assert burst.frames.shape[0] == len(names) >= 1 and np.isfinite(burst.frames).all()  # one frame is a burst too


# --- raw reader ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dng_seed(tmp_path_factory):
    pytest.importorskip("rawpy")
    from rawburst import write_raw_burst

    return write_raw_burst(tmp_path_factory.mktemp("dng"), frames=1, size=16)[1][0].read_bytes()


@FUZZ
@given(data=st.data())
def test_read_raw_on_mutated_dng(data, dng_seed, tmp_path):
    from burstkpn.io.raw import read_raw

    path = tmp_path / "frame.dng"
    path.write_bytes(data.draw(mutated(dng_seed)))
    frame = only_our_error(read_raw, path)
    if frame is not None:
        assert frame.mosaic.ndim == 2 and frame.mosaic.shape[0] % 2 == 0 and frame.pattern in ("RGGB", "GRBG", "GBRG", "BGGR")


# --- test-set reader ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def testset_seed(tmp_path_factory):
    from burstkpn.testset import build_testset, save_testset

    folder = tmp_path_factory.mktemp("ts")
    iio.imwrite(folder / "photo.png", np.random.default_rng(0).integers(0, 255, (168, 168), dtype=np.uint8))
    ts = build_testset(folder, gains=(1, 2), size=8, frames=2, progress=False)
    save_testset(ts, folder / "ts.npz")
    return Seed(ts, (folder / "ts.npz").read_bytes())


class Seed(tuple):
    """(object, file bytes) with a short repr, so hypothesis' failure reports stay readable."""

    def __new__(cls, obj, blob: bytes):
        return super().__new__(cls, (obj, blob))

    def __repr__(self) -> str:
        return f"<seed of {len(self[1])} bytes>"


@FUZZ
@given(data=st.data())
def test_load_testset_on_mutated_bytes(data, testset_seed, tmp_path):
    from burstkpn.testset import load_testset

    path = tmp_path / "ts.npz"
    path.write_bytes(data.draw(mutated(testset_seed[1])))
    only_our_error(load_testset, path)


ODD_ARRAYS = st.sampled_from([
    np.zeros(()), np.zeros((0,)), np.zeros((2,)), np.zeros((2, 2)), np.zeros((2, 2, 8, 8), np.float32),
    np.array(["a", "b"]), np.array([np.nan, 1.0]), np.ones((2, 8, 8), np.int64), np.array(True),
])


@FUZZ
@given(data=st.data())
def test_load_testset_with_odd_arrays(data, testset_seed, tmp_path):
    """Structurally valid .npz files whose arrays or meta have the wrong shapes, types or values."""
    from burstkpn.testset import ARRAYS, load_testset

    ts, _ = testset_seed
    arrays = {name: np.asarray(getattr(ts, name)) for name in ARRAYS}
    meta = dict(ts.meta)
    for name in data.draw(st.lists(st.sampled_from(ARRAYS), max_size=3, unique=True)):
        arrays[name] = data.draw(ODD_ARRAYS)
    for name in data.draw(st.lists(st.sampled_from(ARRAYS), max_size=1)):
        del arrays[name]
    if data.draw(st.booleans()):
        meta = data.draw(st.sampled_from([[], "x", {"format": "burstkpn-testset"}, {**meta, "version": "1"}, 3]))
    with open(tmp_path / "ts.npz", "wb") as f:
        np.savez(f, **arrays, meta=np.array(json.dumps(meta)))
    loaded = only_our_error(load_testset, tmp_path / "ts.npz")
    if loaded is not None:  # what loads is usable: one row per burst, finite float frames
        assert loaded.noisy.ndim == 4 and len(loaded.clean) == len(loaded.noisy) == len(loaded.gain)
        assert np.isfinite(loaded.noisy).all()


# --- weights reader -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_seed(tmp_path_factory):
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_weights(build_model(ModelConfig(frames=2, kernel_size=3, widths=(2, 4), convs_per_level=1)), path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_load_model_on_mutated_weights(data, weights_seed, tmp_path):
    from burstkpn.weights import load_model

    path = tmp_path / "w.safetensors"
    path.write_bytes(data.draw(mutated(weights_seed)))
    only_our_error(load_model, path)


# --- config reader ------------------------------------------------------------------------------

TOML_PIECES = st.sampled_from([
    "steps = 3", "lr = 1e-3", "[model]", "[data.burst]", "widths = [8, 16]", "kind = \"dpn\"", "size = 32",
    "frames = 4", "batch_size = \"4\"", "x = [1, \"a\"]", "[[model]]", "= 3", "steps = 3\nsteps = 4", "[model]\n[model]",
    "lr = inf", "lr = nan", "steps = -1", "widths = []", "\"quoted key\" = 1", "a.b.c = 1", "[loss]", "seed = 99999999999999999999",
])


@FUZZ
@given(lines=st.lists(st.one_of(TOML_PIECES, st.text(max_size=20)), max_size=8))
def test_read_toml_and_from_dict_on_toml_ish_text(lines, tmp_path):
    from burstkpn.train import TrainConfig

    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    values = only_our_error(read_toml, path)
    if values is not None:
        only_our_error(from_dict, TrainConfig, values)


def _train_keys():
    import dataclasses

    from burstkpn.train import TrainConfig

    def keys(cls):
        out = []
        for f in dataclasses.fields(cls):
            hint = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out.append((f.name, keys(type(hint)) if dataclasses.is_dataclass(hint) else None))
        return out

    return keys(TrainConfig)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-4, 64), max_size=4),
                    st.lists(st.floats(-2, 2), max_size=3), st.lists(st.text(max_size=2), max_size=2))


@st.composite
def config_dicts(draw, keys=None):
    """Dicts shaped like TrainConfig (real keys, some misspelt), with values of any type."""
    keys = keys if keys is not None else _train_keys()
    out = {}
    for name, sub in draw(st.lists(st.sampled_from(keys), max_size=5, unique_by=lambda k: k[0])):
        if sub is not None and draw(st.booleans()):
            out[name] = draw(config_dicts(sub))
        else:
            out[name] = draw(SCALARS)
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(min_size=1, max_size=6))] = draw(SCALARS)
    return out


@FUZZ
@given(values=config_dicts())
def test_from_dict_on_random_dicts(values):
    from burstkpn.train import TrainConfig

    cfg = only_our_error(from_dict, TrainConfig, values)
    if cfg is not None:  # anything accepted writes back and reads back equal
        import tomllib

        assert from_dict(TrainConfig, tomllib.loads(to_toml(cfg))) == cfg


def test_fuzz_seeds_are_valid(testset_seed, weights_seed):
    """The mutations start from files that load: a failing seed would make the fuzzing vacuous."""
    from burstkpn.io.images import read_image
    from burstkpn.testset import load_testset
    from burstkpn.weights import load_model

    with tempfile.TemporaryDirectory() as tmp:
        for name, blob in IMAGE_SEEDS.items():
            (Path(tmp) / name).write_bytes(blob)
            assert read_image(Path(tmp) / name).pixels.shape[:2] == (8, 8), name
        (Path(tmp) / "ts.npz").write_bytes(testset_seed[1])
        assert len(load_testset(Path(tmp) / "ts.npz")) == 2
        (Path(tmp) / "w.safetensors").write_bytes(weights_seed)
        assert load_model(Path(tmp) / "w.safetensors").config.frames == 2
