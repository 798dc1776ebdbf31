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
