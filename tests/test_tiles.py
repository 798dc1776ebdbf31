import numpy as np
import pytest
from scipy import ndimage

from burstkpn.errors import BurstKPNError
from burstkpn.tiles import choose_tile, run_tiled, tile_starts


def local_fn(tile):
    """A spatially local burst -> image function (reach ~8 px)."""
    return ndimage.gaussian_filter(tile.mean(axis=0), 2.0, mode="reflect")


@pytest.mark.parametrize("tile,overlap", [(64, 32), (100, 24), (48, 16)])
def test_tiled_matches_untiled_for_a_local_function(rng, tile, overlap):
    burst = rng.random((3, 150, 217)).astype(np.float32)
    full = local_fn(burst)
    tiled = run_tiled(local_fn, burst, tile, overlap)
    assert tiled.shape == full.shape
    assert np.abs(tiled - full).max() < 2e-3  # seams: only the tile-edge effects, faded out
    # without blending (overlap 0) the tile edges show: the cross-fade is doing the work
    hard = run_tiled(local_fn, burst, tile, 0)
    assert np.abs(hard - full).max() > 5 * np.abs(tiled - full).max()


def test_one_tile_is_exact_and_output_axes_may_differ(rng):
    burst = rng.random((2, 40, 50)).astype(np.float32)
    assert np.array_equal(run_tiled(lambda t: t * 2, burst, 64), burst * 2)
    assert run_tiled(lambda t: t[:1], burst, 16, 4).shape == (1, 40, 50)


def test_tile_geometry_and_budget():
    assert tile_starts(10, 4, 2) == [0, 2, 4, 6]
    assert tile_starts(100, 40, 8) == [0, 32, 60]
    assert choose_tile(100, 100, 1e12) == 100  # fits: one tile
    side = choose_tile(4000, 3000, 2**30, bytes_per_pixel=16384)
    assert side % 32 == 0 and side * side * 16384 <= 2**30 and (side + 32) ** 2 * 16384 > 2**30
    with pytest.raises(BurstKPNError):
        choose_tile(10, 10, 0)
