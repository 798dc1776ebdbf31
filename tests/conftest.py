"""Shared fixtures: small photos from scikit-image's bundled data (no network, no shared/ folder)."""

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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
