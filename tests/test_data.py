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


def test_low_noise_share_draws_bright_quiet_bursts_from_its_own_ranges(photo_dir):
    from burstkpn.noise import NoiseRange

    quiet = NoiseRange((-2.8, -2.6), (-3.4, -3.2))
    cfg = TrainingDataConfig(burst=BurstConfig(size=32), noise=NoiseRange((-2.0, -1.5), (-2.5, -2.0)),
                             low_noise_fraction=0.5, low_noise=quiet, low_noise_white_level=(0.8, 1.0))
    items = [BurstDataset(photo_dir, cfg, progress=False)[k] for k in range(120)]
    reads = np.log10([float(it["sigma_read"]) for it in items])
    shots = np.log10([float(it["sigma_shot"]) for it in items])
    whites = np.array([float(it["exposure"]) for it in items])
    low = (reads >= -2.8) & (reads <= -2.6) & (shots >= -3.4) & (shots <= -3.2)
    assert 0.35 < low.mean() < 0.65 and np.all(low | (reads >= -2.0))  # about half; the rest from the other range
    assert whites[low].min() >= 0.8 and whites[~low].min() < 0.5  # quiet ones bright, the rest the paper's range
    for it in [it for it, q in zip(items, low) if q][:10]:  # the noise really is the drawn low level
        resid = it["burst"][0] - it["clean"]
        expected = float(it["sigma_read"]) ** 2 + float(it["sigma_shot"]) * float(it["clean"].mean())
        assert float(resid.var()) == pytest.approx(expected, rel=0.35)
    with pytest.raises(BurstKPNError, match="low_noise"):
        TrainingDataConfig(low_noise_fraction=1.5)


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


@pytest.mark.parametrize("clip", ["black", "white"])
def test_clipped_mean_target_is_the_scene_plus_the_clips_bias(photo_dir, clip):
    """``clipped_target="clipped-mean"``: a clipped burst's target is what the clipping sensor records on average
    (the same bursts as the "scene" stream, only the target differs); unclipped bursts keep the scene."""
    from burstkpn.noise import NoiseLevel, NoiseRange, clipped_mean

    shares = {"black_clip_fraction": 1.0} if clip == "black" else {"saturated_fraction": 1.0, "saturated_white_level": (4.0, 6.0)}
    noise = NoiseRange((-1.6, -1.5), (-2.0, -1.9))  # about the paper's gain 4: a large clip bias
    scene = TrainingDataConfig(burst=BurstConfig(size=32), noise=noise, white_level=(0.1, 0.2), **shares)
    mean = TrainingDataConfig(burst=BurstConfig(size=32), noise=noise, white_level=(0.1, 0.2),
                              clipped_target="clipped-mean", **shares)
    a, b = BurstDataset(photo_dir, scene, seed=3, progress=False)[7], BurstDataset(photo_dir, mean, seed=3, progress=False)[7]
    assert torch.equal(a["burst"], b["burst"]) and float(a["clipped"]) == 1.0
    level = NoiseLevel(float(a["sigma_read"]), float(a["sigma_shot"]))
    low, high = (0.0, None) if clip == "black" else (None, 1.0)
    target, got = a["clean"].numpy(), b["clean"].numpy()
    below = target < 1.0  # where the scene target is the scene itself (above white it was cut to 1)
    np.testing.assert_allclose(got[below], clipped_mean(target[below], level, low, high), rtol=1e-5, atol=1e-7)
    if clip == "black":
        assert float((got - target).min()) > 0  # the cut negative draws lift every pixel's mean
    else:
        assert (~below).any() and (got[~below] <= 1.0).all() and (got[~below] >= clipped_mean(np.ones(1), level, low, high)[0] - 1e-6).all()
        assert float((target - got)[below].max()) > 0.01  # just under white the cut bright draws lower the mean
    unclipped = BurstDataset(photo_dir, TrainingDataConfig(burst=BurstConfig(size=32), clipped_target="clipped-mean"),
                             seed=3, progress=False)[7]
    assert torch.equal(unclipped["clean"], BurstDataset(photo_dir, SMALL, seed=3, progress=False)[7]["clean"])
    with pytest.raises(BurstKPNError, match="clipped_target"):
        TrainingDataConfig(clipped_target="mean")
