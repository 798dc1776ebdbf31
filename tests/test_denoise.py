"""`burstkpn denoise` end to end on tiny bursts, with a tiny KPN saved through `burstkpn.weights`.

The KPN is untrained with ``init="mean"``: it outputs the mean of the pre-aligned frames, so these
tests check the real pipeline (loading, levels, noise, alignment, tiles, model, writers), not
learned denoising.
"""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

import burstkpn.weights
from burstkpn.camera import linear_to_srgb8, srgb8_to_linear
from burstkpn.cli import main
from burstkpn.commands.denoise import parse_noise
from burstkpn.errors import BurstKPNError
from burstkpn.metrics import psnr
from burstkpn.noise import NoiseLevel, add_noise
from burstkpn.weights import default_weights
from rawburst import clean_rgb, write_raw_burst


def test_raw_dng_burst_full_mode_beats_reference_and_round_trips(tmp_path, tiny_weights, capsys):
    pytest.importorskip("rawpy")
    from burstkpn.io.raw import read_raw

    (tmp_path / "in").mkdir()
    clean, paths = write_raw_burst(tmp_path / "in", frames=4, size=96, pattern="GRBG", black=(64, 66, 64, 66),
                                   white=4095, noise=NoiseLevel(0.02, 0.01))
    rc = main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out" / "clean"), "--model", str(tiny_weights),
               "--tile", "64", "--quiet"])
    assert rc == 0
    assert "NoiseProfile" in capsys.readouterr().out
    out = read_raw(tmp_path / "out" / "clean.dng")
    ref = read_raw(paths[0])
    assert out.pattern == "GRBG" and out.black_levels == (64, 66, 64, 66) and out.white_level == 4095
    assert out.noise is None and ref.noise is not None  # the denoised mosaic does not claim the input's noise
    before, after = psnr(ref.mosaic, clean, 1.0), psnr(out.mosaic, clean, 1.0)
    assert after > before + 3, (before, after)
    assert (tmp_path / "out" / "clean.preview.png").is_file() and (tmp_path / "out" / "clean.json").is_file()
    # bf16 autocast by default only where the hardware has bf16 units (emulated it is ~20x slower)
    from burstkpn.hardware import native_bf16

    assert json.loads((tmp_path / "out" / "clean.json").read_text())["bf16"] == native_bf16("cpu")


def test_raw_half_mode_writes_half_resolution_tiff(tmp_path, tiny_weights, capsys):
    pytest.importorskip("rawpy")
    from burstkpn.io.raw import bayer_to_gray, read_raw

    (tmp_path / "in").mkdir()
    clean, paths = write_raw_burst(tmp_path / "in", frames=4, size=64, profile=False)
    rc = main(["denoise", *map(str, paths), "-o", str(tmp_path / "gray.tif"), "--model", str(tiny_weights),
               "--raw-mode", "half", "--quiet"])
    assert rc == 0 and "estimated from the burst" in capsys.readouterr().out
    gray = tifffile.imread(tmp_path / "gray.tif").astype(np.float32) / 65535
    assert gray.shape == (32, 32)
    truth = bayer_to_gray(clean)
    assert psnr(gray, truth, 1.0) > psnr(bayer_to_gray(read_raw(paths[0]).mosaic), truth, 1.0) + 3


def test_8bit_colour_folder_gives_srgb_png(tmp_path, tiny_weights):
    rng = np.random.default_rng(0)
    clean = clean_rgb(64)[8:72, 8:72]
    (tmp_path / "in").mkdir()
    for i in range(4):  # frames shifted by whole pixels, noise in linear space, saved as 8-bit
        frame = np.roll(clean, (i % 2, i // 2), axis=(0, 1))
        iio.imwrite(tmp_path / "in" / f"{i}.png", linear_to_srgb8(add_noise(frame, NoiseLevel(0.02, 0.02), rng)))
    rc = main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out.png"), "--model", str(tiny_weights),
               "--noise", "0.02,0.02", "--tile", "32", "--quiet"])
    assert rc == 0
    out = srgb8_to_linear(iio.imread(tmp_path / "out.png"))
    ref = srgb8_to_linear(iio.imread(tmp_path / "in" / "0.png"))
    assert out.shape == (64, 64, 3)
    crop = (slice(4, -4), slice(4, -4))  # rolled borders
    assert psnr(out[crop], clean[crop], 1.0) > psnr(ref[crop], clean[crop], 1.0) + 3


def test_16bit_tiff_gives_16bit_tiff_and_preview(tmp_path, tiny_weights):
    rng = np.random.default_rng(1)
    clean = clean_rgb(48)[8:56, 8:56].mean(axis=-1)
    (tmp_path / "in").mkdir()
    for i in range(5):  # one frame more than the model takes: the reference and the next 3 are used
        tifffile.imwrite(tmp_path / "in" / f"{i}.tif", np.round(np.clip(add_noise(clean, NoiseLevel(0.03, 0.01), rng), 0, 1) * 65535).astype(np.uint16))
    rc = main(["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "res"), "--model", str(tiny_weights), "--no-align", "--quiet"])
    assert rc == 0
    out = tifffile.imread(tmp_path / "res.tif")
    assert out.dtype == np.uint16 and out.shape == (48, 48)
    ref = tifffile.imread(tmp_path / "in" / "0.tif") / 65535
    assert psnr(out / 65535, clean, 1.0) > psnr(ref, clean, 1.0) + 3
    assert iio.imread(tmp_path / "res.preview.png").dtype == np.uint8


@pytest.mark.parametrize("case,match", [
    ("single", "the model takes 4 frames, the burst has 1"), ("sizes", "must match"), ("noise", "--noise must be"),
    ("short", "the model takes 4 frames"), ("weights", "not a readable safetensors"),
])
def test_bad_input_one_line_error_and_no_output(tmp_path, tiny_weights, capsys, case, match):
    (tmp_path / "in").mkdir()
    n = {"single": 1, "short": 3}.get(case, 4)
    for i in range(n):
        iio.imwrite(tmp_path / "in" / f"{i}.png", np.zeros((16, 16 + (case == "sizes" and i == 2)), np.uint8))
    model = tiny_weights
    if case == "weights":
        model = tmp_path / "bad.safetensors"
        model.write_bytes(b"junk")
    args = ["denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out" / "x.png"), "--model", str(model), "--quiet"]
    rc = main(args + (["--noise", "0.1"] if case == "noise" else []))
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_default_weights_lookup_and_missing_model_message(tmp_path, capsys, monkeypatch):
    found = default_weights()
    assert found is None or found.name == "kpn-refine.safetensors"
    if found is not None:  # a short burst gets the shipped variable-length model, a long one the default
        assert default_weights(frames=5).name == "kpn-variable-refine.safetensors"
        assert default_weights(frames=12) == default_weights(frames=8) == found
    # An install without shipped weights (e.g. a bare source tree) must say so in one line.
    monkeypatch.setattr(burstkpn.weights, "default_weights", lambda frames=None, layout=None: None)
    _gray_burst(tmp_path / "burst", 8)
    assert main(["denoise", str(tmp_path / "burst"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no default model is shipped" in capsys.readouterr().err
    assert parse_noise("auto") is None and parse_noise("0.01,0.002") == NoiseLevel(0.01, 0.002)
    with pytest.raises(BurstKPNError):
        parse_noise("-1,0")


def _gray_burst(folder, n, size=24, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    clean = np.linspace(0.1, 0.8, size * size, dtype=np.float32).reshape(size, size)
    for i in range(n):
        iio.imwrite(folder / f"frame{i}.png", linear_to_srgb8(np.clip(add_noise(clean, NoiseLevel(0.02, 0.01), rng), 0, 1)))
    return clean


def test_out_folder_receives_a_file_named_after_the_burst(tmp_path, tiny_weights, capsys):
    _gray_burst(tmp_path / "night_shot", 4)
    (tmp_path / "results").mkdir()
    assert main(["denoise", str(tmp_path / "night_shot"), "-o", str(tmp_path / "results"), "--model", str(tiny_weights),
                 "--quiet"]) == 0
    assert (tmp_path / "results" / "night_shot.png").is_file()
    # a folder that does not exist yet, written with a trailing slash, is created and used the same way
    assert main(["denoise", str(tmp_path / "night_shot"), "-o", str(tmp_path / "new") + "/", "--model", str(tiny_weights),
                 "--quiet"]) == 0
    assert (tmp_path / "new" / "night_shot.png").is_file() and not (tmp_path / "new.png").exists()


def test_a_changed_suffix_is_announced(tmp_path, tiny_weights, capsys):
    _gray_burst(tmp_path / "b", 4)
    assert main(["denoise", str(tmp_path / "b"), "-o", str(tmp_path / "out" / "x.jpg"), "--model", str(tiny_weights),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "x.png").is_file() and not (tmp_path / "out" / "x.jpg").exists()
    assert "written as .png" in out and "x.png" in out and "(not .jpg)" in out


def test_a_one_frame_burst_uses_the_variable_length_model(tmp_path, capsys):
    from burstkpn.weights import SHORT_BURST_MODEL, shipped_weights

    if SHORT_BURST_MODEL not in {p.stem for p in shipped_weights()}:
        pytest.skip(f"no shipped {SHORT_BURST_MODEL}")
    clean = _gray_burst(tmp_path / "one", 1, size=32)
    assert main(["denoise", str(tmp_path / "one"), "-o", str(tmp_path / "one.png"), "--noise", "0.02,0.01", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert SHORT_BURST_MODEL in out and "1 frame(s)" in out
    result = srgb8_to_linear(iio.imread(tmp_path / "one.png"))
    reference = srgb8_to_linear(iio.imread(tmp_path / "one" / "frame0.png"))
    assert psnr(result, clean, 1.0) > psnr(reference, clean, 1.0) + 1  # spatial denoising of the one frame


def test_portrait_phone_jpegs_come_out_portrait_with_their_icc_profile_and_exif(tmp_path, capsys):
    """Issue 21: phone JPEGs stored landscape with EXIF Orientation 6 are portrait photos. The denoised PNG is
    portrait (upright content) and carries the reference's ICC profile (iCCP) and EXIF (eXIf, Orientation 1)."""
    from PIL import Image, ImageCms

    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.weights import save_weights

    model = tmp_path / "portrait-tiny.safetensors"  # a mean-initialised 4-frame KPN, built here
    save_weights(build_model(ModelConfig(frames=4, kernel_size=3, widths=(8, 16), convs_per_level=1)), model)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° clockwise to display
    exif[271] = "PortraitPhone"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    stored = np.full((40, 56, 3), 60, np.uint8)  # landscape as stored: 56 wide, 40 high
    stored[:8] = 230  # the stored top: the right edge once upright
    rng = np.random.default_rng(5)
    (tmp_path / "portrait").mkdir()
    for i in range(4):
        noisy = np.clip(stored + rng.normal(0, 4, stored.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "portrait" / f"IMG_{i:04d}.jpg", exif=exif, icc_profile=icc, quality=95)
    assert main(["denoise", str(tmp_path / "portrait"), "-o", str(tmp_path / "out.png"), "--model", str(model),
                 "--quiet"]) == 0
    with Image.open(tmp_path / "out.png") as out:
        out.load()
        pixels = np.asarray(out)
        assert out.size == (40, 56) and pixels.shape == (56, 40, 3)  # portrait: 40 wide, 56 high
        assert pixels[:, -6:].mean() > 200 and pixels[:, :30].mean() < 90  # bright on the right, as displayed
        assert out.info.get("icc_profile") == icc
        kept = out.getexif()
        assert kept.get(274, 1) == 1 and kept[271] == "PortraitPhone"
        assert kept.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"


def test_colour_and_raw_bursts_default_to_a_shipped_joint_model(tmp_path, monkeypatch):
    """With a joint model shipped (here a small untrained one, as kpn-rgb), a colour burst takes it by default,
    a grayscale burst the grayscale default, and ``model="kpn"`` keeps the per-channel path."""
    from burstkpn.models import ModelConfig, build_model
    from burstkpn.models.planar import planar_from_gray
    from burstkpn.pipeline import denoise_burst
    from burstkpn.weights import save_weights, shipped_weights

    torch.manual_seed(0)
    gray = build_model(ModelConfig(kind="kpn", widths=(8, 16), frames=8)).eval()
    joint = tmp_path / "kpn-rgb.safetensors"
    save_weights(planar_from_gray(gray, 3), joint)
    real = list(shipped_weights())
    monkeypatch.setattr(burstkpn.weights, "shipped_weights", lambda: real + [joint])
    assert burstkpn.weights.default_weights(8, "colour") == joint
    assert burstkpn.weights.default_weights(8, "raw") != joint
    rng = np.random.default_rng(0)
    colour = np.clip(0.4 + 0.05 * rng.standard_normal((8, 32, 32, 3)), 0, 1).astype(np.float32)
    assert denoise_burst(colour, noise=(0.01, 0.005)).model == "kpn-rgb"
    if real:
        assert denoise_burst(colour, noise=(0.01, 0.005), model="kpn").model == "kpn"
        assert denoise_burst(colour[..., 0], noise=(0.01, 0.005)).model == "kpn-refine"
