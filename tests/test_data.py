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


@pytest.mark.parametrize("colour", [None, "bayer"])
def test_impute_black_gives_the_model_filled_in_frames_and_the_scene_as_target(photo_dir, colour):
    """``impute_black``: a black-clipped burst reaches the model as `denoise` hands it over, its cut values filled
    in (`noise.impute_black` at the burst's own noise level), and its target is the scene, not the clipped mean;
    the rest of the stream is unchanged."""
    from burstkpn.data import ColourBurstDataset
    from burstkpn.noise import NoiseLevel, NoiseRange, impute_black

    noise = NoiseRange((-1.6, -1.5), (-2.0, -1.9))
    common = dict(burst=BurstConfig(size=32), noise=noise, white_level=(0.1, 0.2), black_clip_fraction=1.0,
                  clipped_target="clipped-mean")

    def item(**extra):
        cfg = TrainingDataConfig(**{**common, **extra})
        data = BurstDataset(photo_dir, cfg, seed=3, progress=False) if colour is None else \
            ColourBurstDataset(photo_dir, cfg, seed=3, colour=colour, progress=False)
        return data[7]

    cut, filled, scene = item(), item(impute_black=True), item(clipped_target="scene")
    level = NoiseLevel(float(cut["sigma_read"]), float(cut["sigma_shot"]))
    assert float((cut["burst"] == 0).float().mean()) > 0.05  # the burst was cut at 0
    np.testing.assert_allclose(filled["burst"].numpy(), impute_black(cut["burst"].numpy(), level), atol=1e-7)
    assert float(filled["burst"].min()) < 0 and not torch.equal(filled["burst"], cut["burst"])
    assert torch.equal(filled["clean"], scene["clean"]) and not torch.equal(filled["clean"], cut["clean"])
    plain = TrainingDataConfig(burst=BurstConfig(size=32))  # nothing cut: the flag changes nothing
    for k in (0, 5):
        a = BurstDataset(photo_dir, plain, seed=3, progress=False)[k]
        b = BurstDataset(photo_dir, TrainingDataConfig(burst=BurstConfig(size=32), impute_black=True), seed=3, progress=False)[k]
        assert all(torch.equal(a[key], b[key]) for key in a)


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


@pytest.mark.parametrize("colour", [None, "bayer"])
def test_tile_align_share_hands_the_model_tile_aligned_frames(photo_dir, colour):
    """``tile_align_fraction``: that share of bursts reaches the model HDR+ tile-aligned, as `denoise` hands real
    bursts over (after the black imputation; one alignment for all planes of a colour burst), with the same target;
    whole-pixel shifts are undone, so the frames agree with the reference far better; a share of 0 draws nothing."""
    from burstkpn.align import tile_align
    from burstkpn.data import ColourBurstDataset

    common = dict(burst=BurstConfig(size=48), white_level=(0.5, 1.0), integer_fraction=1.0, integer_shift=3)

    def item(**extra):
        cfg = TrainingDataConfig(**{**common, **extra})
        data = BurstDataset(photo_dir, cfg, seed=4, progress=False) if colour is None else \
            ColourBurstDataset(photo_dir, cfg, seed=4, colour=colour, progress=False)
        return data[2]

    given, aligned = item(), item(tile_align_fraction=1.0)
    np.testing.assert_array_equal(aligned["burst"].numpy(), tile_align(given["burst"].numpy()))
    assert torch.equal(aligned["clean"], given["clean"]) and torch.equal(aligned["sigma_read"], given["sigma_read"])
    assert float(given["shifts"].abs().max()) >= 1  # some frame was moved by whole pixels

    def mismatch(b):  # mean |frame - reference| inside a margin the shifts cannot reach
        b = b.numpy()[..., 4:-4, 4:-4]
        return float(np.abs(b[..., 1:, :, :] - b[..., :1, :, :]).mean())

    # (a Bayer plane moves by half the mosaic's whole pixels: tile alignment undoes only its whole-pixel part)
    assert mismatch(aligned["burst"]) < (0.7 if colour is None else 0.9) * mismatch(given["burst"])
    plain = item(tile_align_fraction=0.0)  # the default: the stream as it was
    assert all(torch.equal(plain[key], given[key]) for key in plain)
