"""Arbitrary style transfer with adaptive instance normalisation (Huang & Belongie 2017,
"Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization").

* :func:`adain`: ``AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)``, per sample and
  channel over the spatial positions.
* :class:`AdaINDecoder`: the decoder that mirrors VGG19 up to ``relu4_1`` (nearest-neighbour
  upsampling in place of pooling, reflection padding before every 3x3 convolution, no
  normalisation layers, a linear last layer), so features ``(N, C4, h, w)`` become an RGB image
  ``(N, 3, 8h, 8w)`` in (about) ``[0, 1]``.
* :class:`AdaINStylizer`: encoder + AdaIN with fixed style statistics + decoder as one
  image-to-image module ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]``: style interpolation
  (several styles with weights), spatial control (one mask per style, each region normalised
  with its own content statistics and given its style's, as in section 7 of the paper) and the
  content-style trade-off ``alpha``. Being an ordinary module, it can be run in batches, tiled,
  exported to ONNX/TorchScript and applied to folders and video like any per-style network.

Statistics are computed in float32 whatever the precision of the networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError

__all__ = [
    "ENCODER_LAYERS",
    "AdaINDecoder",
    "AdaINDecoderConfig",
    "AdaINStylizer",
    "adain",
    "mean_std",
    "region_stats",
]

#: The encoder's layers: the style loss layers, the last one also the AdaIN layer.
ENCODER_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
#: relu4_1 lies after three 2x2 poolings: images are padded to a multiple of this.
STRIDE = 8
EPS = 1e-5


def mean_std(features: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and standard deviation of ``(N, C, H, W)`` features over
    ``H, W``, as float32 ``(N, C, 1, 1)`` each; ``std = sqrt(var + eps)`` (population var)."""
    f = features.float()
    var, mean = torch.var_mean(f, dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def adain(content: Tensor, style: Tensor, eps: float = EPS) -> Tensor:
    """Adaptive instance normalisation: ``content`` features ``(N, C, h, w)`` normalised per
    channel and given the mean and std of ``style`` features ``(N or 1, C, h', w')``. Float32."""
    mc, sc = mean_std(content, eps)
    ms, ss = mean_std(style, eps)
    return (content.float() - mc) / sc * ss + ms


def region_stats(
    features: Tensor, masks: Tensor | None = None, eps: float = EPS
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted per-channel statistics of ``features`` ``(N, C, h, w)`` in each of ``R`` regions
    given by ``masks`` ``(N or 1, R, h, w)`` of weights in ``[0, 1]`` (None: one region, the
    whole map). Returns ``(mean, std, weight)``: float32 ``(N, R, C)``, ``(N, R, C)`` and the
    summed weights ``(N, R)``. An empty region gets mean 0 and std ``sqrt(eps)``."""
    s0, s1, s2 = region_sums(features, masks)
    return stats_from_sums(s0, s1, s2, eps) + (s0,)


def region_sums(features: Tensor, masks: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The weighted sums behind :func:`region_stats` (``sum w``, ``sum w f``, ``sum w f^2``):
    ``(N, R)``, ``(N, R, C)``, ``(N, R, C)`` in float64, so that tiles can be accumulated."""
    f = features.float()
    n = f.shape[0]
    if masks is None:
        # (counted with tensor ops, so that an exported graph keeps the size symbolic)
        s0 = torch.ones_like(f[:, 0]).sum((1, 2)).double()[:, None]
        s1 = f.sum((2, 3)).double()[:, None]
        s2 = f.square().sum((2, 3)).double()[:, None]
        return s0, s1, s2
    m = masks.float().expand(n, -1, -1, -1)
    s0 = m.sum((2, 3)).double()
    s1 = torch.einsum("nchw,nrhw->nrc", f, m).double()
    s2 = torch.einsum("nchw,nrhw->nrc", f.square(), m).double()
    return s0, s1, s2


def stats_from_sums(s0: Tensor, s1: Tensor, s2: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Mean and std (float32 ``(N, R, C)``) from the sums of :func:`region_sums`."""
    den = s0.clamp_min(1e-12)[..., None]
    mean = s1 / den
    var = (s2 / den - mean.square()).clamp_min(0.0)
    return mean.float(), (var + eps).sqrt().float()


def _pos_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive whole number, not {value!r}")
    return value


@dataclass(frozen=True)
class AdaINDecoderConfig:
    """Architecture of an :class:`AdaINDecoder`, stored in decoder files.

    widths: the encoder's channels in VGG19 blocks 1-4 (VGG19: 64, 128, 256, 512); the decoder
    mirrors them. Smaller widths pair with a small test encoder.
    """

    widths: tuple[int, int, int, int] = (64, 128, 256, 512)

    def __post_init__(self) -> None:
        w = tuple(self.widths)
        if len(w) != 4:
            raise InputError(f"decoder widths must be four numbers (VGG19 blocks 1-4), not {w!r}")
        for v in w:
            _pos_int("each decoder width", v)
        object.__setattr__(self, "widths", w)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdaINDecoderConfig:
        from impasto.config_io import config_from_dict

        return config_from_dict(cls, d)


def _conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class AdaINDecoder(nn.Module):
    """VGG19 ``relu4_1`` features ``(N, w4, h, w)`` -> RGB ``(N, 3, 8h, 8w)`` (not clamped).

    The mirror of the encoder (Huang & Belongie 2017, section 6.1): one convolution at 1/8,
    four at 1/4, two at 1/2 and two at full resolution, each 3x3 after reflection padding and
    followed by ReLU except the last; nearest-neighbour x2 upsampling between the scales.
    """

    def __init__(self, config: AdaINDecoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AdaINDecoderConfig()
        w1, w2, w3, w4 = self.config.widths
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.body = nn.Sequential(
            *_conv(w4, w3), up(),
            *_conv(w3, w3), *_conv(w3, w3), *_conv(w3, w3), *_conv(w3, w2), up(),
            *_conv(w2, w2), *_conv(w2, w1), up(),
            *_conv(w1, w1), *_conv(w1, 3, relu=False),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.body(features)

    def extra_repr(self) -> str:
        return f"widths={self.config.widths}"


def encoder_widths(encoder: nn.Module) -> tuple[int, int, int, int]:
    """The block 1-4 widths of a :class:`~impasto.nets.vgg.VGG19Features` (from its convs)."""
    body = getattr(encoder, "body", None)
    try:
        return tuple(body[f"conv{b}_1"].out_channels for b in (1, 2, 3, 4))  # type: ignore
    except (TypeError, KeyError):
        raise InputError("the AdaIN encoder must be a VGG19Features reaching relu4_1") from None


def _pad_to(x: Tensor, multiple: int, minimum: int = 2 * STRIDE) -> tuple[Tensor, int, int]:
    """Pads the bottom and right of ``x`` to a multiple of ``multiple``, at least ``minimum``
    (the decoder's reflection padding needs feature maps of at least 2 x 2)."""
    h, w = x.shape[-2:]
    ph = max(minimum, h + (-h) % multiple) - h
    pw = max(minimum, w + (-w) % multiple) - w
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, ph, pw


class AdaINStylizer(nn.Module):
    """Encoder, AdaIN towards fixed style statistics, decoder: RGB ``(N, 3, H, W)`` in
    ``[0, 1]`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]``, any ``H, W`` (padded to a multiple of 8,
    at least 16, by reflection and cropped back).

    Args:
        encoder: a :class:`~impasto.nets.vgg.VGG19Features` returning ``relu4_1``.
        decoder: the trained :class:`AdaINDecoder`.
        style_mean, style_std: ``(K, C)`` ``relu4_1`` statistics of ``K`` styles.
        weights: ``(K,)`` interpolation weights (normalised to sum 1; default equal). Without
            masks the target is ``sum_k w_k AdaIN(f_c, f_sk)`` (the paper's interpolation).
        masks: ``(K, Hm, Wm)`` in ``[0, 1]``, one per style, for the content image (resized to
            each input). Region ``k`` is normalised with the content statistics inside it and
            takes style ``k``'s. Where the masks overlap, the targets mix in proportion;
            where no mask covers the image, the content features pass unchanged.
        alpha: content-style trade-off; the decoder sees ``alpha * t + (1 - alpha) * f_c``.

    :meth:`forward` computes the content statistics of each input on its own;
    :meth:`content_sums` and ``forward(x, sums=...)`` let a caller fix them (tiling computes
    them over the whole image first).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: AdaINDecoder,
        style_mean: Tensor,
        style_std: Tensor,
        *,
        weights: Sequence[float] | Tensor | None = None,
        masks: Tensor | None = None,
        alpha: float = 1.0,
        layer: str = "relu4_1",
    ) -> None:
        super().__init__()
        k = style_mean.shape[0]
        if style_mean.shape != style_std.shape or style_mean.ndim != 2:
            raise ValueError("style_mean and style_std must both be (K, C)")
        if not 0.0 <= float(alpha) <= 1.0:
            raise InputError(f"alpha must lie in [0, 1], not {alpha}")
        self.encoder = encoder
        self.decoder = decoder
        self.layer = layer
        self.alpha = float(alpha)
        if weights is None:
            w = torch.full((k,), 1.0 / k)
        else:
            w = torch.as_tensor(weights, dtype=torch.float32).flatten()
            if w.numel() != k:
                raise InputError(f"{w.numel()} blend weights for {k} style(s); give one per style")
            if (w < 0).any() or float(w.sum()) <= 0 or not bool(torch.isfinite(w).all()):
                raise InputError("blend weights must be non-negative with a positive sum")
            w = w / w.sum()
        self.register_buffer("style_mean", style_mean.float().clone())
        self.register_buffer("style_std", style_std.float().clone())
        self.register_buffer("weights", w)
        if masks is not None:
            if masks.ndim != 3 or masks.shape[0] != k:
                raise InputError(f"{masks.shape[0] if masks.ndim == 3 else '?'} masks for {k} "
                                 "style(s); give one mask per style")
            self.register_buffer("masks", masks.float().clamp(0, 1)[None].clone())
        else:
            self.masks = None
        self._mask_cache: tuple[tuple[int, int], Tensor] | None = None

    # -- pieces

    def features(self, x: Tensor) -> Tensor:
        """``relu4_1`` features of images ``(N, 3, H, W)`` whose sides are multiples of 8."""
        return self.encoder(x)[self.layer]

    def region_masks(self, size: tuple[int, int], image_size: tuple[int, int],
                     box: tuple[int, int, int, int] | None = None) -> Tensor | None:
        """The masks as feature-map weights ``(1, K, h, w)`` for an image of ``image_size``
        (H, W), or for the part ``box = (y0, y1, x0, x1)`` of it (a tile); None without masks.
        Each feature cell takes the mean of the mask over its 8x8 pixels."""
        if self.masks is None:
            return None
        H, W = image_size
        cached = self._mask_cache
        if cached is not None and cached[0] == (H, W):
            m = cached[1]
        else:
            m = F.interpolate(self.masks, size=(H, W), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
            if box is not None:  # tiles of one large image: resize once
                self._mask_cache = ((H, W), m)
        if box is not None:
            y0, y1, x0, x1 = box
            m = m[..., y0:y1, x0:x1]
        m, _, _ = _pad_to(m, STRIDE)
        m = F.avg_pool2d(m, STRIDE)
        if m.shape[-2:] != tuple(size):
            m = F.interpolate(m, size=size, mode="nearest")
        return m

    def content_sums(self, f: Tensor, m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        return region_sums(f, m)

    def target(self, f: Tensor, m: Tensor | None, sums: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """The AdaIN target ``t`` (float32, like ``f``) from content sums (see class doc)."""
        mu_c, sd_c = stats_from_sums(*sums)  # (N, R, C)
        if m is None:
            mu_s = (self.weights[:, None] * self.style_mean).sum(0)  # (C,)
            sd_s = (self.weights[:, None] * self.style_std).sum(0)
            a = sd_s / sd_c[:, 0]  # (N, C)
            b = mu_s - mu_c[:, 0] * a
            return f * a[..., None, None] + b[..., None, None]
        a = self.style_std[None] / sd_c  # (N, K, C)
        b = self.style_mean[None] - mu_c * a
        m = m.expand(f.shape[0], -1, -1, -1)
        cover = m.sum(1, keepdim=True)  # (N, 1, h, w)
        share = m / cover.clamp_min(1.0)  # overlapping masks mix; sum <= 1
        rest = 1.0 - share.sum(1, keepdim=True)
        scale = torch.einsum("nkc,nkhw->nchw", a, share) + rest
        shift = torch.einsum("nkc,nkhw->nchw", b, share)
        return f * scale + shift

    def decode(self, f: Tensor, t: Tensor) -> Tensor:
        mix = t if self.alpha == 1.0 else self.alpha * t + (1.0 - self.alpha) * f
        weight = next(self.decoder.parameters(), None)  # None: an int8 decoder (float in)
        return self.decoder(mix if weight is None else mix.to(weight.dtype))

    # -- whole images

    def forward(self, x: Tensor, sums: tuple[Tensor, Tensor, Tensor] | None = None,
                box: tuple[int, int, int, int] | None = None,
                image_size: tuple[int, int] | None = None) -> Tensor:
        """Stylise ``x`` ``(N, 3, H, W)``. ``sums``: fixed content sums (from a pass over the
        whole image) instead of ``x``'s own; ``box``/``image_size``: ``x`` is that part of a
        larger image (for the masks)."""
        h, w = x.shape[-2:]
        xp, _, _ = _pad_to(x, STRIDE)
        f = self.features(xp).float()
        m = self.region_masks(tuple(f.shape[-2:]), image_size or (h, w),
                              box if image_size is not None else None)
        if m is not None:
            m = m.to(f.device)
        if sums is None:
            sums = region_sums(f, m)
        t = self.target(f, m, sums)
        y = self.decode(f, t)
        return y[..., :h, :w].float().clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        k = self.style_mean.shape[0]
        return f"styles={k}, alpha={self.alpha}, masks={self.masks is not None}"
