"""Convolutions with reflection padding, computed without padding the whole input.

A reflection-padded convolution, ``conv(reflect_pad(x, k // 2))``, copies its whole input
into a larger tensor first. For the large activations of the instant style networks
(:mod:`impasto.nets.magenta`: 32 channels at full resolution) that copy and the page faults
of its new memory cost more than the convolution: at 1024 x 768 on one CPU core, 50-70 ms
against 20-45 ms. The two functions here compute the same outputs (equal up to the order of
float additions) with less memory traffic:

* :func:`reflect_conv2d` with stride 2 and a 3x3 kernel on an even-sized input: the output is
  the zero-padded convolution everywhere but its first row and column (the only outputs that
  read the padding: the last ones end on the input's last row and column), which are
  recomputed from reflection-padded strips two pixels wide;
* :func:`upsample_conv2d`: nearest x2 upsampling, reflection padding by 1 and a 3x3
  convolution, as one 3x3 convolution with four times the output channels on the
  replicate-padded low-resolution input, then a pixel shuffle (the sub-pixel convolution of
  Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network"; each output phase sees a 2x2 sum of the kernel's
  taps). Reflecting the upsampled image by one pixel repeats its edge pixel, which is the low
  resolution edge pixel: hence replicate padding.

Shapes: ``x`` ``(N, C, H, W)``; ``weight`` ``(O, C, k, k)``; any float dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["reflect_conv2d", "subpixel_weight", "upsample_conv2d"]

#: _PHASE[a][u, t]: kernel tap ``t`` (row offset ``t - 1`` in the upsampled image) of output
#: phase ``a`` reads low-resolution row offset ``u - 1`` (``floor((a + t - 1) / 2)``).
_PHASE = torch.tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                       [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], dtype=torch.float32)


def reflect_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int = 1) -> Tensor:
    """``conv2d(reflect_pad(x, k // 2), weight, bias, stride)`` (a square, odd kernel ``k``)."""
    k = weight.shape[-1]
    p = k // 2
    h, w = x.shape[-2:]
    if stride != 2 or k != 3 or h % 2 or w % 2 or h < 4 or w < 4:
        return F.conv2d(F.pad(x, [p] * 4, mode="reflect"), weight, bias, stride)
    y = F.conv2d(x, weight, bias, 2, padding=1)  # right everywhere but row 0 and column 0
    top = F.pad(x[:, :, :2, :], [1, 1, 1, 0], mode="reflect")
    y[:, :, :1, :] = F.conv2d(top, weight, bias, 2)
    # The left strip is convolved transposed (its one output column as a row): oneDNN's AMX
    # bf16 kernel (torch 2.14.1, brg_conv_fwd avx10_1_512_amx) returns garbage or NaN for a
    # stride-2 convolution whose output is one column wide and several rows high.
    left = F.pad(x[:, :, :, :2], [1, 0, 1, 1], mode="reflect").transpose(2, 3)
    y[:, :, :, :1] = F.conv2d(left, weight.transpose(2, 3), bias, 2).transpose(2, 3)
    return y


def subpixel_weight(weight: Tensor) -> Tensor:
    """The ``(4 * O, C, 3, 3)`` kernel of :func:`upsample_conv2d` from a 3x3 ``weight``
    ``(O, C, 3, 3)``: output channel ``4 * o + 2 * a + b`` is phase ``(a, b)`` of channel
    ``o`` (the order :func:`torch.nn.functional.pixel_shuffle` reads)."""
    o, c = weight.shape[:2]
    ph = _PHASE.to(weight.device)
    k = torch.einsum("aut,bvs,omts->oabmuv", ph, ph, weight.float())
    return k.reshape(4 * o, c, 3, 3).to(weight.dtype)


def upsample_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(reflect_pad(upsample_nearest(x, 2), 1), weight, bias)`` for a 3x3 ``weight``:
    ``(N, C, H, W)`` -> ``(N, O, 2H, 2W)``."""
    if weight.shape[-1] != 3 or weight.shape[-2] != 3:
        raise ValueError("upsample_conv2d needs a 3x3 kernel")
    b = None if bias is None else bias.repeat_interleave(4)
    y = F.conv2d(F.pad(x, [1] * 4, mode="replicate"), subpixel_weight(weight), b)
    return F.pixel_shuffle(y, 2)
