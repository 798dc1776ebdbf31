"""Kernel inspection: contribution maps are the kernels' sums and explain the output, pixel choice
finds a misaligned region, the CLI writes valid PNGs/JSON/HTML, and (with the shipped model) what
the maps say about a frame that moved."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from burstkpn import inspect
from burstkpn.cli import main
from burstkpn.models.kpn import ModelConfig, build_model
from burstkpn.noise import NoiseLevel, add_noise, noise_level_for_gain
from burstkpn.weights import load_model, save_weights, shipped_weights

PNG = b"\x89PNG\r\n\x1a\n"


def test_contributions_are_kernel_sums_and_explain_a_flat_burst(random_weights):
    model = load_model(random_weights)
    levels = np.linspace(0.1, 0.8, 8, dtype=np.float32)  # frame i is the constant levels[i]
    frames = np.broadcast_to(levels[:, None, None], (8, 24, 24)).copy()
    ins = inspect.inspect_burst(model, frames, NoiseLevel(0.01, 0.001))
    assert ins.kernels.shape == (8, 3, 3, 24, 24) and ins.contributions.shape == (8, 24, 24)
    np.testing.assert_allclose(ins.contributions, ins.kernels.sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(ins.dominant, ins.contributions.argmax(axis=0))
    # away from the zero-padded border, output = Σ_i contribution_i · level_i
    inner = (slice(None), slice(1, -1), slice(1, -1))
    expected = (ins.contributions * levels[:, None, None])[inner].sum(axis=0)
    np.testing.assert_allclose(ins.output[inner[1:]], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ins.residual, ins.output - frames[0], atol=1e-6)


def test_choose_pixels_finds_the_misaligned_region_edge_and_flat_area(rng):
    clean = np.full((64, 64), 0.2, np.float32)
    clean[:, 40:] = 0.6  # a vertical edge at x = 40
    clean[8:24, 8:24] += np.linspace(0, 0.3, 16, dtype=np.float32)  # texture that frame 3 moves
    frames = np.repeat(clean[None], 8, axis=0)
    frames[3, 8:24, 8:24] = np.roll(clean, 6, axis=1)[8:24, 8:24]
    level = NoiseLevel(0.005, 0.0005)
    noisy = add_noise(frames, level, rng)
    noise_map = np.sqrt(level.sigma_read**2 + level.sigma_shot * noisy[0].clip(0))
    chosen = dict(inspect.choose_pixels(noisy, noise_map, margin=3))
    x, y = chosen["misaligned"]
    assert 6 <= x <= 26 and 6 <= y <= 26, chosen
    assert abs(chosen["edge"][0] - 40) <= 2, chosen
    fx, fy = chosen["flat"]
    assert not (6 <= fx <= 26 and 6 <= fy <= 26) and abs(fx - 40) > 4, chosen
    # a single-frame burst (the kpn-single ablation) has no misaligned spot, and the same edge
    single = dict(inspect.choose_pixels(noisy[:1], noise_map, margin=3))
    assert set(single) == {"edge", "flat"} and single["edge"] == chosen["edge"], single


def test_bad_pixels_crop_and_model_are_one_line_errors(random_weights, testset_path, tmp_path, capsys):
    base = ["inspect", str(testset_path), "--model", str(random_weights), "-o", str(tmp_path / "o")]
    for extra, words in ((["--pixels", "3;4"], "x,y pairs"), (["--pixels", "100,3"], "outside"),
                         (["--crop", "0,0,99,10"], "not inside"), (["--index", "99"], "out of range")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    dpn = tmp_path / "dpn.safetensors"
    save_weights(build_model(ModelConfig(kind="dpn", frames=8, widths=(8, 16), half_res_output=False)), dpn)
    assert main(["inspect", str(testset_path), "--model", str(dpn), "-o", str(tmp_path / "d")]) == 2
    assert "kernel prediction network" in capsys.readouterr().err


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG, path
    assert iio.imread(path).size > 0


def test_inspect_testset_writes_pngs_json_and_report(random_weights, testset_path, tmp_path):
    out = tmp_path / "out"
    assert main(["inspect", str(testset_path), "--index", "1", "--model", str(random_weights), "-o", str(out)]) == 0
    for name in ("kernels", "contributions", "dominant", "noise", "residual", "reference", "output"):
        _assert_png(out / f"{name}.png")
    summary = json.loads((out / "inspect.json").read_text())
    assert [p["label"] for p in summary["pixels"]] == ["edge", "flat", "misaligned"]
    assert len(summary["mean_contribution"]) == 8 and abs(sum(summary["dominant_share"]) - 1) < 1e-3
    assert set(summary["metrics"]) == {"reference", "average", "model"}
    assert "<table" in (out / "report.html").read_text()
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_inspect_image_folder_with_pixels_and_crop(random_weights, testset_path, tmp_path):
    from burstkpn.camera import linear_to_srgb8
    from burstkpn.testset import load_testset

    folder = tmp_path / "burst"
    folder.mkdir()
    for i, frame in enumerate(load_testset(testset_path).noisy[0]):
        iio.imwrite(folder / f"f{i}.png", linear_to_srgb8(frame.clip(0, 1)))
    out = tmp_path / "out"
    args = ["inspect", str(folder), "--model", str(random_weights), "-o", str(out), "--crop", "4,4,32,32",
            "--pixels", "5,5", "20,10", "--noise", "0.01,0.002"]
    assert main(args) == 0
    summary = json.loads((out / "inspect.json").read_text())
    assert summary["size"] == [32, 32] and [(p["x"], p["y"]) for p in summary["pixels"]] == [(5, 5), (20, 10)]
    assert summary["metrics"] == {}
    _assert_png(out / "kernels.png")


def _shipped(name: str = "kpn"):
    path = {p.stem: p for p in shipped_weights()}.get(name)
    if path is None:
        pytest.skip(f"no shipped model {name} (src/burstkpn/pretrained/{name}.safetensors); tiny models trained in a "
                    "test in under a minute learn to trust the reference, not to reject misaligned frames")
    return load_model(path)


def _locally_misaligned_burst(rng, moved: int = 3, shift: int = 12):
    """A 96x96 burst of the astronaut, gain 2, where frame ``moved`` shows other content in the central
    48x48 window (a local motion that global pre-alignment cannot undo); returns (noisy, level, window)."""
    from burstkpn.commands.demo import bundled_photo
    from burstkpn.synth import downsample_area

    photo = bundled_photo("astronaut")

    def crop(dy, dx):
        return downsample_area(photo[60 + dy : 60 + dy + 192, 150 + dx : 150 + dx + 192], 2)

    frames = np.stack([crop(0, 0)] + [crop(*rng.integers(-2, 3, 2)) for _ in range(7)])
    window = (slice(24, 72), slice(24, 72))
    frames[moved][window] = crop(2 * shift, -2 * shift)[window]
    level = noise_level_for_gain(2)
    return add_noise(frames, level, rng), level, window


def test_locally_misaligned_frame_gets_clearly_lower_contribution(rng):
    """kpn-local, the shipped model for moving subjects, hands a frame's weight to the others where that
    frame shows other content (its robustness gate; measured 0.42-0.44x the others' over 7 seeds). The
    default kpn, without a gate, gives that frame as much as the others (1.00-1.01x; kpn-cpu 1.37-1.39x)."""
    model = _shipped("kpn-local")
    noisy, level, window = _locally_misaligned_burst(rng)
    ins = inspect.inspect_burst(model, noisy, level)
    inside = ins.contributions[(slice(None), *window)].mean(axis=(1, 2))
    others = np.delete(inside, [0, 3])
    assert inside[3] < 0.5 * others.mean(), inside


@pytest.mark.parametrize("name", ["kpn", "kpn-local"])
def test_shipped_model_contributions_are_unaffected_outside_the_moved_region(rng, name):
    """The control for the test above: where frame 3 is aligned, it contributes like any other frame."""
    model = _shipped(name)
    noisy, level, window = _locally_misaligned_burst(rng)
    ins = inspect.inspect_burst(model, noisy, level)
    outside = np.ones(noisy.shape[1:], bool)
    outside[window] = False
    means = ins.contributions[:, outside].mean(axis=1)
    others = np.delete(means, [0, 3])
    assert others.min() - 0.02 < means[3] < others.max() + 0.02, means


@pytest.fixture(scope="module")
def plane_weights(tmp_path_factory):
    """A mean-initialised 4-frame KPN for the --plane tests (built here, so these tests need no shared fixture)."""
    path = tmp_path_factory.mktemp("plane") / "plane-tiny.safetensors"
    save_weights(build_model(ModelConfig(frames=4, kernel_size=3, widths=(8, 16), convs_per_level=1)), path)
    return path


def _seen_planes(monkeypatch):
    """Record the burst each inspect run hands the model (the plane it shows)."""
    seen = []
    original = inspect.inspect_burst

    def spy(model, frames, noise, plane=0):
        seen.append(np.array(frames))
        return original(model, frames, noise, plane=plane)

    monkeypatch.setattr(inspect, "inspect_burst", spy)
    return seen


def test_inspect_names_and_shows_each_colour_channel(plane_weights, tmp_path, capsys, monkeypatch):
    """Issue 21: inspect says which channel it shows (stdout, inspect.json, report.html); --plane R/G/B picks it."""
    from burstkpn.io.bursts import load_burst

    rng = np.random.default_rng(3)
    folder = tmp_path / "colour_burst"
    folder.mkdir()
    base = np.stack([np.full((32, 32), v) for v in (40, 200, 120)], axis=-1)  # R, G, B far apart
    for i in range(4):
        iio.imwrite(folder / f"c{i}.png", np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    linear = load_burst([folder]).frames
    seen = _seen_planes(monkeypatch)
    for plane, channel, words in ((None, 1, "green (G) channel"), ("R", 0, "red (R) channel"), ("b", 2, "blue (B) channel")):
        out = tmp_path / f"out_{plane}"
        extra = [] if plane is None else ["--plane", plane]
        assert main(["inspect", str(folder), "--model", str(plane_weights), "-o", str(out), "--no-align",
                     "--noise", "0.01,0.002", *extra]) == 0
        assert f"inspecting the {words} of a colour burst" in capsys.readouterr().out
        np.testing.assert_allclose(seen[-1][0], linear[0][..., channel], atol=1e-6)
        summary = json.loads((out / "inspect.json").read_text())
        assert summary["plane"] == "RGB"[channel] and words in summary["plane_description"]
        assert f"{words} of a colour burst" in (out / "report.html").read_text()
    for plane, words in (("Gr", "a colour burst has the channels R, G and B"), ("purple", "unknown plane")):
        assert main(["inspect", str(folder), "--model", str(plane_weights), "-o", str(tmp_path / "bad"), "--plane", plane]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "bad").exists()


def test_inspect_raw_shows_the_bayer_mean_or_one_named_cfa_plane(plane_weights, tmp_path, capsys, monkeypatch):
    pytest.importorskip("rawpy")
    from burstkpn.io.raw import bayer_planes, bayer_to_gray, read_raw
    from rawburst import write_raw_burst

    (tmp_path / "raw").mkdir()
    _, paths = write_raw_burst(tmp_path / "raw", frames=4, size=48, pattern="GRBG")
    mosaic = read_raw(paths[0]).mosaic
    seen = _seen_planes(monkeypatch)
    cases = ((None, bayer_to_gray(mosaic), "mean", "2x2 Bayer mean plane"),
             ("R", bayer_planes(mosaic)[1], "R", "R plane (top-right of the GRBG 2x2 CFA block)"),
             ("gb", bayer_planes(mosaic)[3], "Gb", "Gb plane (bottom-right of the GRBG"),
             ("TL", bayer_planes(mosaic)[0], "Gr", "Gr plane (top-left of the GRBG"))
    for plane, expected, name, words in cases:
        out = tmp_path / f"out_{plane}"
        extra = [] if plane is None else ["--plane", plane]
        assert main(["inspect", str(tmp_path / "raw"), "--model", str(plane_weights), "-o", str(out), "--no-align", *extra]) == 0
        assert f"inspecting the {words}" in capsys.readouterr().out
        # as denoise feeds the model: values cut at the clip point below black (raw 0) filled in below it
        cut = expected <= expected.min() + 1e-4
        np.testing.assert_allclose(seen[-1][0][~cut], expected[~cut], atol=1e-6)
        assert (seen[-1][0][cut] <= expected[cut] + 1e-6).all()
        summary = json.loads((out / "inspect.json").read_text())
        assert summary["plane"] == name and summary["plane_description"].endswith("of a raw burst")
        assert words in (out / "report.html").read_text()
    assert main(["inspect", str(tmp_path / "raw"), "--model", str(plane_weights), "-o", str(tmp_path / "bad"), "--plane", "G"]) == 2
    assert "a raw burst (GRBG) has the planes mean, R, Gr, Gb, B" in capsys.readouterr().err


@pytest.mark.parametrize("blends", [("mean_blend",), ("agreement_blend",), ("mean_blend", "agreement_blend")])
def test_contributions_count_the_blend_toward_the_mean(blends):
    """A model with mean_blend (or agreement_blend, or both): each frame's effective weight is (1 - b)·its kernel
    sum + b/N, so with the blend forced to 1 every frame contributes 1/N whatever the kernels, and the output
    is the frames' mean; half of each blend makes b = 1 - (1/2)(1/2) = 3/4. The blend has its own picture."""
    import torch

    from burstkpn.inspect import inspect_burst
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.viz import inspection_figures

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 8), frames=4, **dict.fromkeys(blends, True)))
    frames = np.random.default_rng(0).random((4, 24, 24)).astype(np.float32)
    for level in (1.0, 0.5):
        with torch.no_grad():
            head = model.unet.head
            kernels = 4 * 9 if "mean_blend" in blends else head.bias.numel()
            head.bias[:kernels].add_(0.05 * torch.randn_like(head.bias[:kernels]))  # kernels away from the mean
            if "mean_blend" in blends:
                head.bias[-1] = level
            if "agreement_blend" in blends:
                model.agree.mlp[-1].bias.fill_(level)
        ins = inspect_burst(model, frames, NoiseLevel(0.01, 0.001))
        expected = 1 - (1 - level) ** len(blends)
        assert ins.blend is not None and np.allclose(ins.blend, expected, atol=1e-6), (level, ins.blend.mean())
        if level == 1.0:
            assert np.allclose(ins.contributions, 0.25, atol=1e-6)
            np.testing.assert_allclose(ins.output, frames.mean(axis=0), atol=1e-5)
    assert "blend.png" in inspection_figures(ins, [("a pixel", (3, 3))])


def test_inspect_shows_the_noise_gain_the_kernels_were_told():
    """A model with a noise gain (`ModelConfig.noise_gain`, set by hand to g = 2.5 everywhere): the inspection carries
    that factor, it has its own picture, and the kernels shown are those of the network told 2.5x the noise."""
    import torch

    from burstkpn.inspect import inspect_burst
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.viz import inspection_figures

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 8), frames=4, noise_gain=True)).eval()
    with torch.no_grad():
        model.unet.head.weight.normal_(0, 0.05)
        model.noise_gain.mlp[-1].bias.fill_(float(np.log(2.5)))
    frames = np.random.default_rng(0).random((4, 24, 24)).astype(np.float32)
    ins = inspect_burst(model, frames, NoiseLevel(0.01, 0.001))
    assert ins.noise_gain is not None and np.allclose(ins.noise_gain, 2.5, atol=1e-5)
    model.noise_gain = None
    told = inspect_burst(model, frames, NoiseLevel(0.025, 0.001 * 2.5**2))  # the same noise map, 2.5x
    np.testing.assert_allclose(ins.kernels, told.kernels, atol=1e-5)
    assert told.noise_gain is None
    assert "noise_gain.png" in inspection_figures(ins, [("a pixel", (3, 3))])


def test_inspect_shows_the_strength_of_the_last_spatial_stage():
    """A model with a last spatial stage (`ModelConfig.refine`, its strength set by hand to s = 1.5·tanh(0.5)): the
    inspection carries s, it has its own picture, the output is the refined one and the kernels those of the merge."""
    import torch

    from burstkpn.inspect import inspect_burst
    from burstkpn.models.kpn import ModelConfig, build_model
    from burstkpn.viz import inspection_figures

    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(4, 8), frames=4, kernel_size=3, refine=3)).eval()
    with torch.no_grad():
        model.unet.head.weight.normal_(0, 0.05)
        model.refine.net[-1].bias[-1] = 0.5
    frames = np.random.default_rng(0).random((4, 24, 24)).astype(np.float32)
    ins = inspect_burst(model, frames, NoiseLevel(0.01, 0.001))
    assert ins.refine is not None and np.allclose(ins.refine, 1.5 * np.tanh(0.5), atol=1e-6)
    stage = model.refine
    model.refine = None
    plain = inspect_burst(model, frames, NoiseLevel(0.01, 0.001))
    np.testing.assert_allclose(ins.kernels, plain.kernels, atol=1e-6)
    assert plain.refine is None and np.abs(ins.output - plain.output).max() > 1e-3
    model.refine = stage
    assert "refine.png" in inspection_figures(ins, [("a pixel", (3, 3))])


def test_inspect_raw_with_a_joint_model_shows_the_named_plane_as_denoise_makes_it(plane_weights, tmp_path, capsys,
                                                                                  monkeypatch):
    """A joint 4-plane model on a GRBG burst: inspect flips it to RGGB as denoise does, inspects the named CFA
    plane and flips the result back: the reference frame it shows is that plane of the mosaic, and its output
    is that plane of `denoise_burst`'s output (wrong plane index or a missing flip fails)."""
    pytest.importorskip("rawpy")
    from burstkpn.io.raw import bayer_planes, read_raw
    from burstkpn.models.planar import planar_from_gray
    from burstkpn.pipeline import denoise_burst
    from burstkpn.weights import load_model
    from rawburst import write_raw_burst

    joint = tmp_path / "joint.safetensors"
    gray = load_model(plane_weights)
    torch.manual_seed(1)
    with torch.no_grad():  # not mean-initialised: kernels that differ per pixel, so a flip shows
        for p in gray.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_weights(planar_from_gray(gray, 4), joint)
    (tmp_path / "raw").mkdir()
    _, paths = write_raw_burst(tmp_path / "raw", frames=4, size=48, pattern="GRBG")
    mosaic = read_raw(paths[0]).mosaic
    shown = []
    original = inspect.flip_inspection
    monkeypatch.setattr(inspect, "flip_inspection", lambda ins, axes: shown.append(original(ins, axes)) or shown[-1])
    # inspect shows the network's own output on the frames denoise gives it (cut values filled in), in float32
    # (denoise autocasts to bf16 where the CPU has it natively); this burst does not reach white, where denoise
    # would declip the output after the network
    made = denoise_burst(paths, model=joint, align=False, bf16=False)
    assert made.imputed_black is not None and made.declipped == (None, None)
    expected = bayer_planes(made.image)
    for plane, k in (("R", 1), ("Gb", 3)):
        out = tmp_path / f"out_{plane}"
        assert main(["inspect", str(tmp_path / "raw"), "--model", str(joint), "-o", str(out), "--no-align",
                     "--plane", plane]) == 0
        assert "sees all 4 planes" in capsys.readouterr().out
        given = bayer_planes(mosaic)[k]
        cut = given <= given.min() + 1e-4  # filled in below the clip point, as denoise does
        np.testing.assert_allclose(shown[-1].frames[0][~cut], given[~cut], atol=1e-6)
        np.testing.assert_allclose(shown[-1].output, expected[k], atol=1e-4)
        assert json.loads((out / "inspect.json").read_text())["plane"] == plane
