"""Colour test sets (`burstkpn synth --colour bayer|rgb`): reproducible, self-describing, noise on the mosaic,
and the grayscale set unchanged byte for byte."""

import hashlib
import zipfile

import imageio.v3 as iio
import numpy as np
import pytest

from burstkpn import camera
from burstkpn.cli import main
from burstkpn.colour import make_colour_scene
from burstkpn.errors import BurstKPNError
from burstkpn.io.raw import bayer_planes
from burstkpn.noise import noise_level_for_gain
from burstkpn.synth import make_scene, motion_geometry
from burstkpn.testset import build_testset, load_testset, save_testset, subset


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def arrays_digest(path):
    """sha256 over the stored arrays (every .npy member but meta, whose builder line names the version)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename != "meta.npy":
                h.update(info.filename.encode())
                h.update(zf.read(info))
    return h.hexdigest()


def synth(photo_dir, out, *extra):
    return main(["synth", "--images", str(photo_dir), "--out", str(out), "--size", "32", "--frames", "4", "--gains", "1", "4",
                 "--quiet", *extra])


# Built from the conftest photos by the builder as it was before colour sets existed (issue 22), on AVX2 code
# paths (`conftest.run_portably`: an AVX-512 machine builds sets that differ from these in the last bits).
GRAY_DIGESTS = {
    (): "530d01abde1b5ff787966e3aed7d164a7dd23da4fed6b900f2578db7faa3edf6",
    (("motion", "local"), ("gains", ("base", 8)), ("clip_white", True)):
        "5f0b7acfe2fa75ee29768f32845049cd081de81947a1b209458db1367ecfdca2",
}


@pytest.mark.parametrize("extra", list(GRAY_DIGESTS))
def test_grayscale_set_is_unchanged_byte_for_byte(extra, photo_dir, tmp_path):
    from conftest import run_portably

    kwargs = {"gains": (1, 4), "size": 32, "frames": 4, **dict(extra)}
    run_portably("from burstkpn.testset import build_testset, save_testset\n"
                 f"save_testset(build_testset({str(photo_dir)!r}, progress=False, **{kwargs!r}), {str(tmp_path / 'g.npz')!r})")
    assert arrays_digest(tmp_path / "g.npz") == GRAY_DIGESTS[extra]
    ts = build_testset(photo_dir, progress=False, **kwargs)
    assert ts.meta["version"] == 1 and "colour" not in ts.meta and "pattern" not in ts.meta and ts.colour is None
    with zipfile.ZipFile(tmp_path / "g.npz") as zf:
        assert "rgb2cam.npy" not in zf.namelist()
    back = load_testset(tmp_path / "g.npz")
    assert back.rgb2cam is None and back.meta == ts.meta
    with pytest.raises(BurstKPNError):
        back.camera_params(0)


def test_colour_sets_rebuild_byte_identically_and_carry_their_cameras(photo_dir, tmp_path):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert synth(photo_dir, a, "--colour", "bayer", "--per-image", "2") == 0
    assert synth(photo_dir, b, "--colour", "bayer", "--per-image", "2") == 0
    assert synth(photo_dir, c, "--colour", "bayer", "--per-image", "2", "--seed", "1") == 0
    assert sha(a) == sha(b) != sha(c)
    ts = load_testset(a)
    m = 3 * 2 * 2
    assert ts.meta["version"] == 2 and ts.meta["colour"] == "bayer" and ts.meta["pattern"] == "RGGB" and ts.colour == "bayer"
    assert ts.clean.shape == (m, 32, 32) and ts.noisy.shape == (m, 4, 32, 32)
    assert ts.rgb2cam.shape == (m, 3, 3) and ts.red_gain.shape == ts.blue_gain.shape == ts.rgb_gain.shape == (m,)
    # each scene has its own camera, the same at every gain, drawn from (seed, image, crop, 2)
    g1, g4 = ts.rows(1), ts.rows(4)
    assert np.array_equal(ts.rgb2cam[g1], ts.rgb2cam[g4]) and np.array_equal(ts.clean[g1], ts.clean[g4])
    assert len(np.unique(ts.red_gain[g1])) == len(g1)
    names = ts.meta["images"]
    for row in g1:
        i, crop = names.index(str(ts.source[row])), int(ts.scene[row]) % 2
        assert ts.camera_params(row) == camera.sample_camera_params(np.random.default_rng([0, i, crop, 2]), "RGGB")
    assert np.allclose(ts.rgb2cam.sum(axis=2), 1.0)
    part = subset(ts, g4)
    assert part.rgb2cam.shape == (len(g4), 3, 3) and part.camera_params(0) == ts.camera_params(g4[0])
    with pytest.raises(BurstKPNError, match="even"):
        build_testset(photo_dir, gains=[1], size=31, colour="bayer", progress=False)


def test_rgb_set_is_the_bayer_set_before_the_mosaic(photo_dir):
    kwargs = {"gains": [2], "size": 32, "frames": 3, "progress": False, "motion": "local"}
    rgb = build_testset(photo_dir, colour="rgb", **kwargs)
    bayer = build_testset(photo_dir, colour="bayer", **kwargs)
    assert rgb.clean.shape == (3, 32, 32, 3) and rgb.noisy.shape == (3, 3, 32, 32, 3) and "pattern" not in rgb.meta
    assert np.array_equal(camera.mosaic(rgb.clean, "RGGB"), bayer.clean)
    assert np.array_equal(rgb.shifts, bayer.shifts) and np.array_equal(rgb.white_level, bayer.white_level)
    assert np.array_equal(rgb.rgb2cam, bayer.rgb2cam)
    gbrg = build_testset(photo_dir, colour="bayer", pattern="GBRG", **kwargs)
    assert gbrg.meta["pattern"] == "GBRG" and np.array_equal(camera.mosaic(rgb.clean, "GBRG"), gbrg.clean)
    # the same scene geometry as the grayscale set: one crop, one set of shifts, one exposure
    gray = build_testset(photo_dir, **kwargs)
    assert np.array_equal(gray.shifts, rgb.shifts) and np.array_equal(gray.white_level, rgb.white_level)


def test_channels_are_cut_with_one_geometry():
    rng = np.random.default_rng(0)
    linear = rng.random((300, 320, 3)).astype(np.float32)
    cfg, local = motion_geometry("local", frames=4, size=24)
    scene = make_colour_scene(linear, [3, 1, 0], cfg, local)
    assert scene.frames.shape == (4, 24, 24, 3)
    for ch in range(3):
        alone = make_scene(linear[..., ch], np.random.default_rng([3, 1, 0]), cfg, local)
        assert np.array_equal(scene.frames[..., ch], alone.frames) and np.array_equal(scene.shifts, alone.shifts)
        assert scene.white_level == alone.white_level


def test_noise_on_the_mosaic_has_the_model_variance_per_plane(tmp_path):
    # a flat colour photo and static frames: each Bayer plane of the clean mosaic is one value y
    iio.imwrite(tmp_path / "flat.png", np.tile(np.array([200, 150, 90], np.uint8), (300, 300, 1)))
    ts = build_testset(tmp_path, gains=[4, 8], size=64, frames=8, per_image=2, motion="static", colour="bayer",
                       white_level=(0.6, 0.6), progress=False)
    for gain in (4, 8):
        level = noise_level_for_gain(gain)
        for row in ts.rows(gain):  # each burst its own camera, so its own plane values
            clean = bayer_planes(ts.clean[row])  # (4, 32, 32)
            noise = bayer_planes(ts.noisy[row] - ts.clean[row])  # (8, 4, 32, 32): 8192 samples a plane
            values = []
            for k in range(4):
                y = clean[k]
                assert np.ptp(y) < 1e-6  # flat
                values.append(y.mean())
                expected = np.sqrt(level.sigma_read**2 + level.sigma_shot * y.mean())
                assert noise[:, k].std() == pytest.approx(expected, rel=0.04)  # the estimate's own spread: 0.8 %
                assert abs(noise[:, k].mean()) < 0.05 * expected
            assert values[1] == pytest.approx(values[2]) and len({round(float(v), 6) for v in values}) == 3  # R, G, G, B


def test_loader_reads_colour_sets_and_rejects_inconsistent_ones(photo_dir, tmp_path):
    ts = build_testset(photo_dir, gains=[1], size=32, frames=3, colour="rgb", progress=False)
    save_testset(ts, tmp_path / "ok.npz")
    back = load_testset(tmp_path / "ok.npz")
    assert np.array_equal(back.noisy, ts.noisy) and np.array_equal(back.rgb2cam, ts.rgb2cam) and back.meta == ts.meta

    def broken(name, **changes):
        meta = changes.pop("meta", ts.meta)
        bad = type(ts)(**{**ts.__dict__, **changes, "meta": meta})
        save_testset(bad, tmp_path / name)
        with pytest.raises(BurstKPNError) as info:
            load_testset(tmp_path / name)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "colour" in broken("nocolour.npz", meta={**ts.meta, "colour": "cmyk"})
    assert "version 3" in broken("v3.npz", meta={**ts.meta, "version": 3})
    assert "rgb2cam" in broken("shape.npz", rgb2cam=ts.rgb2cam[:, :2])
    assert "camera" in broken("gain.npz", red_gain=-ts.red_gain)
    assert "unusable" in broken("singular.npz", rgb2cam=np.ones_like(ts.rgb2cam))
    assert "grayscale" in broken("v1.npz", meta={**ts.meta, "version": 1})
    assert "inconsistent" in broken("layout.npz", meta={**ts.meta, "colour": "bayer"})  # (M, N, S, S, 3) is no mosaic
