"""Int8 inference for the feed-forward style networks (post-training static quantisation).

On a CPU with VNNI (AVX512-VNNI, AVX-VNNI or AMX), an int8 convolution does four times the
multiply-adds of an fp32 one per instruction. On the 2-core AVX512 machine impasto is developed
on, a :class:`~impasto.nets.transformer.TransformerNet` runs 4.4-4.7x faster in int8 than in
fp32 and AdaIN 4.5-5.1x (bf16: 2.2-2.5x); see ``benchmarks/fast_style.py``.

:class:`Int8TransformerNet` is built from a float network and a few calibration images:

* weights: symmetric int8 per output channel;
* activations: uint8 per tensor, with ranges from the ``QUANTILE`` / ``1 - QUANTILE`` quantiles
  seen in calibration (min/max would spend the 256 levels on a few outliers);
* every convolution that feeds an instance norm is first *equalised*: its output channels are
  shifted and scaled to zero mean and unit standard deviation on the calibration images. Instance
  normalisation removes each channel's own mean and scale, so the network computes the same
  function, but one uint8 range then fits all channels (without it, channels with a small spread
  lose most of their resolution: measured 33.5 against 39.0 dB PSNR to fp32 at 512 px);
* instance norm + ReLU is one quantised op whose output range starts at 0; reflection padding
  is done on the uint8 values in NHWC, the layout the int8 convolutions read;
* the input is quantised with scale 1/255, which holds an 8-bit image exactly; the last
  convolution's output is dequantised before the sigmoid.

:func:`quantize_adain` does the same for AdaIN: the VGG19 encoder and the decoder in int8
(ReLU fused), the content statistics and the AdaIN step in float32.

The results are deterministic and close to fp32: on trained networks, 31-40 dB PSNR between the
8-bit outputs at 512 and 1024 px (bf16: 46-51 dB). This uses PyTorch's quantised tensors
(``torch.ao.nn.quantized``), which PyTorch has announced it will remove in a future release;
:func:`int8_supported` is then False and callers fall back to bf16 or fp32.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.device import autocast
from impasto.nets.transformer import TransformerNet, _ConvLayer, _Residual

__all__ = [
    "ADAIN_QUANTILE",
    "CALIBRATION_SIDE",
    "QUANTILE",
    "Int8AdaINDecoder",
    "Int8TransformerNet",
    "Int8VGGFeatures",
    "int8_supported",
    "quantize_adain",
]

#: Upper quantile of each activation used as the top of its uint8 range (the bottom: 1 - this).
QUANTILE = 0.9999
#: Calibration images are scaled down to at most this longest side.
CALIBRATION_SIDE = 128
#: Elements sampled per tensor for the quantiles (``torch.quantile`` sorts them all).
_SAMPLE = 1 << 16
#: Quantised engines that run int8 convolutions with VNNI on x86.
_ENGINES = ("x86", "fbgemm", "onednn")



@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences PyTorch's warning that quantised tensors will be removed (int8_supported()
    tracks that)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*",
                                category=UserWarning)
        yield


@functools.lru_cache(maxsize=None)
def _cpu_has_vnni() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def int8_supported(device: torch.device | str = "cpu") -> bool:
    """Whether :class:`Int8TransformerNet` runs fast on ``device``: a CPU with VNNI and a
    PyTorch that still has quantised tensors and an x86 quantised engine."""
    if torch.device(device).type != "cpu" or not _cpu_has_vnni():
        return False
    engines = getattr(torch.backends.quantized, "supported_engines", ())
    return (torch.backends.quantized.engine in _ENGINES
            and any(e in engines for e in _ENGINES)
            and hasattr(torch.ao.nn, "quantized")
            and hasattr(torch.ops.quantized, "instance_norm"))


def _qparams(lo: float, hi: float) -> tuple[float, int]:
    """uint8 scale and zero point covering ``[lo, hi]`` (widened to include 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-6) / 255.0
    return scale, int(min(255, max(0, round(-lo / scale))))


def _quantiles(t: Tensor, quantile: float | None = None) -> tuple[float, float]:
    quantile = QUANTILE if quantile is None else quantile
    flat = t.detach().float().flatten()
    if quantile >= 1.0:
        lo, hi = torch.aminmax(flat)
        return lo.item(), hi.item()
    if flat.numel() > _SAMPLE:  # a fixed stride, so calibration is deterministic
        flat = flat[:: flat.numel() // _SAMPLE + 1]
    # the nearest ranks: the k-th smallest and largest (topk of a small k: no full sort)
    k = max(1, min(flat.numel(), round((1.0 - quantile) * flat.numel()) + 1))
    lo = flat.topk(k, largest=False, sorted=True).values[-1].item()
    hi = flat.topk(k, sorted=True).values[-1].item()
    return lo, hi


class _Range:
    """The union of the quantile ranges seen (``quantile``: default ``QUANTILE``)."""

    def __init__(self, quantile: float | None = None) -> None:
        self.quantile = quantile
        self.lo = float("inf")
        self.hi = float("-inf")

    def add(self, t: Tensor) -> None:
        lo, hi = _quantiles(t, self.quantile)
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)


class _ChannelStats:
    """Per-channel mean and (spatial) standard deviation of a conv output, averaged over
    images, and the quantile range of the output once equalised with the image's own stats
    (``equalize=False``: of the output as it is)."""

    def __init__(self, equalize: bool = True) -> None:
        self.equalize = equalize
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self.count = 0
        self.range = _Range()

    def add(self, y: Tensor) -> None:
        y = y.detach().float()
        mean = y.mean(dim=(2, 3))                       # (N, C)
        std = y.std(dim=(2, 3)).clamp_min(1e-6)         # (N, C)
        self.range.add((y - mean[..., None, None]) / std[..., None, None]
                       if self.equalize else y)
        m, s = mean.sum(0), std.sum(0)
        self.mean = m if self.mean is None else self.mean + m
        self.std = s if self.std is None else self.std + s
        self.count += y.shape[0]


def _reflect_pad_nhwc(x: Tensor, p: int) -> Tensor:
    """Reflection padding of a quint8 tensor, done on its uint8 values in NHWC (quantised
    ``F.pad`` returns NCHW, which the int8 convolution would copy back)."""
    if p == 0:
        return x
    u = x.int_repr().permute(0, 2, 3, 1)  # (N, H, W, C) view of an NHWC tensor
    n, h, w, c = u.shape
    out = torch.empty((n, h + 2 * p, w + 2 * p, c), dtype=torch.uint8, device=u.device)
    out[:, p:h + p, p:w + p] = u
    out[:, :p, p:w + p] = u[:, 1:p + 1].flip(1)
    out[:, h + p:, p:w + p] = u[:, h - p - 1:h - 1].flip(1)
    out[:, :, :p] = out[:, :, p + 1:2 * p + 1].flip(2)
    out[:, :, w + p:] = out[:, :, w - 1:w + p - 1].flip(2)
    return torch._make_per_tensor_quantized_tensor(
        out.permute(0, 3, 1, 2), x.q_scale(), x.q_zero_point())


def _int8_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor | None, out_q: tuple[float, int],
               *, relu: bool = False, padding: int = 0) -> nn.Module:
    """An int8 convolution with ``conv``'s shape and ``weight``/``bias`` (symmetric int8 per
    output channel), its output quantised with ``out_q``; ``relu``: fused ReLU."""
    w_scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / 127.0
    qw = torch.quantize_per_channel(weight, w_scale.double(), torch.zeros_like(
        w_scale, dtype=torch.long), 0, torch.qint8)
    cls = torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d
    q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=padding)
    q.set_weight_bias(qw, bias)
    q.scale, q.zero_point = out_q
    return q


#: Packed int8 weights of float convolutions that are quantised as they are (AdaIN), so that
#: a new calibration only sets new activation ranges: float conv -> (weight version, relu,
#: padding, int8 conv). Quantising and packing the weights is most of an AdaIN calibration.
_PACKED: weakref.WeakKeyDictionary[nn.Conv2d, tuple[tuple[int, int], bool, int, nn.Module]] = (
    weakref.WeakKeyDictionary())


class _PackedConv(nn.Module):
    """An int8 convolution on shared packed weights (``packed``, a quantised conv module)
    with its own output range ``out_q`` (what the quantised module's forward does)."""

    def __init__(self, packed: nn.Module, out_q: tuple[float, int], relu: bool) -> None:
        super().__init__()
        self.packed = packed
        self.scale, self.zero_point = out_q
        self.op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x, self.packed._packed_params, self.scale, self.zero_point)


def _int8_conv_of(conv: nn.Conv2d, out_q: tuple[float, int], *, relu: bool,
                  padding: int = 0) -> nn.Module:
    """:func:`_int8_conv` of ``conv``'s own weights, quantised and packed once per weight
    version, with the output range ``out_q``."""
    version = (conv.weight._version, conv.weight.data_ptr())
    cached = _PACKED.get(conv)
    if cached is None or cached[:3] != (version, relu, padding):
        q = _int8_conv(conv, conv.weight.detach().float(),
                       None if conv.bias is None else conv.bias.detach().float(), out_q,
                       relu=relu, padding=padding)
        cached = (version, relu, padding, q)
        _PACKED[conv] = cached
    return _PackedConv(cached[3], out_q, relu)


def _quantize_input(x: Tensor, q: tuple[float, int]) -> Tensor:
    return torch.quantize_per_tensor(x.float().contiguous(memory_format=torch.channels_last),
                                     q[0], q[1], torch.quint8)


def _quantize_image(x: Tensor, padding, what: str) -> tuple[Tensor, Tensor, int, int]:
    """A transformer's input: ``x`` (N, 3, H, W) in [0, 1] as float, its quantised copy padded
    (reflect, or replicate when too small) to what ``padding(h, w)`` asks, and ``h, w``."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{what} expects (N, 3, H, W) images")
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = padding(h, w)
    x = x.float()
    xp = x
    if ph > 0 or pw > 0:
        xp = F.pad(x, [0, pw, 0, ph], mode="reflect" if ph < h and pw < w else "replicate")
    return x, _quantize_input(xp, (1.0 / 255.0, 0)), h, w


def _calibration_view(x: Tensor, side: int) -> Tensor:
    """``x`` as float ``(N, 3, h, w)`` scaled down to at most ``side`` (antialiased)."""
    x = (x if x.ndim == 4 else x[None]).float()
    longest = max(x.shape[-2:])
    if longest > side:
        f = side / longest
        size = [max(1, round(s * f)) for s in x.shape[-2:]]
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1)
    return x


def _run_calibration(net: nn.Module, images: Iterable[Tensor], hooks: list,
                     device: torch.device, dtype: torch.dtype) -> None:
    """Runs ``net`` on each image (scaled down to ``CALIBRATION_SIDE``; under ``dtype``
    autocast) so that ``hooks`` see the activations, then removes them."""
    seen = 0
    try:
        for image in images:
            with autocast(device, dtype):
                net(_calibration_view(image.to(device), CALIBRATION_SIDE))
            seen += 1
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError("int8 calibration needs at least one image")


class _QConv(nn.Module):
    """Reflection pad, int8 convolution, then (optionally) int8 instance norm (+ ReLU)."""

    def __init__(self, layer: _ConvLayer, out_q: tuple[float, int],
                 norm_q: tuple[float, int] | None, shift: Tensor | None,
                 scale: Tensor | None) -> None:
        super().__init__()
        self.pad = int(layer[0].padding[0])
        conv: nn.Conv2d = layer[1]
        w = conv.weight.detach().float()
        b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0])
        if scale is not None:  # equalised: (conv(x) - shift) / scale, per channel
            w = w / scale.view(-1, 1, 1, 1)
            b = (b - shift) / scale
        self.conv = _int8_conv(conv, w, b, out_q)
        self.norm = norm_q is not None
        if self.norm:
            inorm: nn.InstanceNorm2d = layer[2]
            c = conv.out_channels
            self.register_buffer("weight", inorm.weight.detach().float().clone()
                                 if inorm.weight is not None else torch.ones(c))
            self.register_buffer("bias", inorm.bias.detach().float().clone()
                                 if inorm.bias is not None else torch.zeros(c))
            self.eps = float(inorm.eps)
            self.norm_scale, self.norm_zero = norm_q
        self.relu = any(isinstance(m, nn.ReLU) for m in layer)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(_reflect_pad_nhwc(x, self.pad))
        if self.norm:  # with ReLU, the range starts at 0: the clamp is the ReLU
            return torch.ops.quantized.instance_norm(
                x, self.weight, self.bias, self.eps, self.norm_scale, self.norm_zero)
        return torch.relu(x) if self.relu else x


class Int8TransformerNet(nn.Module):
    """An int8 version of a :class:`TransformerNet` for CPU inference (see the module doc).

    Build it with :meth:`calibrate`. Called on float ``(N, 3, H, W)`` in ``[0, 1]`` (any
    ``H, W``), it returns float32 ``(N, 3, H, W)`` in ``[0, 1]``, like the float network.
    """

    def __init__(self, net: TransformerNet, layers: nn.ModuleDict,
                 sums: list[tuple[float, int]]) -> None:
        super().__init__()
        self.config = net.config
        self.layers = layers
        self.sums = list(sums)
        self.num_residual = len(net.residuals)

    @classmethod
    @torch.no_grad()
    @_quiet()
    def calibrate(cls, net: TransformerNet, images: Iterable[Tensor], *,
                  equalize: bool = True, dtype: torch.dtype = torch.float32
                  ) -> Int8TransformerNet:
        """Quantise ``net`` with activation ranges measured on ``images`` (float tensors
        ``(N, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]``; scaled down to at most
        ``CALIBRATION_SIDE``). The float network is run once per image, under ``dtype``
        autocast (the runner passes bf16 where it is fast: ranges need no more), and is not
        modified. ``equalize=False`` skips the equalisation (for comparison only)."""
        if not isinstance(net, TransformerNet):
            raise TypeError(f"int8 needs a TransformerNet, not {type(net).__name__}")
        if not int8_supported("cpu"):
            raise RuntimeError("int8 inference needs a CPU with VNNI and PyTorch's quantised "
                               "tensors (x86 engine)")
        net = net.eval()
        device = next(net.parameters()).device
        stats: dict[str, _ChannelStats | _Range] = {}
        hooks = []

        def watch(name: str, kind: Callable[[], _ChannelStats | _Range]) -> object:
            def hook(_m, _inp, out):
                stats.setdefault(name, kind()).add(out)
            return hook

        def channels() -> _ChannelStats:
            return _ChannelStats(equalize)

        for name, m in net.named_modules():
            if isinstance(m, _ConvLayer):
                normed = len(m) > 2 and isinstance(m[2], nn.InstanceNorm2d)
                hooks.append(m[1].register_forward_hook(
                    watch(name + ".conv", channels if normed else _Range)))
                if normed:
                    hooks.append(m[2].register_forward_hook(watch(name + ".norm", _Range)))
            elif isinstance(m, _Residual):
                hooks.append(m.register_forward_hook(watch(name + ".sum", _Range)))
        _run_calibration(net, images, hooks, device, dtype)

        layers = nn.ModuleDict()
        for name, m in net.named_modules():
            if not isinstance(m, _ConvLayer):
                continue
            st = stats[name + ".conv"]
            if isinstance(st, _ChannelStats):
                norm = stats[name + ".norm"]
                relu = any(isinstance(x, nn.ReLU) for x in m)
                layer = _QConv(m, _qparams(st.range.lo, st.range.hi),
                               _qparams(0.0 if relu else norm.lo, norm.hi),
                               st.mean / st.count if equalize else None,
                               st.std / st.count if equalize else None)
            else:
                layer = _QConv(m, _qparams(st.lo, st.hi), None, None, None)
            layers[name.replace(".", "_")] = layer
        sums = [_qparams(stats[f"residuals.{i}.sum"].lo, stats[f"residuals.{i}.sum"].hi)
                for i in range(len(net.residuals))]
        return cls(net, layers, sums)

    @_quiet()
    def forward(self, x: Tensor) -> Tensor:
        _, q, h, w = _quantize_image(x, TransformerNet.padding, "Int8TransformerNet")
        L = self.layers
        for i in range(3):
            q = L[f"encoder_{i}"](q)
        for i, (scale, zero) in enumerate(self.sums):
            y = L[f"residuals_{i}_body_1"](L[f"residuals_{i}_body_0"](q))
            q = torch.ops.quantized.add(q, y, scale, zero)
        for i in range(2):
            q = L[f"decoder_{i}_1"](F.interpolate(q, scale_factor=2, mode="nearest"))
        y = torch.sigmoid(L["decoder_2"](q).dequantize())
        return y[:, :, :h, :w].contiguous()

    def extra_repr(self) -> str:
        c = self.config
        return (f"int8, channels={c.channels}, num_residual={c.num_residual}, "
                f"kernel_size={c.kernel_size}")


# --------------------------------------------------------------------------------------------
# AdaIN: the VGG19 encoder and the decoder in int8, the AdaIN step itself in float32


#: AdaIN's ranges are the full ranges seen: VGG activations are heavy-tailed, and clipping
#: them moves the content statistics AdaIN normalises with (measured at 512 px on three photos:
#: 29.6-34.7 dB PSNR to fp32 with the 99.99% quantile, 34.4-37.0 dB with min/max).
ADAIN_QUANTILE = 1.0


class Int8VGGFeatures(nn.Module):
    """An int8 :class:`~impasto.nets.vgg.VGG19Features` whose returned layers are ReLU outputs:
    the preprocessing in float, then int8 convolutions with fused ReLU and pooling on uint8;
    returns float32 ``{name: (N, C, h, w)}`` like the float module. Built by
    :func:`quantize_adain`."""

    def __init__(self, encoder: nn.Module, ranges: dict[str, tuple[float, float]]) -> None:
        super().__init__()
        self.layers = list(encoder.layers)
        self.preprocessing = encoder.preprocessing
        self.input_q = _qparams(*ranges["input"])
        self.body = nn.ModuleDict()
        names = list(encoder.body.keys())
        for i, (name, m) in enumerate(encoder.body.items()):
            if isinstance(m, nn.Conv2d):
                relu = names[i + 1] if i + 1 < len(names) else None
                if relu is None or not relu.startswith("relu"):
                    raise ValueError("int8 VGG features need every conv followed by its ReLU")
                self.body[name] = _int8_conv_of(m, _qparams(0.0, ranges[relu][1]), relu=True,
                                                padding=int(m.padding[0]))
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                self.body[name] = m
            elif not isinstance(m, nn.ReLU):
                raise ValueError(f"int8 VGG features: unexpected layer {name}")
        for name in self.layers:
            if not name.startswith("relu"):
                raise ValueError(f"int8 VGG features return ReLU outputs only, not {name}")

    @_quiet()
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        q = _quantize_input(self.preprocessing(x.float()), self.input_q)
        out: dict[str, Tensor] = {}
        wanted = set(self.layers)
        for name, module in self.body.items():
            q = module(q)
            relu = "relu" + name[4:]
            if name.startswith("conv") and relu in wanted:
                out[relu] = q.dequantize()
        return out


class Int8AdaINDecoder(nn.Module):
    """An int8 :class:`~impasto.nets.adain.AdaINDecoder`: float features in (quantised with
    the calibrated range), reflection padding on uint8 in NHWC, int8 convolutions with fused
    ReLU, nearest upsampling, and a float32 image out. Built by :func:`quantize_adain`."""

    def __init__(self, decoder: nn.Module, ranges: dict[str, tuple[float, float]]) -> None:
        super().__init__()
        self.config = decoder.config
        self.input_q = _qparams(*ranges["input"])
        body = list(decoder.body)
        self.steps: list[tuple[str, int]] = []
        self.convs = nn.ModuleList()
        pad = 0
        for i, m in enumerate(body):
            if isinstance(m, nn.ReflectionPad2d):
                pad = int(m.padding[0])
            elif isinstance(m, nn.Conv2d):
                relu = i + 1 < len(body) and isinstance(body[i + 1], nn.ReLU)
                lo, hi = ranges[f"body.{i + 1}" if relu else f"body.{i}"]
                self.convs.append(_int8_conv_of(m, _qparams(0.0 if relu else lo, hi),
                                                relu=relu))
                self.steps.append(("conv", pad))
                pad = 0
            elif isinstance(m, nn.Upsample):
                self.steps.append(("up", 0))
            elif not isinstance(m, nn.ReLU):
                raise ValueError(f"int8 AdaIN decoder: unexpected layer {type(m).__name__}")

    @_quiet()
    def forward(self, features: Tensor) -> Tensor:
        q = _quantize_input(features, self.input_q)
        convs = iter(self.convs)
        for kind, pad in self.steps:
            if kind == "up":
                q = F.interpolate(q, scale_factor=2, mode="nearest")
            else:
                q = next(convs)(_reflect_pad_nhwc(q, pad))
        return q.dequantize()


@torch.no_grad()
@_quiet()
def quantize_adain(stylizer: nn.Module, images: Iterable[Tensor], *,
                   dtype: torch.dtype = torch.float32) -> nn.Module:
    """An :class:`~impasto.nets.adain.AdaINStylizer` like ``stylizer`` (the same styles,
    weights, masks and alpha) whose encoder and decoder run in int8, with activation ranges
    (min/max, ``ADAIN_QUANTILE``) measured by running ``stylizer`` on ``images`` (float
    ``(N, 3, H, W)`` in ``[0, 1]``, scaled down to ``CALIBRATION_SIDE``) under ``dtype``
    autocast. The content statistics and the AdaIN step stay float32."""
    from impasto.nets.adain import AdaINStylizer

    if not isinstance(stylizer, AdaINStylizer):
        raise TypeError(f"int8 AdaIN needs an AdaINStylizer, not {type(stylizer).__name__}")
    if not int8_supported("cpu"):
        raise RuntimeError("int8 inference needs a CPU with VNNI and PyTorch's quantised "
                           "tensors (x86 engine)")
    enc, dec = stylizer.encoder, stylizer.decoder
    enc_ranges: dict[str, _Range] = {}
    dec_ranges: dict[str, _Range] = {}

    def watch(table: dict[str, _Range], name: str, pre: bool = False) -> object:
        def hook(_m, args, out=None):
            table.setdefault(name, _Range(ADAIN_QUANTILE)).add(args[0] if pre else out)
        return hook

    first = next(iter(enc.body.values()))
    hooks = [first.register_forward_pre_hook(watch(enc_ranges, "input", pre=True)),
             dec.body[0].register_forward_pre_hook(watch(dec_ranges, "input", pre=True))]
    for name, m in enc.body.items():
        if isinstance(m, nn.ReLU):
            hooks.append(m.register_forward_hook(watch(enc_ranges, name)))
    for i, m in enumerate(dec.body):
        if isinstance(m, (nn.ReLU, nn.Conv2d)):
            hooks.append(m.register_forward_hook(watch(dec_ranges, f"body.{i}")))
    _run_calibration(stylizer, images, hooks, stylizer.style_mean.device, dtype)
    er = {k: (r.lo, r.hi) for k, r in enc_ranges.items()}
    dr = {k: (r.lo, r.hi) for k, r in dec_ranges.items()}
    masks = stylizer.masks[0] if stylizer.masks is not None else None
    return AdaINStylizer(
        Int8VGGFeatures(enc, er), Int8AdaINDecoder(dec, dr), stylizer.style_mean,
        stylizer.style_std, weights=stylizer.weights, masks=masks, alpha=stylizer.alpha,
        layer=stylizer.layer,
    ).eval()
