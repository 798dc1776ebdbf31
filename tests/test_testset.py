import hashlib

import numpy as np
import pytest

from burstkpn.cli import main
from burstkpn.errors import BurstKPNError
from burstkpn.testset import build_testset, load_testset, save_testset


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synth(photo_dir, out, *extra):
    return main(["synth", "--images", str(photo_dir), "--out", str(out), "--size", "48", "--quiet", *extra])


def test_builder_is_reproducible_and_self_describing(photo_dir, tmp_path):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert synth(photo_dir, a, "--per-image", "2") == 0
    assert synth(photo_dir, b, "--per-image", "2") == 0
    assert synth(photo_dir, c, "--per-image", "2", "--seed", "1") == 0
    assert sha(a) == sha(b) != sha(c)
    ts = load_testset(a)
    assert len(ts) == 3 * 2 * 4 and ts.gains == [1, 2, 4, 8]
    assert ts.noisy.shape == (24, 8, 48, 48) and ts.clean.shape == (24, 48, 48)
    assert ts.meta["seed"] == 0 and ts.meta["version"] == 1 and ts.meta["images"] == ["astronaut.png", "brick.png", "camera.png"]
    # the same scenes at every gain; only the noise differs, and it grows with gain
    g1, g8 = ts.rows(1), ts.rows(8)
    assert np.array_equal(ts.clean[g1], ts.clean[g8]) and np.array_equal(ts.scene[g1], ts.scene[g8])
    err1 = np.std(ts.noisy[g1, 0] - ts.clean[g1])
    err8 = np.std(ts.noisy[g8, 0] - ts.clean[g8])
    assert err8 > 4 * err1
    assert not np.array_equal(ts.noisy[g1, 0], ts.clean[g1])
    assert set(np.unique(ts.source)) == {"astronaut.png", "brick.png", "camera.png"}


def test_frames_option_and_round_trip(photo_dir, tmp_path):
    ts = build_testset(photo_dir, gains=[2], size=32, frames=3, progress=False)
    save_testset(ts, tmp_path / "t.npz")
    back = load_testset(tmp_path / "t.npz")
    assert back.noisy.shape == (3, 3, 32, 32)
    assert np.array_equal(back.noisy, ts.noisy) and back.meta == ts.meta


@pytest.mark.parametrize("case", ["empty", "unreadable", "too_large_size", "unknown_gain", "missing"])
def test_builder_rejects_bad_arguments_without_partial_output(case, photo_dir, tmp_path, capsys):
    images, extra = photo_dir, []
    if case == "empty":
        images = tmp_path / "empty"
        images.mkdir()
    elif case == "unreadable":
        images = tmp_path / "bad"
        images.mkdir()
        (images / "a.png").write_bytes((photo_dir / "camera.png").read_bytes())
        (images / "photo_garbage_7.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif case == "too_large_size":
        extra = ["--size", "4096"]
    elif case == "unknown_gain":
        extra = ["--gains", "1", "3"]
    elif case == "missing":
        images = tmp_path / "nope"
    out = tmp_path / "out.npz"
    assert main(["synth", "--images", str(images), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("burstkpn: error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp*")) == []
    if case == "unreadable":
        assert "photo_garbage_7.png" in err


def test_corrupt_testset_is_a_clear_error(tmp_path):
    bad = tmp_path / "testset_corrupt_7.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(BurstKPNError, match=r"testset_corrupt_7\.npz"):
        load_testset(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(BurstKPNError, match="not a burstkpn test set"):
        load_testset(tmp_path / "other.npz")


def test_local_motion_test_set_is_marked_and_reproducible(photo_dir, tmp_path):
    a = build_testset(photo_dir, gains=[1], size=32, motion="local", progress=False)
    b = build_testset(photo_dir, gains=[1], size=32, motion="local", progress=False)
    g = build_testset(photo_dir, gains=[1], size=32, motion="global", progress=False)
    assert a.meta["motion"] == "local" and np.array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, g.noisy)
    with pytest.raises(BurstKPNError, match="motion"):
        build_testset(photo_dir, gains=[1], size=32, motion="spin", progress=False)


def test_aligned_motions_line_frames_up_exactly(photo_dir):
    """static: every frame is the reference's window; integer: whole-pixel shifts, so the reference's pixels
    reappear in each frame moved by its (integer) shift; subpixel: no large misalignment."""
    from burstkpn.synth import make_scene, motion_geometry

    static = build_testset(photo_dir, gains=[1], size=32, motion="static", downsample=2, progress=False)
    assert np.all(static.shifts == 0) and static.meta["downsample"] == 2
    image = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    for scale in (1, 2, 4):
        cfg, _ = motion_geometry("static", frames=8, size=32, downsample=scale)
        scene = make_scene(image, np.random.default_rng(scale), cfg)
        assert all(np.array_equal(f, scene.frames[0]) for f in scene.frames[1:])  # the reference's pixels, exactly
    integer = build_testset(photo_dir, gains=[1], size=32, motion="integer", downsample=4, progress=False)
    assert np.all(integer.shifts == np.round(integer.shifts)) and np.abs(integer.shifts).max() <= 2
    assert np.abs(integer.shifts).max() >= 1  # they do move

    cfg, _ = motion_geometry("integer", frames=8, size=32, downsample=4)
    image = np.random.default_rng(0).random((300, 300)).astype(np.float32)
    scene = make_scene(image, np.random.default_rng(1), cfg)
    for frame, (dy, dx) in zip(scene.frames[1:], scene.shifts[1:].astype(int)):
        # frame i at p shows the reference at p + shift: the overlap is bit-identical
        ref = scene.frames[0]
        ys, xs = slice(max(0, -dy), 32 - max(0, dy)), slice(max(0, -dx), 32 - max(0, dx))
        ys2, xs2 = slice(max(0, dy), 32 + min(0, dy)), slice(max(0, dx), 32 + min(0, dx))
        assert np.array_equal(frame[ys, xs], ref[ys2, xs2])
    sub = build_testset(photo_dir, gains=[1], size=32, motion="subpixel", progress=False)
    assert np.abs(sub.shifts).max() <= 2 and sub.meta["motion"] == "subpixel" and sub.meta["large_rate"] == 0


def test_exposure_clipping_and_base_iso(photo_dir, tmp_path):
    ts = build_testset(photo_dir, gains=["base", 4], size=32, white_level=(3.0, 3.0), clip_white=True,
                       clip_black=True, downsample=1, progress=False)
    assert ts.gains == [0, 4] and ts.meta["clip"] == ["white", "black"] and ts.meta["white_level"] == [3.0, 3.0]
    assert np.all(ts.white_level == 1.0) and ts.clean.max() <= 1.0
    assert ts.noisy.max() == 1.0 and ts.noisy.min() == 0.0
    saturated = float((ts.noisy == 1.0).mean())
    assert 0.01 < saturated < 0.95  # the bright parts of a 3x over-exposed photo clip, the rest does not
    base = ts.rows(0)
    noise = ts.noisy[base, 0] - ts.clean[base]
    unclipped = (ts.clean[base] > 0.05) & (ts.clean[base] < 0.5)
    expected = np.sqrt(0.002**2 + 0.0005 * ts.clean[base][unclipped])
    assert np.std(noise[unclipped] / expected) == pytest.approx(1.0, abs=0.05)
    # the same options rebuild the same file, and the CLI spells them
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for out in (a, b):
        assert synth(photo_dir, out, "--motion", "static", "--clip", "white", "--white-level", "1,4", "--gains",
                     "base", "1", "--downsample", "2") == 0
    assert sha(a) == sha(b)
    assert synth(photo_dir, tmp_path / "c.npz", "--white-level", "0") == 2
