"""apply_kernels: both implementations equal a naive float64 loop; delta kernels; gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from burstkpn.errors import BurstKPNError
from burstkpn.kernels import _apply_unfold, apply_kernels


def naive(burst: np.ndarray, kernels: np.ndarray, dilation: int = 1, replicate: bool = False) -> np.ndarray:
    """Per-pixel float64 loop, zero (or replicate) padding: the definition."""
    b, n, h, w = burst.shape
    k = kernels.shape[2]
    r = k // 2
    out = np.zeros((b, n, h, w))
    for bi in range(b):
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    for u in range(k):
                        for v in range(k):
                            yy, xx = y + dilation * (u - r), x + dilation * (v - r)
                            if replicate:
                                yy, xx = min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)
                            if 0 <= yy < h and 0 <= xx < w:
                                out[bi, i, y, x] += kernels[bi, i, u, v, y, x] * burst[bi, i, yy, xx]
    return out


@pytest.mark.parametrize("shape,k,dilation,padding", [((2, 3, 7, 5), 3, 1, "zeros"), ((1, 2, 9, 11), 5, 1, "zeros"),
                                                      ((1, 2, 9, 11), 3, 3, "zeros"), ((2, 1, 8, 7), 5, 2, "replicate")])
def test_both_paths_equal_naive_loop(shape, k, dilation, padding):
    g = torch.Generator().manual_seed(0)
    burst = torch.rand(shape, generator=g)
    kernels = torch.randn(shape[0], shape[1], k, k, *shape[2:], generator=g)
    expected = naive(burst.double().numpy(), kernels.double().numpy(), dilation, padding == "replicate")
    with torch.no_grad():
        out, per_frame = apply_kernels(burst, kernels, dilation, padding)
    np.testing.assert_allclose(per_frame.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), expected.sum(1), rtol=1e-5, atol=1e-5)
    kernels.requires_grad_(True)  # the unfold (training) path
    np.testing.assert_allclose(apply_kernels(burst, kernels, dilation, padding)[1].detach().numpy(), expected,
                               rtol=1e-5, atol=1e-5)


def test_grad_path_is_used_and_matches_inference_path():
    burst = torch.rand(1, 2, 6, 6)
    kernels = torch.randn(1, 2, 3, 3, 6, 6, requires_grad=True)
    out, _ = apply_kernels(burst, kernels)
    assert out.requires_grad
    with torch.no_grad():
        out_ng, _ = apply_kernels(burst, kernels)
    torch.testing.assert_close(out.detach(), out_ng)


def test_delta_on_reference_returns_reference_exactly():
    burst = torch.rand(2, 4, 13, 9)
    kernels = torch.zeros(2, 4, 5, 5, 13, 9)
    kernels[:, 0, 2, 2] = 1.0
    with torch.no_grad():
        out, per_frame = apply_kernels(burst, kernels)
    assert torch.equal(out, burst[:, 0])
    assert torch.equal(per_frame[:, 1:], torch.zeros_like(per_frame[:, 1:]))


def test_gradcheck_tiny():
    g = torch.Generator().manual_seed(1)
    burst = torch.rand(1, 2, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    kernels = torch.randn(1, 2, 3, 3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    # the float64 path of the unfold implementation (apply_kernels itself computes in float32)
    for dilation, mode in ((1, "constant"), (2, "replicate")):
        def unfold_path(b, k, dilation=dilation, mode=mode):
            r = dilation
            padded = F.pad(b.reshape(2, 1, 4, 5), (r, r, r, r), mode=mode).reshape(1, 2, 4 + 2 * r, 5 + 2 * r)
            return _apply_unfold(padded, k, dilation)
        assert torch.autograd.gradcheck(unfold_path, (burst, kernels))
    out, _ = apply_kernels(burst.float(), kernels.float())
    out.sum().backward()
    assert kernels.grad is not None and burst.grad is not None


@pytest.mark.parametrize("kernel_shape", [(1, 2, 3, 3, 6, 7), (1, 2, 4, 4, 6, 6), (1, 3, 3, 3, 6, 6)])
def test_wrong_shapes_give_one_line_error(kernel_shape):
    with pytest.raises(BurstKPNError) as info:
        apply_kernels(torch.rand(1, 2, 6, 6), torch.rand(kernel_shape))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("burst_shape, kernel_shape, message", [
    ((2, 6, 6), (1, 2, 3, 3, 6, 6), "burst must be (B, N, H, W), got shape (2, 6, 6)"),
    ((1, 2, 6, 6), (1, 2, 3, 3, 6, 7), "kernels must be (B, N, K, K, H, W) = (1, 2, K, K, 6, 6), got (1, 2, 3, 3, 6, 7)"),
    ((1, 2, 6, 6), (1, 2, 3, 5, 6, 6), "kernels must be (B, N, K, K, H, W) = (1, 2, K, K, 6, 6), got (1, 2, 3, 5, 6, 6)"),
    ((1, 2, 6, 6), (1, 2, 4, 4, 6, 6), "kernel size must be odd, got 4"),
])
def test_shape_errors_say_what_was_expected_and_got(burst_shape, kernel_shape, message):
    with pytest.raises(BurstKPNError) as info:
        apply_kernels(torch.rand(burst_shape), torch.rand(kernel_shape))
    assert str(info.value) == message


@pytest.mark.parametrize("dilation, padding", [(0, "zeros"), (-1, "replicate"), (1, "reflect"), (2, "circular")])
def test_bad_dilation_or_padding_is_a_one_line_error(dilation, padding):
    with pytest.raises(BurstKPNError) as info:
        apply_kernels(torch.rand(1, 2, 6, 6), torch.rand(1, 2, 3, 3, 6, 6), dilation, padding)
    assert str(info.value) == (f"dilation must be >= 1 and padding one of ('zeros', 'replicate'), "
                               f"got {dilation}, {padding!r}")


def test_defaults_are_adjacent_taps_and_zero_padding():
    g = torch.Generator().manual_seed(2)
    burst = torch.rand(1, 2, 7, 6, generator=g)
    kernels = torch.randn(1, 2, 3, 3, 7, 6, generator=g)
    with torch.no_grad():
        out, per_frame = apply_kernels(burst, kernels)
    expected = naive(burst.double().numpy(), kernels.double().numpy())
    np.testing.assert_allclose(per_frame.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad_on, burst_grad, kernels_grad, path", [
    (False, True, True, "accumulate"),  # inference: never the unfold copies, whatever requires grad
    (True, False, False, "accumulate"),  # nothing to differentiate
    (True, False, True, "unfold"),  # training: gradients for the kernels
    (True, True, False, "unfold"),
    (True, True, True, "unfold"),
])
def test_unfold_only_when_autograd_needs_gradients(monkeypatch, grad_on, burst_grad, kernels_grad, path):
    import burstkpn.kernels as kernels_module

    used = []
    for name in ("accumulate", "unfold"):
        real = getattr(kernels_module, f"_apply_{name}")
        monkeypatch.setattr(kernels_module, f"_apply_{name}",
                            lambda *args, real=real, name=name: used.append(name) or real(*args))
    burst = torch.rand(1, 2, 5, 5, requires_grad=burst_grad)
    kernels = torch.rand(1, 2, 3, 3, 5, 5, requires_grad=kernels_grad)
    with torch.set_grad_enabled(grad_on):
        apply_kernels(burst, kernels)
    assert used == [path]
