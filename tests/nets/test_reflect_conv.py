"""impasto.nets.reflect_conv: the cheaper reflection-padded convolutions equal the plain ones,
and the instant networks' in-place inference path equals their out-of-place one."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from impasto.nets.magenta import (
    MULTISTYLE,
    CINTransformer,
    ConditionalInstanceNorm,
    instance_norm_bf16_,
    relu_bf16_,
)
from impasto.nets.reflect_conv import reflect_conv2d, subpixel_weight, upsample_conv2d

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_up(x, w, b):
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.conv2d(F.pad(up, [1] * 4, mode="reflect"), w, b)


@pytest.mark.parametrize("hw", [(4, 4), (8, 12), (10, 6), (7, 9), (5, 8)])
def test_stride_two_conv_equals_padding_the_whole_input(hw):
    g = torch.Generator().manual_seed(sum(hw))
    x = torch.randn(2, 5, *hw, generator=g)
    w, b = torch.randn(7, 5, 3, 3, generator=g), torch.randn(7, generator=g)
    ref = F.conv2d(F.pad(x, [1] * 4, mode="reflect"), w, b, 2)
    out = reflect_conv2d(x, w, b, 2)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the borders are the point: a zero-padded conv differs there
    assert (F.conv2d(x, w, b, 2, padding=1) - ref).abs().amax() > 0.1


@pytest.mark.parametrize("channels_last", [False, True])
def test_stride_two_conv_in_bf16_stays_close_to_fp32(channels_last):
    """The bf16 path of the instant networks' stride-2 layers. On a CPU with AMX (oneDNN's
    brg_conv_fwd avx10_1_512_amx, torch 2.14.1) a stride-2 convolution one output column wide
    returned garbage or NaN in bf16: the left-edge strip is convolved transposed."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 32, 96, 128, generator=g)
    w = torch.randn(64, 32, 3, 3, generator=g) * 0.05
    xb, wb = x.bfloat16(), w.bfloat16()
    if channels_last:
        xb, wb = (t.contiguous(memory_format=torch.channels_last) for t in (xb, wb))
    out = reflect_conv2d(xb, wb, None, 2).float()
    ref = F.conv2d(F.pad(xb.float(), [1] * 4, mode="reflect"), wb.float(), None, 2)
    assert out.isfinite().all()
    # bf16 rounds the output (|ref| up to ~4: 1/128 of it); the garbage was 1e35 or NaN
    assert (out - ref).abs().amax() < 0.05
    assert (out - ref)[:, :, :, 0].abs().amax() < 0.05  # the left column itself


@pytest.mark.parametrize("k", [3, 9])
def test_stride_one_conv_is_the_plain_one(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(1, 4, 12, 10, generator=g)
    w = torch.randn(3, 4, k, k, generator=g)
    torch.testing.assert_close(reflect_conv2d(x, w, None),
                               F.conv2d(F.pad(x, [k // 2] * 4, mode="reflect"), w))


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (6, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_subpixel_conv_equals_upsample_then_conv(hw, dtype):
    g = torch.Generator().manual_seed(hw[0] * 10 + hw[1])
    x = torch.randn(2, 6, *hw, generator=g)
    w, b = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, generator=g)
    ref = _reference_up(x, w, b)
    out = upsample_conv2d(x.to(dtype), w.to(dtype), b.to(dtype)).float()
    assert out.shape == ref.shape == (2, 4, 2 * hw[0], 2 * hw[1])
    tol = 1e-5 if dtype == torch.float32 else 0.1  # bf16: the summed taps round once more
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


def test_subpixel_weight_keeps_the_sum_of_taps():
    w = torch.randn(3, 2, 3, 3)
    k = subpixel_weight(w).reshape(3, 4, 2, 3, 3)
    # every phase reads each of the 9 taps exactly once
    torch.testing.assert_close(k.sum((3, 4)), w.sum((2, 3))[:, None].expand(3, 4, 2))


def test_moments_in_bands_equal_the_whole_reduction():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 700, 50, generator=g) * 2 + 5  # several bands
    mean, var = ConditionalInstanceNorm.moments(x)
    torch.testing.assert_close(mean, x.mean((2, 3), keepdim=True), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var, x.var((2, 3), keepdim=True, correction=0), rtol=1e-4,
                               atol=1e-4)
    mb, _ = ConditionalInstanceNorm.moments(x.bfloat16())
    assert mb.dtype == torch.float32
    torch.testing.assert_close(mb, x.bfloat16().float().mean((2, 3), keepdim=True))


@pytest.mark.parametrize("channels_last", [False, True])
def test_moments_are_float32_under_bf16_autocast(channels_last):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 40, 30, generator=g) * 3 + 7
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        mean, var = ConditionalInstanceNorm.moments(x)
    assert mean.dtype == var.dtype == torch.float32
    torch.testing.assert_close(mean, x.mean((2, 3), keepdim=True), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var, x.var((2, 3), keepdim=True, correction=0), rtol=1e-4,
                               atol=1e-4)


def _random_net():
    """The 26-style network with random weights, an input and a condition (seeded)."""
    torch.manual_seed(0)
    net = CINTransformer(MULTISTYLE).eval()
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    return net, torch.rand(1, 3, 36, 44), torch.softmax(torch.randn(1, 26), 1)


def test_inplace_inference_equals_the_out_of_place_network():
    net, x, cond = _random_net()
    with torch.inference_mode():
        fast = net(x, cond)  # in place, border-fixed and sub-pixel convolutions
    y = net(x.requires_grad_(), cond)  # autograd records it: nothing is overwritten
    assert y.requires_grad
    torch.testing.assert_close(fast, y.detach(), rtol=1e-5, atol=1e-5)
    # and both equal the textbook layer order (upsample, pad, conv) of the module doc
    ref = x.detach()
    with torch.no_grad():
        for name, layer in net.layers():
            if name.startswith("residuals") and name.endswith("conv1"):
                skip = ref
            if layer.upsample:
                ref = F.interpolate(ref, scale_factor=2.0, mode="nearest")
            ref = layer.conv(F.pad(ref, [layer.pad] * 4, mode="reflect"))
            c = cond.to(layer.gamma.weight.dtype)
            ref = layer.norm(ref, layer.gamma(c), layer.beta(c))
            ref = {"relu": torch.relu, "sigmoid": torch.sigmoid}.get(layer.act, lambda t: t)(ref)
            if name.endswith("conv2"):
                ref = skip + ref
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_relu_on_the_bits_of_bf16_equals_relu():
    x = torch.tensor([-3.5, -1e-30, -0.0, 0.0, 1e-30, 2.25, -float("inf"), float("inf"),
                      -65280.0, 65280.0], dtype=torch.bfloat16)
    x = torch.cat([x, torch.randn(1000).bfloat16()])
    want = torch.relu(x)
    out = relu_bf16_(x)
    assert out.data_ptr() == x.data_ptr()  # in place
    assert torch.equal(out, want)  # equal values (-0 == 0)
    # bit for bit but for torch's -0 (kept by torch.relu), which becomes +0 here
    assert torch.equal(out.view(torch.int16), want.abs().view(torch.int16))


def test_bf16_inplace_inference_stays_close_to_the_out_of_place_network():
    """The bf16 in-place path (each norm through PyTorch's batch norm kernel, ReLU on the bits)
    against the same network out of place in bf16 and in float32."""
    net, x, cond = _random_net()
    with torch.inference_mode():
        ref = net(x, cond)
    bf = net.to(torch.bfloat16)
    with torch.inference_mode():
        fast = bf(x.bfloat16(), cond.bfloat16()).float()
    slow = bf(x.bfloat16().requires_grad_(), cond.bfloat16()).detach().float()
    assert (fast - ref).abs().amax() < 0.03  # the sigmoid output, in [0, 1]
    assert (fast - ref).abs().mean() < (slow - ref).abs().mean() * 1.1


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_bf16_instance_norm_in_place_matches_float32_per_sample(layout):
    """Two samples with their own statistics and scales: the in-place bf16 norm is the float32
    norm rounded to bf16 (within one bf16 step of the result), and closer to it on average
    than the out-of-place bf16 formula."""
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 24, 40) * torch.tensor([1.0, 4.0])[:, None, None, None]
         + torch.tensor([0.5, -3.0])[:, None, None, None])
    gamma, beta = torch.rand(2, 16) + 0.5, torch.randn(2, 16)
    norm = ConditionalInstanceNorm()
    ref = norm(x, gamma, beta)  # float32
    xb = x.bfloat16().contiguous(memory_format=layout)
    out = instance_norm_bf16_(xb, gamma, beta, norm.eps)
    assert out.data_ptr() == xb.data_ptr() and out.is_contiguous(memory_format=layout)
    err = (out.float() - ref).abs()
    assert (err <= ref.abs() * 2.0 ** -8 + 0.02).all()  # rounding, and x's own bf16 rounding
    formula = norm(x.bfloat16().contiguous(memory_format=layout), gamma, beta).float()
    assert err.mean() < (formula - ref).abs().mean()
    # the network's norm takes this path in place, and no other
    xb = x.bfloat16().contiguous(memory_format=layout)
    assert torch.equal(norm(xb, gamma, beta, inplace=True), out)
