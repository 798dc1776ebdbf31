import numpy as np
import pytest
from scipy import ndimage

from burstkpn.errors import BurstKPNError
from burstkpn.tiles import TILE_MAX_SIDE, choose_tile, run_tiled, tile_starts


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
    side = choose_tile(4000, 3000, 2**30, bytes_per_pixel=16384, fixed_bytes=0)
    assert side % 32 == 0 and side * side * 16384 <= 2**30 and (side + 32) ** 2 * 16384 > 2**30
    with pytest.raises(BurstKPNError):
        choose_tile(10, 10, 0)


def test_choose_tile_shrinks_to_the_fewest_tiles_that_cover_the_image():
    """The largest side the budget allows sets how many tiles each axis needs; the side is then the
    smallest (on the 32-px grid) that covers the image with that many, not a near-whole-image tile
    repeated four times over."""
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(16, 5000, 2))
        budget, per_px, overlap = float(rng.uniform(1e6, 5e9)), float(rng.uniform(500, 20000)), int(rng.choice([8, 32]))
        side = choose_tile(h, w, budget, per_px, overlap, fixed_bytes=0)
        if h * w * per_px <= budget:
            assert side == max(h, w)
            continue
        largest = max(min(int(np.sqrt(budget / per_px)), TILE_MAX_SIDE) // 32 * 32, 2 * overlap, 32)
        assert side % 32 == 0 and 2 * overlap <= side <= largest
        def counts(t):
            return [len(tile_starts(length, t, overlap)) for length in (h, w)]

        assert counts(side) == counts(largest)
        if side - 32 >= max(2 * overlap, 32):  # and no smaller side on the grid would do
            assert counts(side - 32) != counts(side)
    assert choose_tile(1024, 1024, 2**31, 2527, 32) == 544  # 2 x 2 tiles of 544², not of 896² (or 3 x 3 of 512²)
    # a 12-MP raw burst's 1724² planes through a joint model: the budget allows 608², the cap makes 4 x 4 of 480²
    assert choose_tile(1724, 1724, 2**31, 5439, 32) == 480
    assert choose_tile(1724, 1724, 2**31, 5439, 32, max_side=10**6) == 608
    assert choose_tile(100, 100, 100 * 100 * 1000 + 2**20, 1000, fixed_bytes=2**20) == 100  # fixed part + pixels fit
    assert choose_tile(100, 100, 100 * 100 * 1000, 1000, fixed_bytes=2**20) < 100  # the fixed part counts


# Peak memory of one tile of the shipped `kpn` (MB above the resident size before the tile, fresh
# processes, 8 frames, fp32; `python benchmarks/speed.py --sections memory`, docs/speed-pipeline.md)
MEASURED_KPN_MB = {(1, 256): 194, (1, 512): 588, (1, 768): 1239, (1, 1024): 2185,
                   (3, 256): 205, (3, 512): 661, (3, 768): 1452, (3, 1024): 2174}
# ... and of the joint raw model, 4 planes (`--memory-models kpn-bayer-preview --memory-planes 4`)
MEASURED_JOINT_MB = {384: 650, 512: 1045, 608: 1531}


def test_memory_plan_covers_the_measured_peaks_with_a_margin():
    """What `choose_tile` plans with (the fixed part plus `model_bytes_per_pixel` per pixel) is above
    every measured peak, by at least 15 % (the same run varies by ±10 %), and not wildly above (the
    tiles stay large)."""
    from burstkpn.pipeline import model_bytes_per_pixel
    from burstkpn.tiles import TILE_FIXED_BYTES
    from burstkpn.weights import resolve_model

    config = resolve_model("kpn", None)[0].config
    for (planes, side), measured in MEASURED_KPN_MB.items():
        planned = (TILE_FIXED_BYTES + side * side * model_bytes_per_pixel(config, 8, planes)) / 2**20
        assert 1.15 * measured <= planned <= 1.6 * measured, (planes, side, planned, measured)
    joint = resolve_model("kpn-bayer-preview", None)[0].config  # all 4 planes in one pass
    for side, measured in MEASURED_JOINT_MB.items():
        planned = (TILE_FIXED_BYTES + side * side * model_bytes_per_pixel(joint, 8, 4)) / 2**20
        assert 1.15 * measured <= planned <= 1.6 * measured, (side, planned, measured)


PEAK_SCRIPT = """
import json, sys
import numpy as np, torch
from burstkpn.noise import NoiseLevel
from burstkpn.pipeline import TILE_OVERLAP, denoise_planes, model_bytes_per_pixel
from burstkpn.tiles import choose_tile
from burstkpn.weights import resolve_model

def kib(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))

budget, side = float(sys.argv[1]), int(sys.argv[2])
net, _ = resolve_model("kpn", None)
rng = np.random.default_rng(0)
scene = rng.random((side + 16, side + 16)).astype(np.float32)
burst = np.stack([scene[i % 4 : i % 4 + side, i // 4 : i // 4 + side] for i in range(8)])
planes = np.clip(burst + 0.05 * rng.standard_normal(burst.shape).astype(np.float32), 0, 1)[None]
level = NoiseLevel(0.05, 0.0)
tile = choose_tile(side, side, budget, model_bytes_per_pixel(net.config, 8, 1), TILE_OVERLAP)
denoise_planes(net, planes[..., :64, :64], level, 64)  # lazy initialisation
base = kib("VmRSS")
denoise_planes(net, planes, level, tile)
print(json.dumps({"tile": tile, "peak": (kib("VmHWM") - base) * 1024}))
"""


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc for peak RSS")
def test_one_tile_of_the_shipped_kpn_stays_within_the_budget():
    """The planned tiles, run in a fresh process (alignment and network, as `burstkpn denoise` runs
    them): the peak resident memory above the resident size before them stays under the budget."""
    import json
    import os
    import subprocess
    import sys

    budget, side = 0.2 * 2**30, 384
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(budget), str(side)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tile"] < side  # it tiled
    assert result["peak"] <= budget, f"peak {result['peak'] / 2**20:.0f} MB over the {budget / 2**20:.0f} MB budget"
