"""Int8 inference for the instant style networks (:mod:`impasto.nets.magenta`).

:class:`Int8CINTransformer` is an int8 version of a
:class:`~impasto.nets.magenta.FixedCondition` (a
:class:`~impasto.nets.magenta.CINTransformer` with its style fixed), made by post-training
static quantisation as :mod:`impasto.nets.int8` makes one of a per-style network, and with the
same parts (:func:`~impasto.nets.int8._int8_conv`, the equalisation, reflection padding on
uint8 in NHWC, PyTorch's quantised instance norm):

* with the condition fixed, each conditional instance norm is an instance norm with a fixed
  per-channel scale and shift (``gamma``/``beta`` of the condition), which the quantised
  instance norm computes; the ReLU after it is its output range starting at 0;
* each convolution that feeds a norm is equalised (its output channels shifted and scaled to
  zero mean and unit spread on the calibration images: the norm removes both);
* the arbitrary network's encoder (convolutions with a bias, no norm) runs int8 convolutions
  with a fused ReLU;
* the last layer's convolution is dequantised and its norm and sigmoid run in float32, so the
  output image is not rounded to the 256 levels of an int8 activation before the norm
  stretches it.

Weights are symmetric int8 per output channel, activations uint8 per tensor with ranges from
the ``QUANTILE`` quantiles seen in calibration (images scaled down to ``CALIBRATION_SIDE``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.nets.int8 import (
    _ChannelStats,
    _int8_conv,
    _qparams,
    _quantize_image,
    _quiet,
    _Range,
    _reflect_pad_nhwc,
    _run_calibration,
    int8_supported,
)
from impasto.nets.magenta import CINTransformer, ConditionalInstanceNorm, FixedCondition

__all__ = ["Int8CINTransformer"]


class _QLayer(nn.Module):
    """[x2 nearest] -> reflection pad (uint8, NHWC) -> int8 conv -> [int8 instance norm with
    a fixed affine, + ReLU as its range] (or a fused ReLU without a norm); ``final``: the
    conv's output dequantised, then a float32 norm and the sigmoid."""

    def __init__(self, layer: nn.Module, cond: Tensor, conv_q: tuple[float, int],
                 norm_q: tuple[float, int] | None, shift: Tensor | None,
                 scale: Tensor | None, final: bool) -> None:
        super().__init__()
        conv: nn.Conv2d = layer.conv
        self.upsample, self.pad, self.final = bool(layer.upsample), int(layer.pad), final
        self.relu = layer.act == "relu"
        w = conv.weight.detach().float()
        b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0])
        if scale is not None:  # equalised: (conv(x) - shift) / scale, per channel
            w = w / scale.view(-1, 1, 1, 1)
            b = (b - shift) / scale
        self.norm = layer.norm is not None
        self.conv = _int8_conv(conv, w, b, conv_q, relu=self.relu and not self.norm)
        if self.norm:
            c = cond.to(layer.gamma.weight.dtype)
            self.register_buffer("gamma", layer.gamma(c).detach().float().reshape(-1).clone())
            self.register_buffer("beta", layer.beta(c).detach().float().reshape(-1).clone())
            self.eps = float(layer.norm.eps)
            self.norm_q = norm_q

    def forward(self, q: Tensor) -> Tensor:
        if self.upsample:
            q = F.interpolate(q, scale_factor=2.0, mode="nearest")
        q = self.conv(_reflect_pad_nhwc(q, self.pad))
        if self.final:
            y = q.dequantize()
            if self.norm:
                mean, var = ConditionalInstanceNorm.moments(y)
                scale = self.gamma[:, None, None] * torch.rsqrt(var + self.eps)
                y = (y - mean) * scale + self.beta[:, None, None]
            return torch.sigmoid(y)
        if self.norm:
            assert self.norm_q is not None
            return torch.ops.quantized.instance_norm(q, self.gamma, self.beta, self.eps,
                                                     *self.norm_q)
        return q


class Int8CINTransformer(nn.Module):
    """An int8 :class:`~impasto.nets.magenta.FixedCondition` for CPU inference (see the module
    doc); build it with :meth:`calibrate`. Called on float ``(N, 3, H, W)`` in ``[0, 1]`` (any
    ``H, W``), it returns float32 ``(N, 3, H, W)`` in ``[0, 1]``, like the float module
    (``mix`` blends with the input the same way)."""

    def __init__(self, fixed: FixedCondition, layers: nn.ModuleDict,
                 sums: list[tuple[float, int]]) -> None:
        super().__init__()
        self.config = fixed.net.config
        self.mix = fixed.mix
        self.layers = layers
        self.sums = list(sums)

    @classmethod
    @torch.no_grad()
    @_quiet()
    def calibrate(cls, fixed: FixedCondition, images: Iterable[Tensor], *,
                  dtype: torch.dtype = torch.float32) -> Int8CINTransformer:
        """Quantise ``fixed`` with activation ranges measured on ``images`` (float
        ``(N, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]``, scaled down to
        ``CALIBRATION_SIDE``), the float network run once per image under ``dtype``
        autocast. ``fixed`` is not modified."""
        if not isinstance(fixed, FixedCondition):
            raise TypeError(f"int8 instant styles need a FixedCondition, not "
                            f"{type(fixed).__name__}")
        if not int8_supported("cpu"):
            raise RuntimeError("int8 inference needs a CPU with VNNI and PyTorch's quantised "
                               "tensors (x86 engine)")
        fixed = fixed.eval()
        net: CINTransformer = fixed.net
        stats: dict[str, _ChannelStats | _Range] = {}
        hooks = []

        def watch(name: str, kind, pre: bool = False) -> object:
            def hook(_m, args, out=None):
                stats.setdefault(name, kind()).add(args[0] if pre else out)
            return hook

        layers = list(net.layers())
        for name, layer in layers:
            if layer.norm is not None:
                hooks.append(layer.norm.register_forward_pre_hook(
                    watch(name + ".conv", _ChannelStats, pre=True)))
                hooks.append(layer.norm.register_forward_hook(watch(name + ".norm", _Range)))
            else:
                hooks.append(layer.register_forward_hook(watch(name + ".out", _Range)))
        for i, block in enumerate(net.residuals):
            hooks.append(block.register_forward_hook(watch(f"residuals.{i}.sum", _Range)))
        _run_calibration(fixed, images, hooks, fixed.cond.device, dtype)

        qlayers = nn.ModuleDict()
        last = layers[-1][0]
        for name, layer in layers:
            final = name == last
            if layer.norm is not None:
                st = stats[name + ".conv"]
                norm = stats[name + ".norm"]
                assert isinstance(st, _ChannelStats) and isinstance(norm, _Range)
                relu = layer.act == "relu"
                q = _QLayer(layer, fixed.cond, _qparams(st.range.lo, st.range.hi),
                            _qparams(0.0 if relu else norm.lo, norm.hi),
                            st.mean / st.count, st.std / st.count, final)
            else:
                out = stats[name + ".out"]
                q = _QLayer(layer, fixed.cond, _qparams(out.lo, out.hi), None, None, None,
                            final)
            qlayers[name.replace(".", "_")] = q
        sums = []
        for i in range(len(net.residuals)):
            r = stats[f"residuals.{i}.sum"]
            sums.append(_qparams(r.lo, r.hi))
        return cls(fixed, qlayers, sums)

    @_quiet()
    def forward(self, x: Tensor) -> Tensor:
        x, q, h, w = _quantize_image(x, CINTransformer.padding, "Int8CINTransformer")
        L = self.layers
        for i in range(3):
            q = L[f"encoder_{i}"](q)
        for i, (scale, zero) in enumerate(self.sums):
            y = L[f"residuals_{i}_conv2"](L[f"residuals_{i}_conv1"](q))
            q = torch.ops.quantized.add(q, y, scale, zero)
        q = L["decoder_1"](L["decoder_0"](q))
        y = L["decoder_2"](q)[:, :, :h, :w].contiguous()
        return y if self.mix == 1.0 else self.mix * y + (1.0 - self.mix) * x

    def extra_repr(self) -> str:
        c = self.config
        return f"int8, encoder={c.encoder}, decoder={c.decoder}, mix={self.mix:g}"
