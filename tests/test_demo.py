import json

from burstkpn.cli import main


def test_demo_writes_images_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "64"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for name in ("clean", "reference", "average", "frame_07"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert 10 < summary["metrics"]["reference"]["psnr"] < 50
    assert "sRGB" in summary["metrics_caption"]
    assert "reference" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--gain", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown gain" in err


# Measured when the demo became colour (`burstkpn demo`: 256x256 colour astronaut, gain 2, seed 0, shipped kpn):
# kpn 34.24 dB, average 18.87, aligned-average 30.54, hdrplus 32.58 (PSNR over R, G, B). The guards keep half
# of each margin. The default since, kpn-refine: 34.53; with its non-local last stage 34.58. (`--gray --size 96`: kpn 29.70,
# kpn-refine 29.96, now 29.91, hdrplus 28.26.)
COLOUR_MARGINS = {"average": 7.7, "aligned-average": 1.85, "hdrplus": 0.83}


def test_default_demo_is_a_256px_colour_burst_the_model_denoises_best(tmp_path, capsys):
    """What CI runs (`burstkpn demo -o demo-out`): colour PNGs large enough to see, metrics over all channels,
    and the shipped model ahead of the classical methods by a margin."""
    import imageio.v3 as iio
    import pytest

    from burstkpn.weights import DEFAULT_MODEL, default_weights

    if default_weights() is None:
        pytest.skip("this install ships no trained model")
    out = tmp_path / "demo-out"
    assert main(["demo", "-o", str(out)]) == 0
    for name in ("clean", "reference", "hdrplus", DEFAULT_MODEL, "frame_00", "frame_07"):
        assert iio.imread(out / f"{name}.png").shape == (256, 256, 3), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["colour"] and summary["size"] == 256 and "R, G and B" in summary["metrics_caption"]
    psnr = {k: v["psnr"] for k, v in summary["metrics"].items()}
    for method, margin in COLOUR_MARGINS.items():
        assert psnr[DEFAULT_MODEL] > psnr[method] + margin, (method, psnr)
    assert "colour frames of 256x256" in capsys.readouterr().out


def test_colour_channels_share_one_geometry_and_gray_is_the_old_demo():
    """Each channel is cut by `make_scene` with the same draws: a photo whose channels are scaled copies of one
    another gives frames that are the same scaled copies (same crop, shifts and white level in every channel)."""
    import numpy as np

    from burstkpn.commands.demo import bundled_photo, colour_scene, fit_to
    from burstkpn.synth import BurstConfig, make_scene

    gray = bundled_photo("camera")
    cfg = BurstConfig(frames=4, size=64)
    photo, factor = fit_to(np.stack([gray, 0.5 * gray, 0.25 * gray], axis=-1), cfg)
    assert factor == 1.0
    scene, frames = colour_scene(photo, cfg, np.random.default_rng(7), 7)
    assert frames.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(frames[..., 1], 0.5 * frames[..., 0], rtol=1e-5)
    np.testing.assert_allclose(frames[..., 2], 0.25 * frames[..., 0], rtol=1e-5)
    alone = make_scene(gray, np.random.default_rng(7), cfg)  # channel 0 is exactly the gray recipe
    np.testing.assert_array_equal(frames[..., 0], alone.frames)
    assert np.array_equal(scene.shifts, alone.shifts) and scene.white_level == alone.white_level
    big, factor = fit_to(photo, BurstConfig(frames=4, size=256))  # a 512-px photo enlarged to the 1152-px window
    assert factor == 2.25 and big.shape == (1152, 1152, 3)
