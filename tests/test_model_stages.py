"""The model's optional stages: the coarse spatial stage, mismatch inputs, growing a model by them,
and the bf16 hardware switch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from burstkpn.errors import BurstKPNError
from burstkpn.hardware import native_bf16
from burstkpn.models import ModelConfig, build_model, predict
from burstkpn.models.kpn import can_grow, grow_state, mismatch_maps

TINY = {"widths": (4, 8), "convs_per_level": 1, "frames": 4, "kernel_size": 3}


@pytest.mark.parametrize("base, added", [({}, {"coarse_scales": (3, 9)}), ({}, {"difference_inputs": True}),
                                         ({}, {"coarse_scales": (3,), "difference_inputs": True, "variable_frames": True}),
                                         ({}, {"robust_gate": True}), ({}, {"robust_gate": True, "variable_frames": True}),
                                         ({}, {"agreement_blend": True}), ({}, {"agreement_blend": True, "variable_frames": True}),
                                         ({"agreement_blend": True, "prealign": "global"}, {"resampling_input": True}),
                                         ({"agreement_blend": True}, {"brightness_input": True}),
                                         ({"agreement_blend": True, "brightness_input": True}, {"smoothed_mean": (0.6, 1.2)}),
                                         ({"agreement_blend": True, "smoothed_mean": (0.6,)}, {"reference_blend": True}),
                                         ({}, {"agreement_blend": True, "reference_blend": True}),
                                         ({"agreement_blend": True}, {"noise_gain": True}), ({}, {"noise_gain": True}),
                                         ({"agreement_blend": True, "brightness_input": True, "prealign": "global"},
                                          {"noise_gain": True, "gain_resampling": True}),
                                         ({"agreement_blend": True, "noise_gain": True}, {"refine": 5}), ({}, {"refine": 3}),
                                         ({"refine": 3}, {"refine_context": True}), ({"refine": 3, "refine_context": True}, {"refine_search": 5}),
                                         ({"refine": 3, "refine_search": 5}, {"refine_wiener": 4}),
                                         ({"refine": 3}, {"refine_wiener": 4, "refine_wiener_mean": True}),
                                         ({}, {"refine": 3, "refine_context": True, "refine_hidden": 8}),
                                         # validity maps go before the mismatch maps the model already has
                                         ({"difference_inputs": True}, {"variable_frames": True}),
                                         ({"normalize_kernels": True, "difference_inputs": True}, {"variable_frames": True})])
def test_grown_model_starts_as_the_model_it_grew_from(base, added):
    old = ModelConfig(**TINY, init="random", **base)
    new = ModelConfig(**TINY, init="random", **base, **added)
    assert can_grow(old, new) and not can_grow(new, old) and not can_grow(old, old)
    small, grown = build_model(old), build_model(new)
    with torch.no_grad():  # a trained-looking network: non-zero everywhere, kernel sums near 1
        small.unet.head.weight.normal_(0, 0.05)
        small.unet.encoder[0][0].weight.normal_(0, 0.2)
        small.unet.head.bias.fill_(1.0 / small.unet.head.bias.numel())
    grown.load_state_dict(grow_state(small.state_dict(), grown, old))
    burst = torch.rand(2, 4, 24, 24)
    with torch.no_grad():
        a = predict(small, burst, 0.02, 0.003)["output"]
        b = predict(grown, burst, 0.02, 0.003)["output"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    if new.variable_frames and not old.variable_frames:  # a short burst: missing frames get zero kernels
        with torch.no_grad():
            short = predict(grown, burst[:, :2], 0.02, 0.003)
        assert torch.all(short["kernels"][:, 2:] == 0) and short["output"].isfinite().all()
    other = build_model(ModelConfig(widths=(8, 16), convs_per_level=1, frames=4, kernel_size=3))
    with pytest.raises(BurstKPNError, match="cannot fit"):
        grow_state(other.state_dict(), grown)


def test_coarse_stage_adds_box_filtered_merge_with_its_kernels():
    """With the head's weights at zero, the kernels are its biases: 1/N on each frame's centre tap and
    c on the coarse kernel's centre tap, so output = mean + c * box_3(mean) (replicate border)."""
    model = build_model(ModelConfig(**TINY, coarse_scales=(3,))).eval()
    c = 0.5
    with torch.no_grad():
        model.unet.head.bias[4 * 9 + 4] = c  # coarse kernel 0, centre tap of 3x3
    burst = torch.rand(1, 4, 16, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = predict(model, burst, 0.01, 0.001)
    merged = out["burst"].mean(dim=1).double().numpy()[0]
    padded = np.pad(merged, 1, mode="edge")
    box = sum(padded[u : u + 16, v : v + 20] for u in range(3) for v in range(3)) / 9
    np.testing.assert_allclose(out["output"][0].double().numpy(), merged + c * box, atol=1e-5)
    assert out["coarse_kernels"].shape == (1, 1, 3, 3, 16, 20)


def test_coarse_stage_reaches_far_pixels():
    """Output pixels depend on inputs K*s/2 px away (here 12 px with scale 9, K=3), beyond the 3x3 kernels."""
    model = build_model(ModelConfig(**TINY, coarse_scales=(9,), init="random")).eval()
    burst = torch.rand(1, 4, 48, 48, requires_grad=True)
    direct = model(burst, torch.full((1, 1, 48, 48), 0.02))
    direct["output"][0, 24, 24].backward()
    grad = burst.grad[0].abs().sum(0)
    assert grad[24, 24 + 12] > 0 and grad[24 + 12, 24] > 0


def test_mismatch_maps_flag_where_a_frame_disagrees():
    rng = np.random.default_rng(0)
    sigma = 0.02
    clean = np.tile(rng.uniform(0.2, 0.8, (1, 64, 64)), (4, 1, 1))
    clean[2, 16:48, 16:48] = np.roll(clean[0], 11, axis=1)[16:48, 16:48]  # frame 2: other content inside
    noisy = torch.from_numpy(clean + rng.normal(0, sigma, clean.shape)).float()[None]
    maps = mismatch_maps(noisy, torch.full((1, 1, 64, 64), sigma), valid=torch.tensor([[1.0, 1, 1, 0]]))[0]
    assert torch.all(maps[0] == 0) and torch.all(maps[3] == 0)  # the reference, a missing frame
    matched = maps[1].mean().item()
    assert 0.5 < matched < 0.75, matched  # E log(1 + chi2_50/50) just under log 2
    assert maps[2, 20:44, 20:44].mean() > 5 * matched and abs(maps[2, :12].mean() - matched) < 0.05


def test_robust_gate_hands_a_disagreeing_frames_weight_to_the_others():
    """A gate set by hand to distrust mismatch (logit 3 - 4·m5): inside the region where frame 2 shows other
    content its scale drops below 0.1 while the kernels' total weight is kept (a missing frame's scale is 0);
    elsewhere all frames keep about equal shares."""
    torch.manual_seed(0)  # the network's random weights: not the global RNG state the tests before left
    model = build_model(ModelConfig(**TINY, robust_gate=True, variable_frames=True, init="random")).eval()
    with torch.no_grad():
        first, last = model.gate.mlp[0], model.gate.mlp[2]
        first.weight.zero_(), first.bias.zero_()
        first.weight[0, 0] = 1.0  # hidden unit 0 = relu(m5)
        last.weight[0, 0], last.bias[0] = -4.0, 3.0
        model.unet.head.bias.fill_(0.1)  # positive kernel sums, unequal across frames and pixels
    rng = np.random.default_rng(1)
    sigma = 0.02
    clean = np.tile(rng.uniform(0.2, 0.8, (1, 64, 64)), (4, 1, 1))
    clean[2, 16:48, 16:48] = np.roll(clean[0], 11, axis=1)[16:48, 16:48]
    burst = torch.from_numpy(clean + rng.normal(0, sigma, clean.shape)).float()[None]
    valid = torch.tensor([[1.0, 1, 1, 0]])
    noise = torch.full((1, 1, 64, 64), sigma)
    with torch.no_grad():
        gated = model(burst, noise, valid)
        model.gate = None
        plain = model(burst, noise, valid)
    scale = gated["gate"][0]
    assert torch.all(scale[3] == 0)
    torch.testing.assert_close(gated["kernels"].sum(dim=(1, 2, 3)), plain["kernels"].sum(dim=(1, 2, 3)))  # DC gain kept
    inside, outside = scale[:, 22:42, 22:42].mean(dim=(1, 2)), scale[:, :10].mean(dim=(1, 2))
    assert inside[2] < 0.1 and inside[0] > 1.2 and inside[1] > 1.2, inside
    assert torch.all((outside[:3] - 1).abs() < 0.25), outside
    sums = gated["kernels"][0].sum(dim=(1, 2))  # contributions: the gate shows in them
    assert sums[2, 22:42, 22:42].mean() < 0.1 * sums[1, 22:42, 22:42].mean()


def test_agreement_blend_features_measure_agreement_and_distance_from_the_mean_in_noise_units():
    """The blend's evidence: frames that agree up to noise read about log 2 (mean and max over the others),
    a frame showing other content reads far more; an output offset from the mean by exactly the mean's noise
    (sigma / sqrt(n valid frames)) reads log 2 on both scales, and log10 sigma is carried as given."""
    from burstkpn.models.kpn import AgreementBlend

    rng = np.random.default_rng(3)
    sigma, n = 0.02, 4
    clean = np.tile(rng.uniform(0.2, 0.8, (1, 48, 48)), (n, 1, 1))
    moved = clean.copy()
    moved[2] = np.roll(clean[0], 9, axis=1)
    noise = torch.full((1, 1, 48, 48), sigma)
    blend = AgreementBlend()
    feats = {}
    for name, frames in (("agree", clean), ("moved", moved)):
        burst = torch.from_numpy(frames + rng.normal(0, sigma, frames.shape)).float()[None]
        mean = burst.mean(dim=1)
        feats[name] = blend.features(burst, noise, None, mean + sigma / np.sqrt(n), mean)[0]
    agree, moved_f = feats["agree"][:, 8:40, 8:40].mean(dim=(1, 2)), feats["moved"][:, 8:40, 8:40].mean(dim=(1, 2))
    assert all(abs(float(agree[i]) - np.log(2)) < 0.12 for i in range(4)), agree  # mismatch mean/max, 5 and 11 px
    assert moved_f[1] > 4 * agree[1] and moved_f[0] > 1.5 * agree[0]  # the max sees the moved frame, the mean less
    torch.testing.assert_close(agree[4:6], torch.full((2,), float(np.log(2))), rtol=0, atol=1e-4)
    torch.testing.assert_close(feats["agree"][6], torch.full((48, 48), float(np.log10(sigma + 1e-6) + 2)))
    # a short burst counts its valid frames: the mean's noise is sigma / sqrt(2) with 2 of 4 frames
    burst = torch.from_numpy(clean + rng.normal(0, sigma, clean.shape)).float()[None]
    mean = burst[:, :2].mean(dim=1)
    short = blend.features(burst, noise, torch.tensor([[1.0, 1, 0, 0]]), mean + sigma / np.sqrt(2), mean)[0]
    torch.testing.assert_close(short[4], torch.full((48, 48), float(np.log(2))), rtol=0, atol=1e-4)


def test_agreement_blend_moves_the_output_to_the_mean_where_it_opens():
    """b from the blend's network (set by hand: b = 1 where log10 sigma + 2 > 0, i.e. sigma > 0.01, else 0): a
    quiet burst keeps the kernels' output, a loud one becomes the frames' mean, and b is reported."""
    model = build_model(ModelConfig(**TINY, agreement_blend=True, init="random")).eval()
    with torch.no_grad():
        model.unet.head.weight.normal_(0, 0.05)
        first, last = model.agree.mlp[0], model.agree.mlp[-1]
        first.weight.zero_(), first.bias.zero_()
        first.weight[0, 6] = 100.0  # hidden 0 = relu(100·(log10 sigma + 2))
        model.agree.mlp[2].weight.zero_(), model.agree.mlp[2].bias.zero_()
        model.agree.mlp[2].weight[0, 0] = 1.0
        last.weight[0, 0] = 1.0  # b = clamp(hidden, 0, 1)
    burst = torch.rand(2, 4, 20, 20, generator=torch.Generator().manual_seed(0))
    noise = torch.cat([torch.full((1, 1, 20, 20), 0.001), torch.full((1, 1, 20, 20), 0.05)])
    with torch.no_grad():
        out = model(burst, noise)
        model.agree = None
        plain = model(burst, noise)
    assert torch.all(out["agreement"][0] == 0) and torch.all(out["agreement"][1] == 1)
    torch.testing.assert_close(out["output"][0], plain["output"][0])
    torch.testing.assert_close(out["output"][1], burst[1].mean(dim=0))
    with pytest.raises(BurstKPNError, match="agreement_blend"):
        ModelConfig(kind="dpn", agreement_blend=True)


def test_resampling_input_reads_the_fractional_part_of_the_prealignment_shifts():
    """`resampling_softness` is f(1 - f) summed over the axes, averaged over the counted frames; `predict` hands the
    shifts it aligned with to the blend: a blend set by hand to b = 2·softness opens on half-pixel shifts (b = 1)
    and stays shut on whole-pixel ones, whatever the frames show."""
    from burstkpn.models.kpn import resampling_softness

    shifts = torch.tensor([[[0.0, 0.0], [0.5, 0.5], [0.25, -0.25], [2.0, -3.0]]])
    expected = (0.5 + 2 * 0.1875 + 0) / 3
    torch.testing.assert_close(resampling_softness(shifts, torch.tensor([[0.0, 1, 1, 1]])), torch.tensor([expected]))
    model = build_model(ModelConfig(**TINY, prealign="global", agreement_blend=True, resampling_input=True)).eval()
    with torch.no_grad():
        for layer in (model.agree.mlp[0], model.agree.mlp[2], model.agree.mlp[4]):
            layer.weight.zero_(), layer.bias.zero_()
        model.agree.mlp[0].weight[0, 7] = 2.0  # hidden 0 = relu(2·softness)
        model.agree.mlp[2].weight[0, 0] = 1.0
        model.agree.mlp[4].weight[0, 0] = 1.0
    burst = torch.rand(1, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        half = predict(model, burst, 0.01, 0.001, shifts=torch.tensor([[[0.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]))
        whole = predict(model, burst, 0.01, 0.001, shifts=torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [3.0, 1.0]]]))
    assert torch.allclose(half["agreement"], torch.ones(1)) and torch.all(whole["agreement"] == 0)
    with pytest.raises(BurstKPNError, match="resampling_input"):
        ModelConfig(**TINY, agreement_blend=True, resampling_input=True)  # no pre-alignment


def test_brightness_input_is_the_log_local_mean_of_the_frames_mean():
    """The blend's brightness input (last feature): log10 of the 5x5 box mean of the frames' mean, floored at 1e-4."""
    from burstkpn.models.kpn import AgreementBlend

    blend = AgreementBlend(brightness=True)
    burst = torch.full((1, 4, 16, 16), 0.01)
    burst[..., 8:, :] = 0.0
    mean = burst.mean(dim=1)
    f = blend.features(burst, torch.full((1, 1, 16, 16), 0.01), None, mean, mean)[0]
    assert f.shape[0] == 8
    torch.testing.assert_close(f[7, :5], torch.full((5, 16), -2.0))
    torch.testing.assert_close(f[7, 11:], torch.full((5, 16), -4.0))
    with pytest.raises(BurstKPNError, match="brightness_input"):
        ModelConfig(**TINY, brightness_input=True)


def test_gaussian_blur_matches_a_naive_loop():
    """`gaussian_blur`: each output pixel is the sum over a (2r+1)^2 window of the replicate-padded input times the
    normalised 2-D Gaussian weights, r = ceil(3·std)."""
    from burstkpn.models.kpn import gaussian_blur

    x = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for std in (0.6, 1.2):
        r = int(np.ceil(3 * std))
        t = np.arange(-r, r + 1)
        g = np.exp(-0.5 * (t[:, None] ** 2 + t[None, :] ** 2) / std**2)
        g /= g.sum()
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (r, r), (r, r)), mode="edge")
        naive = np.zeros_like(x.numpy())
        for i in range(9):
            for j in range(11):
                naive[..., i, j] = (padded[..., i : i + 2 * r + 1, j : j + 2 * r + 1] * g).sum(axis=(-2, -1))
        np.testing.assert_allclose(gaussian_blur(x, std).numpy(), naive, rtol=0, atol=1e-12)


def test_smoothed_mean_blends_toward_the_mean_smoothed_as_far_as_its_outputs_say():
    """`ModelConfig.smoothed_mean`: with the blend open (b = 1) the output is the target, nested from the mean: both
    smoothing outputs at 0 -> the mean; the first at 1 -> G(0.6) ⊛ mean; the first at 1 and the second at 1/2 ->
    halfway from that to G(1.2) ⊛ mean. The detail inputs are about log 2 on a flat noisy patch and large on an edge."""
    from burstkpn.models.kpn import AgreementBlend, gaussian_blur

    model = build_model(ModelConfig(**TINY, agreement_blend=True, smoothed_mean=(0.6, 1.2), init="random")).eval()
    assert model.agree.mlp[0].in_channels == AgreementBlend.FEATURES + 2 and model.agree.mlp[-1].out_channels == 3
    burst = torch.rand(1, 4, 20, 20, generator=torch.Generator().manual_seed(0))
    noise = torch.full((1, 1, 20, 20), 0.02)
    mean = burst.mean(dim=1)
    g1, g2 = gaussian_blur(mean[:, None], 0.6)[:, 0], gaussian_blur(mean[:, None], 1.2)[:, 0]
    for first, second, expected in ((0.0, 0.0, mean), (1.0, 0.0, g1), (1.0, 0.5, g1 + 0.5 * (g2 - g1))):
        with torch.no_grad():
            last = model.agree.mlp[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor([1.0, first, second]))
            out = model(burst, noise)
        assert torch.all(out["agreement"] == 1)
        torch.testing.assert_close(out["output"], expected, rtol=0, atol=1e-6)
    rng = np.random.default_rng(1)
    sigma, n = 0.02, 4
    clean = np.full((n, 48, 48), 0.5)
    clean[:, :, 24:] = 0.9  # an edge down the middle
    noisy = torch.from_numpy(clean + rng.normal(0, sigma, clean.shape)).float()[None]
    m = noisy.mean(dim=1)
    f = model.agree.features(noisy, torch.full((1, 1, 48, 48), sigma), None, m, m)[0]
    detail3, detail5 = f[-2], f[-1]
    assert abs(float(detail3[:, 4:18].mean()) - np.log(1 + 8 / 9)) < 0.1  # box variance of noise: (1 - 1/9) sigma^2/n
    assert abs(float(detail5[:, 4:18].mean()) - np.log(1 + 24 / 25)) < 0.1
    assert float(detail3[:, 23:25].mean()) > 5  # the 0.4 step is 40 sigma/sqrt(n) of the mean


def test_noise_gain_scales_the_noise_map_the_kernels_see_and_nothing_else():
    """`ModelConfig.noise_gain`: with its last layer's bias at log 3 (g = 3 everywhere) the kernels are those the same
    network predicts told 3x the noise, while the agreement blend keeps the true noise (its log10 sigma input); g is
    clamped to [e^-1, e^3]. Its features: the blend's mismatch evidence, log10 sigma, brightness and the mean's detail."""
    from burstkpn.models.kpn import NoiseGain

    config = ModelConfig(**TINY, init="random", agreement_blend=True)
    plain, gained = build_model(config).eval(), build_model(ModelConfig(**{**config.__dict__, "noise_gain": True})).eval()
    with torch.no_grad():
        plain.unet.head.weight.normal_(0, 0.05)
    gained.load_state_dict(grow_state(plain.state_dict(), gained, config))
    burst = torch.rand(1, 4, 20, 20, generator=torch.Generator().manual_seed(0))
    noise = torch.full((1, 1, 20, 20), 0.01)
    seen = {}
    gained.agree.register_forward_hook(lambda module, args, out: seen.__setitem__("sigma", args[1]))
    with torch.no_grad():
        gained.noise_gain.mlp[-1].bias.fill_(float(np.log(3.0)))
        out = gained(burst, noise)
        told = plain(burst, 3 * noise)
        torch.testing.assert_close(out["kernels"], told["kernels"], rtol=0, atol=1e-6)
        assert not torch.allclose(out["kernels"], plain(burst, noise)["kernels"], atol=1e-4)
        torch.testing.assert_close(seen["sigma"], noise)  # the blend sees the truth
        gained.noise_gain.mlp[-1].bias.fill_(10.0)
        torch.testing.assert_close(gained.noise_gain(burst, noise, None), torch.full((1, 20, 20), float(np.exp(3.0))))
    f = gained.noise_gain.features(burst, noise, None)
    assert f.shape == (1, NoiseGain.FEATURES, 20, 20)
    torch.testing.assert_close(f[0, 4], torch.full((20, 20), float(np.log10(0.01 + 1e-6) + 2)))
    with pytest.raises(BurstKPNError, match="noise_gain"):
        ModelConfig(kind="dpn", noise_gain=True)
    with pytest.raises(BurstKPNError, match="gain_resampling"):
        ModelConfig(noise_gain=True, gain_resampling=True)  # no pre-alignment to read


def test_refine_filters_the_output_with_its_kernels_by_its_strength_against_a_naive_loop():
    """`ModelConfig.refine`: output = merged + s·(k ⊛ merged - merged), k a softmax over the K×K taps (edges
    replicated) and s = 1.5·tanh(last channel); the noise it is told is `output_noise` of the kernels and the blend.
    Checked against a loop over pixels and taps, with random last-layer weights."""
    from burstkpn.models.kpn import SpatialRefine, output_noise

    config = ModelConfig(**TINY, init="random", agreement_blend=True)
    plain, refined = build_model(config).eval(), build_model(ModelConfig(**{**config.__dict__, "refine": 3})).eval()
    with torch.no_grad():
        plain.unet.head.weight.normal_(0, 0.05)
        plain.agree.mlp[-1].bias.fill_(0.5)  # the blend moves the output toward the mean
    refined.load_state_dict(grow_state(plain.state_dict(), refined, config))
    torch.manual_seed(1)
    with torch.no_grad():
        refined.refine.net[-1].weight.normal_(0, 0.3)
        refined.refine.net[-1].bias.normal_(0, 0.3)
    burst = 0.2 + 0.5 * torch.rand(1, 4, 12, 10, generator=torch.Generator().manual_seed(0))
    noise = torch.full((1, 1, 12, 10), 0.02)
    seen = {}
    refined.refine.register_forward_hook(lambda module, args, out: seen.__setitem__("sigma", args[1]))
    with torch.no_grad():
        before = plain(burst, noise)
        merged = before["output"]
        told = output_noise(before["kernels"], noise[:, 0], None, {"agreement": before["agreement"]})
        out = refined(burst, noise)
        raw = refined.refine.net(SpatialRefine.features(merged, told))
    torch.testing.assert_close(seen["sigma"], told)
    assert not torch.allclose(told, noise[:, 0] / 2, atol=1e-4)  # not simply sigma / sqrt(frames)
    padded = torch.nn.functional.pad(merged[:, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    expected = torch.empty_like(merged)
    for y in range(12):
        for x in range(10):
            weights = torch.softmax(raw[0, :9, y, x], dim=0)
            filtered = sum(weights[3 * i + j] * padded[y + i, x + j] for i in range(3) for j in range(3))
            s = 1.5 * torch.tanh(raw[0, 9, y, x])
            expected[0, y, x] = merged[0, y, x] + s * (filtered - merged[0, y, x])
    torch.testing.assert_close(out["output"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["refine"], 1.5 * torch.tanh(raw[:, 9]))
    assert (out["output"] - merged).abs().max() > 1e-3  # it did something
    for bad in ({"refine": 4}, {"refine": 1}, {"refine": 3, "kind": "dpn"}):
        with pytest.raises(BurstKPNError, match="refine"):
            ModelConfig(**{**TINY, **bad})


def test_refine_context_is_the_unets_last_features():
    """`ModelConfig.refine_context`: the last spatial stage reads, after its own four maps, the U-Net's last decoder
    features, the very maps the kernel head reads (cropped like the head's output on a padded input), and they change
    its kernels; without refine the option is refused."""
    from burstkpn.models.kpn import SpatialRefine

    model = build_model(ModelConfig(**{**TINY, "half_res_output": False}, init="random", refine=3, refine_context=True)).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for layer in (model.refine.net[0], model.refine.net[-1]):
            layer.weight.normal_(0, 0.3)
    seen = {}
    model.unet.head.register_forward_hook(lambda module, args, out: seen.__setitem__("head_in", args[0]))
    model.refine.register_forward_hook(lambda module, args, out: seen.__setitem__("refine", args))
    burst = torch.rand(1, 4, 11, 13, generator=torch.Generator().manual_seed(0))  # not a multiple of 2: padded
    noise = torch.full((1, 1, 11, 13), 0.02)
    with torch.no_grad():
        out = model(burst, noise)
        merged, sigma, context = seen["refine"][:3]
        torch.testing.assert_close(context, seen["head_in"][..., :11, :13])
        assert context.shape == (1, 4, 11, 13) and context.abs().max() > 0
        with_context = model.refine.net(torch.cat([SpatialRefine.features(merged, sigma), context], dim=1))
        without = model.refine.net(torch.cat([SpatialRefine.features(merged, sigma), 0 * context], dim=1))
    torch.testing.assert_close(out["refine"], 1.5 * torch.tanh(with_context[:, 9]))
    assert (with_context - without).abs().max() > 1e-2
    with pytest.raises(BurstKPNError, match="refine_context"):
        ModelConfig(**TINY, refine_context=True)
    with pytest.raises(BurstKPNError, match="context maps"):
        model.refine(merged, sigma)


@pytest.mark.parametrize("channels", [1, 5])  # avg_pool2d below 4 channels, a depthwise convolution from 4 on
@pytest.mark.parametrize("size", [3, 5])
def test_box_blur_against_a_naive_loop(channels, size):
    """`box_blur`: each pixel the mean of its size x size neighbourhood, the border replicated; both code paths, in
    float32 under bf16 autocast as well (the stages that read it run it on float32 maps)."""
    from burstkpn.models.kpn import box_blur

    x = torch.rand(2, channels, 7, 6, generator=torch.Generator().manual_seed(size))
    r = size // 2
    expected = torch.empty_like(x)
    for y in range(7):
        for col in range(6):
            rows = [min(max(y + d, 0), 6) for d in range(-r, r + 1)]
            cols = [min(max(col + d, 0), 5) for d in range(-r, r + 1)]
            expected[..., y, col] = x[..., rows, :][..., cols].mean(dim=(-2, -1))
    torch.testing.assert_close(box_blur(x, size), expected, rtol=0, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        blurred = box_blur(x, size)
    assert blurred.dtype == torch.float32
    torch.testing.assert_close(blurred, expected, rtol=0, atol=1e-6)


def test_nonlocal_means_against_a_naive_loop_and_its_wiring():
    """`nonlocal_means`: each pixel the softmax(-max(d - 2σ², 0) / h²)-weighted mean of its neighbours in the search
    window, d the mean squared difference of their 5x5 patches (border replicated): checked against a loop over pixels,
    neighbours and patch taps. In the last stage (`ModelConfig.refine_search`) its second strength moves the refined
    output toward those means, with h = σ·exp(its own channel)."""
    from burstkpn.models.kpn import SpatialRefine, nonlocal_means

    gen = torch.Generator().manual_seed(3)
    image = torch.rand(1, 1, 9, 8, generator=gen)
    sigma = torch.full_like(image, 0.05)
    bandwidth = 0.03 + 0.1 * torch.rand(1, 1, 9, 8, generator=gen)
    got = nonlocal_means(image, sigma, bandwidth, 3)
    padded = torch.nn.functional.pad(image, (3, 3, 3, 3), mode="replicate")[0, 0]  # the neighbours' patches reach 3 px out
    diff_pad = lambda y, x, dy, dx: padded[y + 3 + dy, x + 3 + dx]  # noqa: E731
    expected = torch.empty(9, 8)
    for y in range(9):
        for x in range(8):
            logits, values = [], []
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    # the squared-difference map of this offset, replicated at the border, then its 5x5 mean
                    d = 0.0
                    for py in range(-2, 3):
                        for px in range(-2, 3):
                            yy, xx = min(max(y + py, 0), 8), min(max(x + px, 0), 7)
                            d += float(diff_pad(yy, xx, dy, dx) - image[0, 0, yy, xx]) ** 2 / 25
                    logits.append(-max(d - 2 * 0.05**2, 0.0) / float(bandwidth[0, 0, y, x]) ** 2)
                    values.append(float(diff_pad(y, x, dy, dx)))
            weights = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0)
            expected[y, x] = float((weights * torch.tensor(values, dtype=torch.float64)).sum())
    torch.testing.assert_close(got[0, 0], expected, rtol=0, atol=1e-5)
    with torch.no_grad():  # the in-place path inference takes
        torch.testing.assert_close(nonlocal_means(image, sigma, bandwidth, 3)[0, 0], expected, rtol=0, atol=1e-5)

    stage = SpatialRefine(3, hidden=4, search=3)
    with torch.no_grad():
        stage.net[-1].bias[9] = 0.0  # the local kernel's strength s = 0: the non-local part alone
        stage.net[-1].bias[10] = 0.4  # log(h / sigma)
        stage.net[-1].bias[11] = 0.7  # its strength
    output, told = image[:, 0], torch.full((1, 9, 8), 0.05)
    with torch.no_grad():
        refined, strength = stage(output, told)
    means = nonlocal_means(image, told[:, None], told[:, None] * torch.exp(torch.tensor(0.4)), 3)[:, 0]
    s2 = 1.5 * torch.tanh(torch.tensor(0.7))
    torch.testing.assert_close(refined, output + s2 * (means - output), rtol=0, atol=1e-6)
    torch.testing.assert_close(strength, torch.full_like(strength, float(s2)))
    for bad in ({"refine_search": 5}, {"refine": 3, "refine_search": 4}, {"refine": 3, "refine_search": 1}):
        with pytest.raises(BurstKPNError, match="refine_search"):
            ModelConfig(**{**TINY, **bad})


@pytest.mark.parametrize("valid", [None, [1.0, 1.0, 0.0, 1.0]])
def test_output_noise_is_the_std_of_the_merged_and_blended_noise(valid):
    """`output_noise`: kernels applied to independent noise of std sigma, then blended toward the valid frames' mean
    by w, leave noise of the std it says (Monte Carlo over 4,000 draws, within 4 %); a blend weight of 1 leaves
    sigma / sqrt(n)."""
    from burstkpn.models.kpn import frame_mean, output_noise

    g = torch.Generator().manual_seed(0)
    b, n, k, h, w = 4000, 4, 3, 1, 1
    kernels = (torch.rand(1, n, k, k, h, w, generator=g) * 0.3).expand(b, -1, -1, -1, -1, -1).clone()
    kernels[:, 0, 1, 1] += 0.5
    keep = None if valid is None else torch.tensor([valid]).expand(b, n)
    if keep is not None:
        kernels = kernels * keep[:, :, None, None, None, None]
    sigma = torch.full((b, h, w), 0.1)
    noise = 0.1 * torch.randn(b, n, k, k, generator=g)  # each frame's 3x3 neighbourhood of the pixel
    merged = (kernels[..., 0, 0] * noise).sum(dim=(1, 2, 3))
    centre = noise[:, :, 1, 1][:, :, None, None]
    mean = frame_mean(centre, keep)[:, 0, 0]
    for weight in (0.0, 0.3, 1.0):
        blended = merged + weight * (mean - merged)
        said = output_noise(kernels, sigma, keep, {"agreement": torch.full((b, h, w), weight)})
        assert said.shape == (b, h, w) and torch.allclose(said, said[:1])
        assert abs(float(blended.std()) / float(said[0, 0, 0]) - 1) < 0.04, (weight, float(blended.std()), float(said[0, 0, 0]))
        for r in (0.4, 1.0):  # then toward the reference frame (`ModelConfig.reference_blend`)
            toward = blended + r * (centre[:, 0, 0, 0] - blended)
            told = output_noise(kernels, sigma, keep, {"agreement": torch.full((b, h, w), weight),
                                                       "reference": torch.full((b, h, w), r)})
            assert abs(float(toward.std()) / float(told[0, 0, 0]) - 1) < 0.04, (weight, r, float(toward.std()), float(told[0, 0, 0]))
    n_valid = 4 if valid is None else 3
    torch.testing.assert_close(said[0, 0, 0], torch.tensor(0.1 / n_valid**0.5))


def test_gain_resampling_reads_the_prealignment_shifts():
    """`ModelConfig.gain_resampling`: `predict` hands the noise gain the shifts it aligned with; its last feature is
    `resampling_softness` (0.5 on half-pixel shifts in both axes, 0 on whole-pixel ones), whatever the frames show."""
    model = build_model(ModelConfig(**TINY, prealign="global", noise_gain=True, gain_resampling=True)).eval()
    seen = []
    model.noise_gain.register_forward_hook(lambda module, args, out: seen.append(module.features(*args)[:, -1]))
    burst = torch.rand(1, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predict(model, burst, 0.01, 0.001, shifts=torch.tensor([[[0.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]))
        predict(model, burst, 0.01, 0.001, shifts=torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [3.0, 1.0]]]))
    torch.testing.assert_close(seen[0], torch.full((1, 24, 24), 0.5))
    assert torch.all(seen[1] == 0)


def test_bounded_dc_correction_lets_the_kernel_sum_move_the_output_by_at_most_its_bound_in_sigma():
    """Normalised kernels with dc_bound: output = normalised + clip((s - 1)·normalised, +-dc_bound·sigma), s the
    free kernels' sum and sigma the noise map: loud bursts get the free kernels' output (the model grown from
    free kernels starts where it was), quiet ones a DC gain within dc_bound·sigma of 1."""
    torch.manual_seed(0)
    free = build_model(ModelConfig(**TINY, init="random"))
    with torch.no_grad():
        free.unet.head.weight.normal_(0, 0.05)
        free.unet.head.bias.fill_(1.6 / 36)  # kernel sums well away from 1 (about 1.6), and positive
    bounded = build_model(ModelConfig(**TINY, init="random", normalize_kernels=True, dc_bound=1.0))
    bounded.load_state_dict(grow_state(free.state_dict(), bounded))
    burst = 0.2 + 0.6 * torch.rand(2, 4, 24, 24)
    with torch.no_grad():
        for sigma_read in (1.0, 0.02, 1e-4):
            loose, tight = predict(free, burst, sigma_read, 0.0), predict(bounded, burst, sigma_read, 0.0)
            sums = loose["kernels"].sum(dim=(1, 2, 3))
            assert sums.min() > 0.5
            normalised = loose["output"] / sums
            limit = torch.full_like(normalised, sigma_read)  # the noise map: sigma_read with no shot noise
            want = normalised + torch.minimum(torch.maximum(normalised * (sums - 1), -limit), limit)
            torch.testing.assert_close(tight["output"], want, rtol=0, atol=1e-5)
            moved = (tight["output"] - normalised).abs()
            if sigma_read == 1.0:  # unclipped (all but pixels whose sum is near 0): the free kernels' output
                inside = (normalised * (sums - 1)).abs() < sigma_read
                assert inside.float().mean() > 0.99
                torch.testing.assert_close(tight["output"][inside], loose["output"][inside], rtol=0, atol=1e-5)
            else:  # clipped at the bound, far from the free output
                assert moved.max() <= sigma_read + 1e-6 and (loose["output"] - normalised).abs().median() > 0.05
                assert (moved > 0.99 * sigma_read).float().mean() > 0.9


@pytest.mark.parametrize("grad", [False, True])
def test_normalised_kernels_are_the_same_in_place_and_out(grad):
    """Outside autograd the forward pass divides the head's kernels in place; with autograd it makes a copy;
    both give the same kernels and output, and `normalize_kernel_sum` leaves a caller's tensor alone."""
    from burstkpn.models.kpn import normalize_kernel_sum

    torch.manual_seed(1)
    model = build_model(ModelConfig(**TINY, init="random", normalize_kernels=True, dc_bound=0.5))
    with torch.no_grad():
        model.unet.head.bias.fill_(1.2 / 36)  # positive sums, above the floor
    burst = torch.rand(1, 4, 20, 20)
    with torch.no_grad():
        reference = predict(model, burst, 0.01, 0.001)
    with torch.set_grad_enabled(grad):
        again = predict(model, burst, 0.01, 0.001)
    torch.testing.assert_close(again["output"], reference["output"], rtol=0, atol=1e-6)
    torch.testing.assert_close(again["kernels"], reference["kernels"], rtol=0, atol=1e-6)
    torch.testing.assert_close(reference["kernels"].sum(dim=(1, 2, 3)), torch.ones(1, 20, 20))
    mine = 0.1 + torch.rand(1, 4, 3, 3, 5, 5)
    kept = mine.clone()
    with torch.no_grad():
        normalize_kernel_sum(mine)
    assert torch.equal(mine, kept)


def test_model_config_rejects_bad_stages():
    with pytest.raises(BurstKPNError, match="coarse_scales"):
        ModelConfig(coarse_scales=(4,))
    with pytest.raises(BurstKPNError, match="robust_gate"):
        ModelConfig(kind="dpn", robust_gate=True)
    with pytest.raises(BurstKPNError, match="robust_gate needs the noise map"):
        ModelConfig(kind="kpn-blind", robust_gate=True)
    with pytest.raises(BurstKPNError, match="coarse_scales"):
        ModelConfig(kind="dpn", coarse_scales=(3,))
    with pytest.raises(BurstKPNError, match="difference_inputs"):
        ModelConfig(kind="kpn-blind", difference_inputs=True)
    with pytest.raises(BurstKPNError, match="dc_bound"):
        ModelConfig(dc_bound=1.0)  # without normalize_kernels there is nothing to bound
    with pytest.raises(BurstKPNError, match="dc_bound"):
        ModelConfig(normalize_kernels=True, dc_bound=-1.0)
    with pytest.raises(BurstKPNError, match="smoothed_mean"):
        ModelConfig(smoothed_mean=(0.6,))  # no agreement blend to carry it
    with pytest.raises(BurstKPNError, match="smoothed_mean"):
        ModelConfig(agreement_blend=True, smoothed_mean=(0.0,))


def test_native_bf16_follows_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    assert native_bf16("cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert native_bf16("mps") is False


def test_integer_prealignment_moves_frames_by_whole_pixels():
    from burstkpn.align import align_global

    g = torch.Generator().manual_seed(0)
    scene = torch.rand(1, 1, 72, 72, generator=g)
    # frame 1 shows the reference at p + (3, -2) (a whole-pixel shift), plus a little noise
    frame = torch.roll(scene, shifts=(-3, 2), dims=(-2, -1))
    burst = torch.cat([scene, frame + 0.01 * torch.randn(1, 1, 72, 72, generator=g)], dim=1)
    aligned, shifts = align_global(burst, integer=True)
    assert torch.equal(shifts, shifts.round()) and shifts[0, 1].tolist() == [3.0, -2.0]
    inner = (slice(4, -4), slice(4, -4))
    torch.testing.assert_close(aligned[0, 1][inner], burst[0, 1].roll((3, -2), (0, 1))[inner], rtol=0, atol=1e-5)
    # the same model with another pre-alignment is a config change --init may make
    assert can_grow(ModelConfig(prealign="global"), ModelConfig(prealign="global-integer"))


def test_ensemble_of_a_symmetric_model_changes_nothing_and_averages_otherwise():
    from burstkpn.models.kpn import denoise_array
    from burstkpn.noise import NoiseLevel

    burst = np.random.default_rng(0).uniform(0.1, 0.9, (4, 20, 28)).astype(np.float32)
    noise = NoiseLevel(0.01, 0.001)
    mean_model = build_model(ModelConfig(**TINY)).eval()  # untrained, mean init: the plain mean, flip-invariant
    np.testing.assert_allclose(denoise_array(mean_model, burst, noise, ensemble=True), burst.mean(0), atol=1e-6)
    model = build_model(ModelConfig(**TINY, init="random")).eval()
    views = []
    for flip in (False, True):
        for k in range(4):
            x = np.rot90(burst[..., ::-1] if flip else burst, k, axes=(-2, -1))
            y = np.rot90(denoise_array(model, x, noise), -k)
            views.append(y[..., ::-1] if flip else y)
    got = denoise_array(model, burst, noise, ensemble=True)
    assert got.shape == (20, 28)
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-6)
    assert np.abs(got - denoise_array(model, burst, noise)).max() > 1e-4  # a random model is not symmetric


def _clipped_ramp(frames: int = 8, seed: int = 0, low: float = 0.2):
    """A horizontal ramp from ``low`` to 1.4 (a third of it past white), 64², static, sigma 0.05 (clip it)."""
    g = torch.Generator().manual_seed(seed)
    clean = (low + (1.4 - low) * torch.linspace(0, 1, 64))[None, :].expand(64, 64)
    noisy = clean + 0.05 * torch.randn(frames, 64, 64, generator=g)
    return clean, noisy


def test_saturated_pixels_are_held_at_white_and_unclipped_data_is_untouched(monkeypatch):
    """Where most frames sit at the clip point the output is white: the kernels' mean of clipped draws is dark
    just above white (scene 1.0-1.05: 0.8 % of white too dark without the rule, for a mean-initialised KPN, which
    merges by the frames' mean, and for the shipped one; 0.2 % with it). Checked through `predict` on a ramp from
    -0.3 to 1.4 clipped at both ends. Black-clipped pixels are left to the kernels, and on unclipped frames
    (values above 1 and below 0) nothing changes."""
    from burstkpn.models import kpn as kpn_module
    from burstkpn.weights import load_model, resolve_model

    clean, noisy = _clipped_ramp(low=-0.3)
    clipped = noisy.clamp(0, 1)[None]
    white = (clean >= 1.0) & (clean < 1.05)
    below = clean < 0.9
    for name, model in (("mean", build_model(ModelConfig(widths=(8, 16), prealign="global")).eval()),
                        ("kpn", load_model(resolve_model("kpn", None)[1]))):
        with torch.no_grad(), monkeypatch.context() as patched:
            held = predict(model, clipped, 0.05, 0.0)["output"][0]
            unclipped_out = predict(model, noisy[None], 0.05, 0.0)["output"][0]
            patched.setattr(kpn_module, "hold_saturation", lambda output, clipped, valid=None: output)
            raw = predict(model, clipped, 0.05, 0.0)["output"][0]
            unclipped_raw = predict(model, noisy[None], 0.05, 0.0)["output"][0]
        assert (raw[white] - 1).mean() < -0.006, name  # what the rule is for
        assert abs(float((held[white] - 1).mean())) < 0.003, name
        assert torch.equal(held[below], raw[below])  # the shadows, black-clipped ones included, are the kernels'
        assert torch.equal(unclipped_out, unclipped_raw)  # unclipped values beyond 0 and 1 are not clip points


def test_saturation_survives_a_sub_pixel_prealignment():
    """The pre-alignment's bilinear warp blends a clipped value with its neighbours (0.7·1 + 0.3·0.98 is no
    longer at the clip point); the clip indicators move with the frames, so the highlight is still held."""
    from burstkpn.weights import load_model, resolve_model

    model = load_model(resolve_model("kpn", None)[1])
    clean, noisy = _clipped_ramp()
    shifts = torch.full((1, 8, 2), 0.3)
    shifts[:, 0] = 0
    with torch.no_grad():
        result = predict(model, noisy.clamp(0, 1)[None], 0.05, 0.0, shifts=shifts)
    seen, output = result["burst"][0], result["output"][0]
    above = clean >= 1.03  # truth above white by more than half a sigma: most draws clip
    above[:, :2] = above[:, -2:] = False
    warped_majority = ((seen - 1).abs() <= 1e-4).sum(dim=0) > 4
    assert warped_majority[above].float().mean() < 0.95  # counted on the warped frames, the clips would be missed
    assert (output[above] == 1).float().mean() > 0.99  # held: the indicators moved with the frames


def test_a_highlight_that_moved_off_the_reference_is_not_pasted_back():
    """A clipped object in five of the eight frames but not in the reference (it moved, or it is a ghost) is
    not held at white there: the rule needs the reference clipped too."""
    from burstkpn.weights import load_model, resolve_model

    model = load_model(resolve_model("kpn", None)[1])
    g = torch.Generator().manual_seed(1)
    burst = 0.3 + 0.02 * torch.randn(1, 8, 64, 64, generator=g)
    burst[0, 1:6, 20:44, 20:44] = 1.0
    with torch.no_grad():
        out = predict(model, burst.clamp(0, 1), 0.02, 0.0, shifts=torch.zeros(1, 8, 2))["output"][0]
    assert out[28:36, 28:36].max() < 0.9
    burst[0, 0, 20:44, 20:44] = 1.0  # the reference clipped as well: a blown highlight, held
    with torch.no_grad():
        out = predict(model, burst.clamp(0, 1), 0.02, 0.0, shifts=torch.zeros(1, 8, 2))["output"][0]
    assert torch.equal(out[22:42, 22:42], torch.ones(20, 20))


def test_a_short_burst_is_held_by_its_own_frames():
    """A 4-frame burst through the variable-length model: the padded frames are neither clipped nor counted."""
    from burstkpn.weights import load_model, resolve_model

    model = load_model(resolve_model("kpn-variable", None)[1])
    clean, noisy = _clipped_ramp(frames=4)
    with torch.no_grad():
        out = predict(model, noisy.clamp(0, 1)[None], 0.05, 0.0)["output"][0]
    deep = clean[:, 2:-2] >= 1.2  # every draw clips here
    assert torch.equal(out[:, 2:-2][deep], torch.ones(int(deep.sum())))


def test_saturation_needs_a_majority_of_the_valid_frames():
    from burstkpn.models.kpn import at_white, hold_saturation

    burst = torch.full((1, 8, 6, 6), 0.5)
    burst[0, :4, 0, 0] = 1.0  # half: the median is below white
    burst[0, :5, 0, 3] = 1.0  # five of eight
    burst[0, :3, 3, 0] = 1.0  # three of the four valid frames
    burst[0, 1:6, 5, 5] = 1.0  # five of eight, but nothing near it in the reference: a ghost
    output = torch.full((1, 6, 6), 0.75)
    valid = torch.tensor([[1.0, 1, 1, 1, 0, 0, 0, 0]])

    def held(out):
        return {(int(y), int(x)) for y, x in zip(*torch.nonzero(out[0] == 1.0, as_tuple=True))}

    clipped = at_white(burst)
    assert held(hold_saturation(output, clipped)) == {(0, 3)}
    assert held(hold_saturation(output, clipped, valid)) == {(0, 0), (0, 3), (3, 0)}
    assert held(hold_saturation(output, at_white(1 - burst), valid)) == set()  # not black


def test_a_joint_model_holds_each_plane_at_its_own_clip():
    """One CFA plane clips first (e.g. green under a warm light): only that plane is held at white."""
    from burstkpn.models.planar import PlanarConfig, build_planar, predict_planar

    model = build_planar(PlanarConfig(planes=4, widths=(8, 16), frames=8)).eval()
    _, noisy = _clipped_ramp()
    planes = torch.stack([noisy.clamp(0, 1) if c == 1 else 0.5 * noisy for c in range(4)])[None]  # (1, 4, 8, 64, 64)
    out = predict_planar(model, planes, 0.05, 0.0)["output"][0]
    at_white = (planes[0].sub(1).abs() <= 1e-4).sum(dim=1) > 4
    assert at_white[1].float().mean() > 0.2 and not at_white[[0, 2, 3]].any()
    assert torch.equal(out[1][at_white[1]], torch.ones(int(at_white[1].sum())))
    assert (out[[0, 2, 3]] < 1).float().mean() > 0.9


def test_reference_blend_moves_the_output_toward_the_reference_frame():
    """`ModelConfig.reference_blend`: after the blend toward the mean, output <- output + r·(reference - output), r the
    agreement blend's last output; r = 1 gives the (pre-aligned) reference frame itself, and `inspect`'s contributions
    give it that share. Without agreement_blend the option is refused."""
    model = build_model(ModelConfig(**TINY, agreement_blend=True, reference_blend=True)).eval()
    burst = torch.rand(1, 4, 20, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = predict(model, burst, 0.01, 0.001)
        assert torch.all(before["reference"] == 0)
        for r in (1.0, 0.25):
            model.agree.mlp[-1].bias[-1] = r  # r, the last output; b stays 0
            out = predict(model, burst, 0.01, 0.001)
            want = before["output"] + r * (out["burst"][:, 0] - before["output"])
            torch.testing.assert_close(out["output"], want, rtol=0, atol=1e-6)
            torch.testing.assert_close(out["reference"], torch.full((1, 20, 20), r))
    from burstkpn.inspect import inspect_burst
    from burstkpn.noise import NoiseLevel

    with torch.no_grad():
        model.agree.mlp[-1].bias[-1] = 0.25
    seen = inspect_burst(model, burst[0].numpy(), NoiseLevel(0.01, 0.001))
    np.testing.assert_allclose(seen.contributions.sum(axis=0), before["kernels"][0].sum(dim=(0, 1, 2)).numpy() * 0.75 + 0.25,
                               atol=1e-5)
    with pytest.raises(BurstKPNError, match="reference_blend"):
        ModelConfig(**TINY, reference_blend=True)


@pytest.mark.parametrize("step", [1, 2, 3])
def test_dct_wiener_is_the_empirical_wiener_filter_of_every_patch_averaged_with_bm3d_weights(step):
    """`dct_wiener` against a naive loop over patches: each P x P patch of the edge-replicated image (every patch that
    covers a pixel of the image; with ``step`` only those whose corner is on that grid) goes through the orthonormal
    2-D DCT (built here as the outer products of `dct_matrix`'s rows, C·Cᵀ = I), each coefficient (u, v) is scaled by p²/(p² + λ·σ̄²), p the pilot's coefficient,
    λ the factor at v·P + u and σ̄² the patch's mean noise variance, and the patches are averaged per pixel with weights
    1/(σ̄² Σ g²). Scaling the noise variance the wrong way round, or averaging without the weights, fails it."""
    from burstkpn.models.kpn import dct_matrix, dct_wiener

    size = 4
    c = dct_matrix(size).double()
    torch.testing.assert_close(c @ c.T, torch.eye(size, dtype=torch.float64), atol=1e-6, rtol=0)
    flat = torch.stack([torch.outer(c[u], c[v]).reshape(-1) for v in range(size) for u in range(size)])
    g = torch.Generator().manual_seed(0)
    h, w = 7, 9
    noisy = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    pilot = noisy + 0.05 * torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
    sigma = 0.02 + 0.08 * torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    scale = 0.5 + torch.rand(size * size, generator=g, dtype=torch.float64)
    got = dct_wiener(noisy, pilot, sigma, c, scale, step)
    pad = size - 1
    grow = lambda x: F.pad(x, (pad,) * 4, mode="replicate")[0, 0]  # noqa: E731
    y, p, v = grow(noisy), grow(pilot), grow(sigma**2)
    total, weights = torch.zeros(h + 2 * pad, w + 2 * pad, dtype=torch.float64), torch.zeros(h + 2 * pad, w + 2 * pad, dtype=torch.float64)
    for i in range(0, h + pad, step):
        for j in range(0, w + pad, step):
            coeffs = flat @ y[i : i + size, j : j + size].reshape(-1)
            q = flat @ p[i : i + size, j : j + size].reshape(-1)
            var = v[i : i + size, j : j + size].mean()
            gain = q**2 / (q**2 + scale * var)
            weight = 1 / (var * (gain**2).sum())
            total[i : i + size, j : j + size] += weight * (flat.T @ (gain * coeffs)).reshape(size, size)
            weights[i : i + size, j : j + size] += weight
    want = (total / weights)[pad:-pad, pad:-pad]
    torch.testing.assert_close(got[0, 0], want, atol=1e-9, rtol=0)
    with torch.no_grad():  # the in-place path inference takes
        torch.testing.assert_close(dct_wiener(noisy, pilot, sigma, c, scale, step)[0, 0], want, atol=1e-9, rtol=0)


def test_dct_wiener_with_a_clean_pilot_removes_most_of_the_noise():
    """The oracle Wiener filter (the pilot is the clean image): on a smooth photo-like image with noise of std 0.02 it
    leaves under a quarter of the noise's error; a pilot equal to the noisy image itself keeps more of it."""
    from burstkpn.models.kpn import dct_matrix, dct_wiener

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clean = (0.4 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy))[None, None]
    noisy = clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.full_like(clean, 0.02)
    rmse = lambda x: float((x - clean).square().mean().sqrt())  # noqa: E731
    oracle = dct_wiener(noisy, clean, sigma, dct_matrix(8))
    itself = dct_wiener(noisy, noisy, sigma, dct_matrix(8))
    assert rmse(oracle) < 0.25 * rmse(noisy), (rmse(oracle), rmse(noisy))
    assert rmse(oracle) < rmse(itself) < rmse(noisy)


@pytest.mark.parametrize("step", [1, 2])
def test_refine_wiener_moves_the_output_toward_the_dct_wiener_of_the_stage_input(step):
    """`ModelConfig.refine_wiener`: the stage's last output s3 = 1.5·tanh(·) moves the refined output toward
    `dct_wiener` of the stage's input (not of the refined output) with the refined output so far as pilot, its patches
    every `refine_wiener_step` pixels (the config's step reaches the stage; a step past the patch size is refused;
    a new filter grows with its own step, a fitted one does not change it by growing)."""
    from burstkpn.models.kpn import SpatialRefine, can_grow, dct_wiener

    stage = SpatialRefine(3, hidden=4, wiener=4, wiener_step=step)
    g = torch.Generator().manual_seed(0)
    output = 0.5 + 0.1 * torch.rand(1, 12, 12, generator=g)
    sigma = torch.full((1, 12, 12), 0.03)
    with torch.no_grad():
        same, strength = stage(output, sigma)
        torch.testing.assert_close(same, output)
        stage.net[-1].bias[9] = float(np.arctanh(0.5 / 1.5))  # the kernel part's strength s = 0.5 (uniform 3x3 taps)
        pilot, _ = stage(output, sigma)
        s3 = 0.7
        stage.net[-1].bias[-1] = float(np.arctanh(s3 / 1.5))
        refined, strength = stage(output, sigma)
    assert (pilot - output).abs().max() > 1e-3
    want = pilot + s3 * (dct_wiener(output[:, None], pilot[:, None], sigma[:, None], stage.dct_matrix, None, step)[:, 0]
                         - pilot)
    torch.testing.assert_close(refined, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(strength, torch.full_like(strength, 0.5 + s3))
    assert "dct_matrix" not in stage.state_dict() and stage.wiener_log_scale.shape == (16,)
    with pytest.raises(BurstKPNError, match="refine_wiener"):
        ModelConfig(**TINY, refine_wiener=4)
    config = ModelConfig(**TINY, refine=3, refine_wiener=4, refine_wiener_step=step)
    assert build_model(config).refine.wiener_step == step
    assert can_grow(ModelConfig(**TINY), config)
    assert can_grow(replace(config, refine_wiener_step=3 - step), config) is False
    for bad in (0, 5):
        with pytest.raises(BurstKPNError, match="refine_wiener_step"):
            ModelConfig(**TINY, refine=3, refine_wiener=4, refine_wiener_step=bad)
    with pytest.raises(BurstKPNError, match="refine_wiener_step"):
        ModelConfig(**TINY, refine=3, refine_wiener_step=2)


def test_refine_wiener_mean_filters_the_frames_mean_with_its_own_noise():
    """`ModelConfig.refine_wiener_mean`: the third strength moves the refined output toward `dct_wiener` of the frames'
    mean (noise mean_sigma), not of the stage's input; the net's two extra maps start at zero weight (neutral); a stage
    built for the mean refuses to run without it, and a fitted filter is not handed the new input by growing."""
    from burstkpn.models.kpn import SpatialRefine, dct_wiener

    stage = SpatialRefine(3, hidden=4, wiener=4, wiener_mean=True)
    g = torch.Generator().manual_seed(0)
    output = 0.5 + 0.1 * torch.rand(1, 12, 12, generator=g)
    mean = output + 0.05 * torch.randn(1, 12, 12, generator=g)
    sigma, mean_sigma = torch.full((1, 12, 12), 0.03), torch.full((1, 12, 12), 0.01)
    with torch.no_grad():
        same, _ = stage(output, sigma, None, mean, mean_sigma)
        torch.testing.assert_close(same, output)
        s3 = 0.7
        stage.net[-1].bias[-1] = float(np.arctanh(s3 / 1.5))
        refined, strength = stage(output, sigma, None, mean, mean_sigma)
    want = output + s3 * (dct_wiener(mean[:, None], output[:, None], mean_sigma[:, None], stage.dct_matrix)[:, 0] - output)
    torch.testing.assert_close(refined, want, rtol=0, atol=1e-6)
    of_input = output + s3 * (dct_wiener(output[:, None], output[:, None], sigma[:, None], stage.dct_matrix)[:, 0] - output)
    assert (refined - of_input).abs().max() > 1e-3
    assert stage.net[0].weight.shape[1] == SpatialRefine.FEATURES + 2
    features = SpatialRefine.mean_features(output, sigma, mean, mean_sigma)
    d2 = (mean - output).square()[:, None]
    torch.testing.assert_close(features[:, 0:1], torch.log1p(F.avg_pool2d(F.pad(d2, (1, 1, 1, 1), mode="replicate"), 3, 1) / 0.001))
    with pytest.raises(BurstKPNError, match="mean"):
        stage(output, sigma)
    with pytest.raises(BurstKPNError, match="refine_wiener_mean"):
        ModelConfig(**TINY, refine=3, refine_wiener_mean=True)
    fitted = ModelConfig(**TINY, refine=3, refine_wiener=4)
    assert not can_grow(fitted, ModelConfig(**TINY, refine=3, refine_wiener=4, refine_wiener_mean=True))


def test_refine_wiener_mean_is_handed_the_valid_frames_mean_and_the_noise_over_their_count():
    """The KPN hands its last stage the mean of the valid pre-aligned frames and sigma / sqrt(valid frames), sigma the
    per-frame noise map the network was given (not the merge's noise, not over all N frames)."""
    model = build_model(ModelConfig(**TINY, variable_frames=True, refine=3, refine_wiener=4, refine_wiener_mean=True)).eval()
    seen = {}
    model.register_forward_pre_hook(lambda mod, args: seen.update(noise=args[1]))
    model.refine.register_forward_pre_hook(lambda mod, args: seen.update(args=args))
    burst = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    valid = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    with torch.no_grad():
        out = predict(model, burst, 0.02, 0.004, valid=valid)
    _, _, _, mean, mean_sigma = seen["args"]
    torch.testing.assert_close(mean, out["burst"][:, [0, 1, 3]].mean(dim=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(mean_sigma, seen["noise"][:, 0] / 3**0.5, rtol=1e-6, atol=0)
