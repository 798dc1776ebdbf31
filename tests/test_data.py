import numpy as np
import pytest
import torch

from burstkpn.data import BurstDataset, TrainingDataConfig
from burstkpn.errors import BurstKPNError
from burstkpn.synth import BurstConfig

SMALL = TrainingDataConfig(burst=BurstConfig(size=32))


def test_dataset_yields_deterministic_bursts(photo_dir):
    ds = BurstDataset(photo_dir, SMALL, seed=5, progress=False)
    a, b, c = ds[10], ds[10], ds[11]
    assert a["burst"].shape == (8, 32, 32) and a["clean"].shape == (32, 32) and a["shifts"].shape == (8, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["burst"], c["burst"])
    assert not torch.equal(ds[10]["burst"], BurstDataset(photo_dir, SMALL, seed=6, progress=False)[10]["burst"])


def test_dataset_statistics(photo_dir):
    ds = BurstDataset(photo_dir, SMALL, progress=False)
    items = [ds[k] for k in range(200)]
    whites = np.array([float(it["white_level"]) for it in items])
    reads = np.log10([float(it["sigma_read"]) for it in items])
    assert whites.min() >= 0.1 and whites.max() <= 1.0
    assert reads.min() >= -3 and reads.max() <= -1.5
    for it in items[:20]:  # the clean target is the reference frame before noise, scaled by white level
        assert float(it["clean"].max()) <= float(it["white_level"]) + 1e-6
        resid = it["burst"][0] - it["clean"]
        expected = float(it["sigma_read"]) ** 2 + float(it["sigma_shot"]) * float(it["clean"].mean())
        assert float(resid.var()) == pytest.approx(expected, rel=0.35)
    batch = torch.utils.data.default_collate(items[:4])
    assert batch["burst"].shape == (4, 8, 32, 32) and batch["sigma_read"].shape == (4,)


def test_dataset_skips_unreadable_and_small_files_with_a_warning(photo_dir, tmp_path, capsys):
    (tmp_path / "good.png").write_bytes((photo_dir / "camera.png").read_bytes())
    (tmp_path / "photo_broken_7.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    import imageio.v3 as iio
    iio.imwrite(tmp_path / "photo_tiny_7.png", np.zeros((20, 20), np.uint8))
    ds = BurstDataset(tmp_path, SMALL, progress=False)
    assert [p.name for p in ds.paths] == ["good.png"]
    err = capsys.readouterr().err
    assert "photo_broken_7.jpg" in err and "photo_tiny_7.png" in err


def test_dataset_with_no_usable_image_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(BurstKPNError, match="no usable image"):
        BurstDataset(tmp_path, SMALL, progress=False)
