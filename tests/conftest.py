"""Shared fixtures: small photos from scikit-image's bundled data (no network, no shared/ folder), tiny
weights files and a small test set built from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # CI has 2 shared cores; 1 thread keeps tests predictable


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """A folder with three 8-bit photos (512x512 colour and gray) bundled with scikit-image."""
    import imageio.v3 as iio
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    iio.imwrite(folder / "astronaut.png", data.astronaut())
    iio.imwrite(folder / "camera.png", data.camera())
    iio.imwrite(folder / "brick.png", data.brick())
    return folder


def portable_env() -> dict[str, str]:
    """The environment of a child Python whose numpy and torch take their AVX2 code paths even on an AVX-512
    machine. Their AVX-512 transcendental functions (exp, log, power, ...) round the last bit differently, so a
    digest pinned on one machine class would fail on the other: numpy's AVX-512 dispatch targets that this CPU
    has are switched off (``NPY_DISABLE_CPU_FEATURES``), torch's kernels pinned to AVX2."""
    import os

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    wide = [t for t in __cpu_dispatch__ if __cpu_features__.get(t) and (t.startswith("AVX512") or t == "X86_V4")]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    if wide:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(wide)
    return env


def run_portably(code: str) -> str:
    """Run ``code`` in a fresh interpreter with `portable_env`; its stdout, stripped (a failure raises)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], env=portable_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return done.stdout.strip()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# A mean-initialised 4-frame KPN small enough for every CLI test: it outputs the frames' mean until trained.
TINY_KPN = {"frames": 4, "kernel_size": 3, "widths": (8, 16), "convs_per_level": 1}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights file of the `TINY_KPN` model (untrained: init "mean")."""
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_weights(build_model(ModelConfig(**TINY_KPN)), path)
    return path


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """An 8-frame full-resolution KPN with random (seeded) weights: kernels that differ per frame and pixel."""
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "random.safetensors"
    save_weights(build_model(ModelConfig(frames=8, kernel_size=3, widths=(8, 16), convs_per_level=1,
                                         half_res_output=False, init="random")), path)
    return path


@pytest.fixture(scope="session")
def testset_path(photo_dir, tmp_path_factory):
    """A test set of the three photos at gains 2 and 4, 8 frames of 48x48."""
    from burstkpn.testset import build_testset, save_testset

    path = tmp_path_factory.mktemp("ts") / "ts.npz"
    save_testset(build_testset(photo_dir, gains=(2, 4), size=48, progress=False), path)
    return path
