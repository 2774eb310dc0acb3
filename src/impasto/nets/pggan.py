"""Progressive GAN networks (Karras et al. 2018, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation"): a generator and a discriminator that grow from 4x4 to the
target resolution, doubling each time, with a smooth fade-in of every new resolution.

Both networks are built for the target resolution at once (every block and every
toRGB/fromRGB layer exists from the start, so the state dict never changes shape); which part
runs is set by the *stage*::

    config = PgganNetConfig(resolution=64, channels=1, widths=(64, 64, 32, 16, 8))
    G, D = build_pggan(config)
    G.set_stage(16, alpha=0.3)   # fading in 16x16: 30% new block, 70% upsampled 8x8 output
    D.set_stage(16, alpha=0.3)
    x = G(torch.randn(8, config.z_dim))  # (8, 1, 16, 16)
    logits = D(x)                        # (8,)
    G.set_stage(16)                      # 16x16, stable (alpha None)

The pieces, as in the paper and its official code (``tkarras/progressive_growing_of_gans``):

* **Equalised learning rate**: :class:`EqualizedConv2d` and :class:`EqualizedLinear` draw their
  weights from N(0, 1) and multiply them by He's constant ``gain / sqrt(fan_in)`` at run time,
  in every forward pass, so that Adam's scale-free updates move every layer at the same speed.
  Biases start at 0.
* **Pixelwise feature normalisation** (:func:`pixel_norm`) after every convolution of G, and
  on the latent (``normalize_latents``): each pixel's feature vector is divided by its RMS.
* **Minibatch standard deviation** (:func:`minibatch_stddev`) before D's last block: the
  standard deviation of every feature over a group of ``mbstd_group_size`` samples, averaged to
  one number per group and appended as one more feature map.
* **Fade-in**: at stage ``(R, alpha)`` G returns ``lerp(up(toRGB_{R/2}(h_{R/2})),
  toRGB_R(h_R), alpha)`` (``up``: nearest-neighbour 2x), and D reads
  ``lerp(fromRGB_{R/2}(avgpool(x)), block_R(fromRGB_R(x)), alpha)`` into its next block.
  ``torch.lerp`` is exact at both ends: ``alpha=1`` gives the stable network's numbers and
  ``alpha=0`` those of the previous resolution (upsampled, for G).

Layout (``w_r`` = ``widths`` entry of resolution ``r``; leaky ReLU slope 0.2 everywhere):

* G, 4x4: (pixel norm of z) - dense ``z_dim -> 16 w_4`` (gain ``sqrt(2)/4``, a bias per
  channel) - reshape to 4x4 - lrelu - PN - conv3x3 - lrelu - PN. Block ``r`` >= 8: nearest 2x
  upsample - conv3x3 ``w_{r/2} -> w_r`` - lrelu - PN - conv3x3 - lrelu - PN. toRGB ``r``:
  conv1x1 ``w_r -> channels``, gain 1, linear output (no tanh; images live in about
  ``[-1, 1]``).
* D: fromRGB ``r``: conv1x1 ``channels -> w_r`` - lrelu. Block ``r`` >= 8: conv3x3
  ``w_r -> w_r`` - lrelu - conv3x3 ``w_r -> w_{r/2}`` - lrelu - 2x2 average pool. Last block
  (4x4): minibatch stddev (+1 channel) - conv3x3 ``w_4 + 1 -> w_4`` - lrelu - dense
  ``16 w_4 -> w_4`` - lrelu - dense ``w_4 -> 1`` (gain 1). D returns raw scores ``(N,)``.

Generators take ``(z, y=None)`` and discriminators ``(x, y=None)`` like the other GANs of
:mod:`impasto.nets.gan` (PGGAN here is unconditional: ``y`` must be None), so the GAN losses
and :class:`impasto.gan.GanGenerator` work with them unchanged. ``G.resolution`` is the size of
the images G makes at its current stage; ``G.target_resolution`` the size it grows to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError

__all__ = [
    "MAX_RESOLUTION",
    "EqualizedConv2d",
    "EqualizedLinear",
    "MinibatchStddev",
    "PgganDiscriminator",
    "PgganGenerator",
    "PgganNetConfig",
    "PixelNorm",
    "build_pggan",
    "check_pggan_resolution",
    "default_widths",
    "downsample2x",
    "minibatch_stddev",
    "pixel_norm",
    "pggan_resolutions",
    "upsample2x",
]

#: The largest target resolution a configuration accepts (as in the paper).
MAX_RESOLUTION = 1024
_LRELU = 0.2


# --------------------------------------------------------------------------------------------
# resolutions and widths


def _is_power_of_two(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and value > 0
        and value & (value - 1) == 0
    )


def check_pggan_resolution(resolution: Any, name: str = "resolution") -> int:
    """``resolution`` if it is a power of two from 4 to :data:`MAX_RESOLUTION`, else
    :class:`InputError` (one line)."""
    if not _is_power_of_two(resolution) or not 4 <= resolution <= MAX_RESOLUTION:
        raise InputError(
            f"{name} {resolution!r} is not a power of two from 4 to {MAX_RESOLUTION} "
            "(4, 8, 16, ...); progressive growing doubles the size from 4x4"
        )
    return int(resolution)


def pggan_resolutions(resolution: int, start: int = 4) -> tuple[int, ...]:
    """The resolutions from ``start`` to ``resolution``, doubling: ``(4, 8, ..., resolution)``."""
    resolution = check_pggan_resolution(resolution)
    start = check_pggan_resolution(start, "start resolution")
    out = []
    r = start
    while r <= resolution:
        out.append(r)
        r *= 2
    return tuple(out)


def default_widths(resolution: int, fmap_base: int = 8192, fmap_max: int = 512) -> tuple[int, ...]:
    """Feature maps per resolution ``4, 8, ..., resolution`` as in the paper's code:
    ``min(fmap_base / r * 2, fmap_max)`` at resolution ``r`` (8192 and 512 give 512 up to 32x32,
    then 256, 128, 64, 32, 16 at 1024x1024), at least 1."""
    return tuple(
        max(1, min(int(fmap_base / (r / 2)), fmap_max)) for r in pggan_resolutions(resolution)
    )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, not {value!r}")


@dataclass(frozen=True)
class PgganNetConfig:
    """Everything needed to rebuild a progressive G/D pair (stored in checkpoints).

    Args:
        resolution: the target image side, a power of two from 4 to 1024.
        channels: 1 (grey) or 3 (RGB).
        z_dim: latent size (the paper: 512).
        widths: feature maps per resolution, one per resolution from 4x4 to the target
            (``(512, 512, 256)`` for a 16x16 target); ``None``: :func:`default_widths` from
            ``fmap_base`` and ``fmap_max``. A longer tuple is cut to the resolutions used.
            Resolved on construction, so :meth:`to_dict` holds the actual widths.
        fmap_base, fmap_max: the paper's width formula, used when ``widths`` is None.
        mbstd_group_size: group size of the minibatch-stddev layer (the paper's code: 4);
            0 or 1 turns the layer off.
        normalize_latents: pixel-normalise ``z`` before the first layer (the paper: on).
        pixelnorm: pixelwise feature normalisation in G (the paper: on).

    Invalid values raise :class:`InputError` on construction.
    """

    resolution: int = 64
    channels: int = 3
    z_dim: int = 512
    widths: tuple[int, ...] | None = None
    fmap_base: int = 8192
    fmap_max: int = 512
    mbstd_group_size: int = 4
    normalize_latents: bool = True
    pixelnorm: bool = True

    def __post_init__(self) -> None:
        check_pggan_resolution(self.resolution)
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise InputError(f"channels must be 1 (grey) or 3 (RGB), not {self.channels!r}")
        _check_int("z_dim", self.z_dim, 1)
        _check_int("fmap_base", self.fmap_base, 1)
        _check_int("fmap_max", self.fmap_max, 1)
        _check_int("mbstd_group_size", self.mbstd_group_size, 0)
        for name in ("normalize_latents", "pixelnorm"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, not {getattr(self, name)!r}")
        levels = pggan_resolutions(self.resolution)
        if self.widths is None:
            widths = default_widths(self.resolution, self.fmap_base, self.fmap_max)
        else:
            if isinstance(self.widths, (str, bytes)) or not hasattr(self.widths, "__len__"):
                raise InputError(f"widths must be a list of whole numbers, not {self.widths!r}")
            widths = tuple(self.widths)
            if len(widths) < len(levels):
                raise InputError(
                    f"widths has {len(widths)} entries for {len(levels)} resolutions "
                    f"({levels[0]} to {levels[-1]}); give one width per resolution from 4x4"
                )
            widths = widths[: len(levels)]
            for w in widths:
                _check_int("every width", w, 1)
        object.__setattr__(self, "widths", widths)

    @property
    def arch(self) -> str:
        """``"pggan"``: its name in :data:`impasto.nets.gan.GAN_ARCH_REGISTRY`."""
        return "pggan"

    @property
    def resolutions(self) -> tuple[int, ...]:
        """``(4, 8, ..., resolution)``."""
        return pggan_resolutions(self.resolution)

    def width(self, resolution: int) -> int:
        """The feature maps at ``resolution``."""
        assert self.widths is not None
        return self.widths[self.resolutions.index(resolution)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``widths`` as a list), safe for JSON and ``weights_only`` checkpoints."""
        d = asdict(self)
        d["widths"] = list(self.widths or ())
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PgganNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`InputError`."""
        if not isinstance(data, Mapping):
            raise InputError(f"PGGAN config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise InputError(
                f"unknown PGGAN config key(s) {', '.join(unknown)}; expected {', '.join(names)}"
            )
        kw = dict(data)
        if isinstance(kw.get("widths"), list):
            kw["widths"] = tuple(kw["widths"])
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# layers


class EqualizedConv2d(nn.Module):
    """A stride-1 "same" convolution with the equalised learning rate of Karras et al. 2018:
    the weight parameter is N(0, 1) and is multiplied by ``gain / sqrt(in * k * k)`` (He's
    constant) at run time; the bias starts at 0.

    With ``gain=sqrt(2)`` (the default, for a following (leaky) ReLU) a fresh layer maps
    unit-variance inputs to outputs of variance 2, whose ReLU has a second moment of 1; with
    ``gain=1`` the outputs have variance 1.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, *, gain: float = math.sqrt(2),
                 bias: bool = True) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, not {kernel}")
        self.c_in, self.c_out, self.kernel = c_in, c_out, kernel
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.gain = float(gain)
        self.scale = self.gain / math.sqrt(c_in * kernel * kernel)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.kernel // 2)

    def extra_repr(self) -> str:
        return (f"{self.c_in}, {self.c_out}, kernel={self.kernel}, gain={self.gain:.3g}, "
                f"scale={self.scale:.3g}")


class EqualizedLinear(nn.Module):
    """A fully connected layer with the equalised learning rate (see :class:`EqualizedConv2d`):
    weight N(0, 1) times ``gain / sqrt(in)`` at run time, bias 0."""

    def __init__(self, c_in: int, c_out: int, *, gain: float = math.sqrt(2),
                 bias: bool = True) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.weight = nn.Parameter(torch.randn(c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.gain = float(gain)
        self.scale = self.gain / math.sqrt(c_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, gain={self.gain:.3g}, scale={self.scale:.3g}"


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Pixelwise feature vector normalisation: ``x / sqrt(mean_c(x^2) + eps)`` over dim 1, so
    each pixel's (or each row's, for ``(N, C)``) features have mean square 1. The mean square
    is computed in float32 whatever the input dtype (bf16 would round it coarsely)."""
    ms = x.float().square().mean(dim=1, keepdim=True)
    return x * torch.rsqrt(ms + eps).to(x.dtype)


class PixelNorm(nn.Module):
    """:func:`pixel_norm` as a module."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return pixel_norm(x, self.eps)


def _group(n: int, group_size: int) -> int:
    """The largest group size <= ``group_size`` that divides the batch ``n``."""
    g = max(1, min(group_size, n))
    while n % g:
        g -= 1
    return g


def minibatch_stddev(x: Tensor, group_size: int = 4, eps: float = 1e-8) -> Tensor:
    """Append one feature map: per group of ``group_size`` samples, the standard deviation of
    every feature and pixel over the group, averaged over features and pixels.

    ``x``: ``(N, C, H, W)`` -> ``(N, C + 1, H, W)``. Sample ``i`` belongs to group
    ``i % (N / G)`` (the paper's code reshapes the batch to ``(G, N / G, ...)``). When ``N`` is
    not a multiple of ``group_size`` the largest group size below it that divides ``N`` is
    used. Computed in float32, returned in ``x``'s dtype.
    """
    n, c, h, w = x.shape
    g = _group(n, group_size)
    y = x.float().reshape(g, n // g, c, h, w)
    y = y - y.mean(dim=0, keepdim=True)
    y = (y.square().mean(dim=0) + eps).sqrt()  # (M, C, H, W)
    y = y.mean(dim=(1, 2, 3))  # (M,)
    y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class MinibatchStddev(nn.Module):
    """:func:`minibatch_stddev` as a module (adds one channel)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        return minibatch_stddev(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x upsampling ``(N, C, H, W) -> (N, C, 2H, 2W)``."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample2x(x: Tensor) -> Tensor:
    """2x2 box-filter downsampling ``(N, C, H, W) -> (N, C, H/2, W/2)``."""
    return F.avg_pool2d(x, 2)


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, _LRELU)


# --------------------------------------------------------------------------------------------
# the staged networks


class _Staged(nn.Module):
    """The current stage (resolution, alpha) of a growing network, and its checks."""

    def __init__(self, config: PgganNetConfig) -> None:
        super().__init__()
        self.config = config
        self.channels = config.channels
        self.num_classes = 0
        self.target_resolution = config.resolution
        self._levels = config.resolutions
        self.stage_resolution = config.resolution
        self.stage_alpha: float | None = None

    @property
    def resolution(self) -> int:
        """The image side at the current stage."""
        return self.stage_resolution

    def set_stage(self, resolution: int, alpha: float | None = None) -> None:
        """Run at ``resolution``; ``alpha`` in ``[0, 1]`` fades it in over the previous one
        (``resolution`` > 4 only), ``None`` runs it stable."""
        if resolution not in self._levels:
            levels = ", ".join(map(str, self._levels))
            raise InputError(
                f"resolution {resolution!r} is not a stage of this network; choose from {levels}"
            )
        if alpha is not None:
            a = float(alpha)
            if not 0.0 <= a <= 1.0:
                raise InputError(f"alpha must be from 0 to 1, not {alpha!r}")
            if resolution == self._levels[0]:
                raise InputError(f"{resolution}x{resolution} is the first stage; it has no fade-in")
            alpha = a
        self.stage_resolution = int(resolution)
        self.stage_alpha = alpha

    @property
    def stage(self) -> tuple[int, float | None]:
        return self.stage_resolution, self.stage_alpha

    def _level(self) -> int:
        return self._levels.index(self.stage_resolution)

    def active_modules(self) -> list[nn.Module]:
        """The sub-modules the current stage runs (the others sit idle)."""
        raise NotImplementedError

    def train_active_only(self) -> None:
        """``requires_grad`` on exactly the parameters the current stage uses. Idle ones then
        get no gradient and no Adam update, and ``DistributedDataParallel``, which waits for a
        gradient of every parameter it tracks, can wrap the network (re-wrap it after each
        stage change) without ``find_unused_parameters``."""
        active = {id(p) for m in self.active_modules() for p in m.parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in active)

    def _no_labels(self, y: Tensor | None) -> None:
        if y is not None:
            raise InputError(f"{type(self).__name__} is unconditional: y must be None")

    def extra_repr(self) -> str:
        a = "stable" if self.stage_alpha is None else f"alpha={self.stage_alpha:.4g}"
        return f"target={self.target_resolution}, stage={self.stage_resolution} ({a})"


class _GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, pixelnorm: bool) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(c_in, c_out, 3)
        self.conv1 = EqualizedConv2d(c_out, c_out, 3)
        self.pixelnorm = pixelnorm

    def _pn(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.pixelnorm else x

    def forward(self, x: Tensor) -> Tensor:
        x = self._pn(_lrelu(self.conv0(upsample2x(x))))
        return self._pn(_lrelu(self.conv1(x)))


class _GFirst(nn.Module):
    """G's 4x4 block: the latent to a 4x4 map."""

    def __init__(self, z_dim: int, width: int, pixelnorm: bool, normalize_latents: bool) -> None:
        super().__init__()
        self.width = width
        # gain sqrt(2)/4 as the paper's code (kept from its Theano version), bias per channel.
        self.dense = EqualizedLinear(z_dim, width * 16, gain=math.sqrt(2) / 4, bias=False)
        self.bias = nn.Parameter(torch.zeros(width))
        self.conv = EqualizedConv2d(width, width, 3)
        self.pixelnorm, self.normalize_latents = pixelnorm, normalize_latents

    def _pn(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.pixelnorm else x

    def forward(self, z: Tensor) -> Tensor:
        if self.normalize_latents:
            z = pixel_norm(z)
        x = self.dense(z).reshape(z.shape[0], self.width, 4, 4)
        x = self._pn(_lrelu(x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)))
        return self._pn(_lrelu(self.conv(x)))


class PgganGenerator(_Staged):
    """The progressive generator (see the module doc): ``(z (N, z_dim), y=None)`` ->
    images ``(N, channels, R, R)`` at the current stage's resolution ``R``, in about
    ``[-1, 1]`` (linear output)."""

    def __init__(self, config: PgganNetConfig) -> None:
        super().__init__(config)
        self.z_dim = config.z_dim
        levels = config.resolutions
        widths = config.widths
        assert widths is not None
        blocks: list[nn.Module] = [
            _GFirst(config.z_dim, widths[0], config.pixelnorm, config.normalize_latents)
        ]
        for i in range(1, len(levels)):
            blocks.append(_GBlock(widths[i - 1], widths[i], config.pixelnorm))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(EqualizedConv2d(w, config.channels, 1, gain=1.0)
                                    for w in widths)

    def active_modules(self) -> list[nn.Module]:
        level = self._level()
        mods = list(self.blocks[: level + 1]) + [self.to_rgb[level]]
        if self.stage_alpha is not None:
            mods.append(self.to_rgb[level - 1])
        return mods

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"latents must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        self._no_labels(y)
        level = self._level()
        x = z
        prev = None
        for i in range(level + 1):
            if i == level:
                prev = x
            x = self.blocks[i](x)
        image = self.to_rgb[level](x)
        if self.stage_alpha is not None:
            assert prev is not None
            low = upsample2x(self.to_rgb[level - 1](prev))
            image = torch.lerp(low, image, self.stage_alpha)
        return image

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from standard normal latents at the current stage (no gradients)."""
        p = next(self.parameters())
        z = torch.randn(n, self.z_dim, generator=generator, device=p.device)
        return self(z)


class _DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(c_in, c_in, 3)
        self.conv1 = EqualizedConv2d(c_in, c_out, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = _lrelu(self.conv0(x))
        return downsample2x(_lrelu(self.conv1(x)))


class _DLast(nn.Module):
    """D's 4x4 block: minibatch stddev, conv, two dense layers to one score."""

    def __init__(self, width: int, mbstd_group_size: int) -> None:
        super().__init__()
        self.mbstd_group_size = mbstd_group_size
        extra = 1 if mbstd_group_size > 1 else 0
        self.conv = EqualizedConv2d(width + extra, width, 3)
        self.dense0 = EqualizedLinear(width * 16, width)
        self.dense1 = EqualizedLinear(width, 1, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.mbstd_group_size > 1:
            x = minibatch_stddev(x, self.mbstd_group_size)
        x = _lrelu(self.conv(x))
        x = _lrelu(self.dense0(x.flatten(1)))
        return self.dense1(x).reshape(-1)


class PgganDiscriminator(_Staged):
    """The progressive discriminator (see the module doc): images ``(N, channels, R, R)`` at
    the current stage's resolution ``R`` -> raw scores ``(N,)``."""

    def __init__(self, config: PgganNetConfig) -> None:
        super().__init__(config)
        levels = config.resolutions
        widths = config.widths
        assert widths is not None
        self.from_rgb = nn.ModuleList(EqualizedConv2d(config.channels, w, 1) for w in widths)
        # blocks[i] takes resolution levels[i] (i >= 1) down to levels[i - 1].
        self.blocks = nn.ModuleList(
            [_DLast(widths[0], config.mbstd_group_size)]
            + [_DBlock(widths[i], widths[i - 1]) for i in range(1, len(levels))]
        )

    def active_modules(self) -> list[nn.Module]:
        level = self._level()
        mods = [self.from_rgb[level]] + list(self.blocks[: level + 1])
        if self.stage_alpha is not None:
            mods.append(self.from_rgb[level - 1])
        return mods

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        r, c = self.stage_resolution, self.channels
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, r, r):
            raise InputError(
                f"images must have shape (N, {c}, {r}, {r}) at this stage, got {tuple(x.shape)}"
            )
        self._no_labels(y)
        level = self._level()
        h = _lrelu(self.from_rgb[level](x))
        if level > 0:
            h = self.blocks[level](h)
            if self.stage_alpha is not None:
                skip = _lrelu(self.from_rgb[level - 1](downsample2x(x)))
                h = torch.lerp(skip, h, self.stage_alpha)
            for i in range(level - 1, 0, -1):
                h = self.blocks[i](h)
        return self.blocks[0](h)


def build_pggan(
    config: PgganNetConfig | Mapping[str, Any],
) -> tuple[PgganGenerator, PgganDiscriminator]:
    """``(G, D)`` for ``config`` (or its :meth:`~PgganNetConfig.to_dict` form), both at the
    target resolution's stable stage; weights from the global torch RNG."""
    if not isinstance(config, PgganNetConfig):
        config = PgganNetConfig.from_dict(config)
    return PgganGenerator(config), PgganDiscriminator(config)
