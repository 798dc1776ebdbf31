"""`denoise_burst`'s model dispatch (issue 22, part 4): a joint colour/raw model (`models.planar`) runs once on
all planes of each tile, a grayscale model per plane exactly as before. Tiny random models, 32-40 px bursts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from burstkpn.align import tile_align
from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import bayer_planes
from burstkpn.models.kpn import ModelConfig, build_model, denoise_array
from burstkpn.models.planar import PlanarConfig, bayer_to_planes, build_planar, planes_to_bayer, predict_planar
from burstkpn.noise import NoiseLevel
from burstkpn.pipeline import denoise_burst, denoise_planes, load_input
from burstkpn.tiles import run_tiled
from burstkpn.weights import save_weights
from rawburst import write_raw_burst

TINY = {"frames": 4, "kernel_size": 3, "widths": (4, 8), "convs_per_level": 1, "half_res_output": False,
        "prealign": "global", "init": "random"}
NOISE = NoiseLevel(0.01, 0.002)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """{"gray": path, 4: path, 3: path}: random (seeded) tiny models, kernels that differ per frame and pixel."""
    folder = tmp_path_factory.mktemp("dispatch")
    paths = {}
    torch.manual_seed(0)
    paths["gray"] = folder / "gray.safetensors"
    save_weights(build_model(ModelConfig(**TINY)), paths["gray"])
    for planes in (4, 3):
        torch.manual_seed(planes)
        paths[planes] = folder / f"joint{planes}.safetensors"
        save_weights(build_planar(PlanarConfig(planes=planes, **TINY)), paths[planes])
    return paths


def colour_burst(size: int = 40, frames: int = 4, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) linear frames: a smooth colour scene moved by whole pixels, noisy."""
    rng = np.random.default_rng(seed)
    big = rng.uniform(0.1, 0.8, (size + 8, size + 8, 3))
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1) + np.roll(big, (1, 1), (0, 1))) / 4
    moves = [(0, 0), (1, -1), (-2, 1), (2, 2)]
    frames = np.stack([big[4 + dy : 4 + dy + size, 4 + dx : 4 + dx + size] for dy, dx in moves[:frames]])
    return (frames + rng.normal(0, 0.02, frames.shape)).astype(np.float32)


def per_plane_reference(model, planes, noise, tile, align=True, amp=False, ensemble=False, overlap=32, greens=None):
    """`pipeline.denoise_planes` for a grayscale model written out: every plane through the grayscale model, its
    global pre-alignment found on the mean of the ``greens`` planes when given (each plane's own otherwise)."""
    def one_tile(part):
        part = tile_align(part) if align else part
        guide = None if greens is None else part[list(greens)].mean(axis=0)
        return np.stack([denoise_array(model, p, noise, amp=amp, ensemble=ensemble, guide=guide) for p in part])

    return run_tiled(one_tile, np.asarray(planes), tile, overlap)


@pytest.mark.parametrize("tile", [None, 24])
def test_a_grayscale_model_runs_per_plane_aligned_on_the_green_channel(weights, tile):
    from burstkpn.weights import load_model

    frames = colour_burst()
    result = denoise_burst(frames, NOISE, model=weights["gray"], tile=tile, bf16=False)
    model = load_model(weights["gray"])
    planes = frames.transpose(3, 0, 1, 2)
    want = per_plane_reference(model, planes, NOISE, result.tile, greens=(1,))
    np.testing.assert_array_equal(result.image, np.stack(want, axis=-1))
    # the guide matters: each channel aligned on its own gives another image
    own = per_plane_reference(model, planes, NOISE, result.tile)
    assert np.abs(np.stack(own, axis=-1) - result.image).max() > 1e-4
    if tile is None:  # one tile: each plane of the tile-aligned burst through `denoise_array`, nothing else
        aligned = tile_align(planes)
        direct = np.stack([denoise_array(model, p, NOISE, guide=aligned[1]) for p in aligned], axis=-1)
        np.testing.assert_array_equal(result.image, direct)
    with pytest.raises(BurstKPNError, match="shifts or a guide"):  # the ensemble's views need their own estimates
        denoise_array(model, planes[0], NOISE, ensemble=True, shifts=torch.zeros(1, 4, 2))
    # and the ensemble / no-alignment options
    np.testing.assert_array_equal(denoise_planes(model, planes, NOISE, 24, align=False, ensemble=True, greens=(1,)),
                                  per_plane_reference(model, planes, NOISE, 24, align=False, ensemble=True, greens=(1,)))


@pytest.mark.parametrize("pattern, greens", [("RGGB", (1, 2)), ("BGGR", (1, 2)), ("GRBG", (0, 3)), ("GBRG", (0, 3))])
def test_the_green_planes_of_a_raw_burst_follow_its_cfa_pattern(tmp_path, pattern, greens):
    from burstkpn.pipeline import green_planes

    write_raw_burst(tmp_path, frames=2, size=32, pattern=pattern)
    burst = load_input(tmp_path)
    assert green_planes(burst) == greens
    assert green_planes(burst, raw_mode="half") is None  # one plane: nothing to guide
    assert green_planes(load_input(colour_burst())) == (1,)
    assert green_planes(load_input(colour_burst()[..., 0])) is None


def test_a_dark_plane_is_aligned_on_the_green_planes_at_high_gain():
    """A Bayer burst whose red and blue planes see 5 % of the green light, at the paper's gain 8, 64-px planes,
    frames moved by whole plane pixels: the shipped kpn run per plane loses the red plane's alignment on its
    own, and keeps it when the green planes guide it."""
    from scipy.ndimage import gaussian_filter

    from burstkpn.metrics import psnr
    from burstkpn.noise import add_noise, noise_level_for_gain
    from burstkpn.pipeline import denoise_tile
    from burstkpn.weights import load_model, resolve_model

    model = load_model(resolve_model("kpn", None)[1]).eval()
    level = noise_level_for_gain(8)
    gains = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        scene = gaussian_filter(rng.random((96, 96)), 2.0)
        scene = 0.1 + 0.8 * (scene - scene.min()) / (scene.max() - scene.min())
        moves = [(0, 0)] + [tuple(int(v) for v in rng.integers(-3, 4, 2)) for _ in range(7)]
        frames = np.stack([scene[16 + dy : 80 + dy, 16 + dx : 80 + dx] for dy, dx in moves]).astype(np.float32)
        clean = np.stack([0.05 * frames, frames, frames, 0.05 * frames])  # (4, 8, 64, 64): R, Gr, Gb, B
        noisy = add_noise(clean, level, rng)
        own, guided = (denoise_tile(model, noisy, level, greens=g) for g in (None, (1, 2)))
        gains.append(psnr(guided[0], clean[0, 0], 0.05) - psnr(own[0], clean[0, 0], 0.05))
    assert np.mean(gains) > 1.0, gains


def test_a_joint_model_runs_once_on_all_colour_channels(weights):
    from burstkpn.weights import load_model

    frames = colour_burst()
    result = denoise_burst(frames, NOISE, model=weights[3], bf16=False)
    model = load_model(weights[3])
    aligned = tile_align(frames.transpose(3, 0, 1, 2))
    with torch.no_grad():
        want = predict_planar(model, torch.from_numpy(aligned)[None], NOISE.sigma_read, NOISE.sigma_shot)["output"][0]
    assert result.image.shape == frames.shape[1:]
    np.testing.assert_allclose(result.image, want.numpy().transpose(1, 2, 0), rtol=0, atol=1e-6)
    # not the per-plane path: changing red changes the joint model's green, not a grayscale model's
    redder = frames.copy()
    redder[..., 0] *= 1.5
    for key, moves in ((3, True), ("gray", False)):
        a, b = (denoise_burst(x, NOISE, model=weights[key], align=False, bf16=False).image for x in (frames, redder))
        assert (np.abs(a[..., 1] - b[..., 1]).max() > 1e-4) == moves, key
    # tiles: the same dispatch in every tile, blended
    tiled = denoise_burst(frames, NOISE, model=weights[3], tile=24, bf16=False)
    assert tiled.tile == 24 and np.abs(tiled.image - result.image).mean() < 0.02


def test_a_joint_model_on_a_raw_burst_takes_rggb_planes(weights, tmp_path):
    from burstkpn.weights import load_model

    pytest.importorskip("rawpy")
    _, paths = write_raw_burst(tmp_path, frames=4, size=32, pattern="GRBG")
    # declip off: the untrained model's output runs far below the sensor's clip point, which declip would hold
    result = denoise_burst(paths, NOISE, model=weights[4], bf16=False, declip=False)
    mosaics = load_input(paths).frames  # (N, 32, 32) GRBG
    model = load_model(weights[4])
    planes = tile_align(bayer_to_planes(mosaics, "GRBG").transpose(1, 0, 2, 3))
    with torch.no_grad():
        out = predict_planar(model, torch.from_numpy(planes)[None], NOISE.sigma_read, NOISE.sigma_shot)["output"][0]
    assert result.image.shape == mosaics.shape[1:] and result.planes.shape == (4, 4, 16, 16)
    np.testing.assert_allclose(result.image, planes_to_bayer(out.numpy(), "GRBG"), rtol=0, atol=1e-6)
    # the flip matters: the mosaic's own plane positions would give another output
    positional = tile_align(bayer_planes(mosaics).transpose(1, 0, 2, 3))
    with torch.no_grad():
        other = predict_planar(model, torch.from_numpy(positional)[None], NOISE.sigma_read, NOISE.sigma_shot)["output"][0]
    assert np.abs(result.image - planes_to_bayer(other.numpy(), "RGGB")).max() > 1e-3


def test_untrained_joint_model_without_alignment_is_the_aligned_mean():
    from burstkpn.colour_eval import aligned_average_planes

    model = build_planar(PlanarConfig(planes=3, **{**TINY, "init": "mean"})).eval()
    planes = colour_burst(32).transpose(3, 0, 1, 2)
    got = denoise_planes(model, planes, NOISE, 64, align=False)
    np.testing.assert_allclose(got, aligned_average_planes(planes, NOISE), rtol=0, atol=1e-5)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_mismatches_are_one_line_errors(weights, tmp_path):
    gray = colour_burst()[..., 0]
    with pytest.raises(BurstKPNError) as exc:
        denoise_burst(gray, NOISE, model=weights[3], bf16=False)
    assert "grayscale" in one_line(exc)
    with pytest.raises(BurstKPNError) as exc:
        denoise_burst(colour_burst(), NOISE, model=weights[4], bf16=False)
    assert "Bayer raw" in one_line(exc) and "colour (3 channels)" in one_line(exc)
    with pytest.raises(BurstKPNError) as exc:
        denoise_burst(colour_burst(), NOISE, model=weights[3], ensemble=True, bf16=False)
    assert "ensemble" in one_line(exc)
    pytest.importorskip("rawpy")
    _, paths = write_raw_burst(tmp_path, frames=4, size=32)
    with pytest.raises(BurstKPNError) as exc:
        denoise_burst(paths, NOISE, model=weights[4], raw_mode="half", bf16=False)
    assert "grayscale" in one_line(exc) and "half" in one_line(exc)
    with pytest.raises(BurstKPNError) as exc:
        denoise_burst(paths, NOISE, model=weights[3], bf16=False)
    assert "Bayer raw (4 CFA planes)" in one_line(exc)
