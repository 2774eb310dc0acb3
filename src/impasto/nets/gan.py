"""GAN generators and discriminators: DCGAN and a ResNet with spectral normalisation (SNGAN),
each optionally class-conditional.

Every pair is described by a :class:`GanNetConfig`, which a checkpoint stores with
:meth:`GanNetConfig.to_dict` so that :func:`build_gan` can rebuild the very same networks later::

    config = GanNetConfig("sngan", resolution=64, channels=3, num_classes=10)
    G, D = build_gan(config)
    torch.save({"config": config.to_dict(), "G": G.state_dict(), "D": D.state_dict()}, path)
    ...
    ckpt = torch.load(path)
    G, D = build_gan(GanNetConfig.from_dict(ckpt["config"]))

Conventions shared by every architecture here:

* Generators take ``(z, y=None)`` with ``z`` of shape ``(N, z_dim)`` and return images
  ``(N, channels, resolution, resolution)`` in ``[-1, 1]`` (Tanh output).
* Discriminators take ``(x, y=None)`` and return raw logits of shape ``(N,)`` (no sigmoid).
* ``y`` is an integer class label tensor of shape ``(N,)``. It is required when
  ``num_classes > 0`` and must be ``None`` otherwise (an :class:`InputError` says so).
* Class conditioning is the same for both architectures: conditional batch norm in the
  generator (per-class gain and bias from embeddings, initialised to 1 and 0; de Vries et al.
  2017) and a projection discriminator (Miyato & Koyama 2018):
  ``logit = linear(h) + sum(embed(y) * h)`` where ``h`` is the feature vector the final linear
  layer reads. For DCGAN that final layer is the 4x4 convolution over the last 4x4 feature map,
  so ``h`` is that map flattened and the class embedding has ``width * 16`` entries; for SNGAN
  ``h`` is the globally sum-pooled feature vector.
* Tensors are reshaped with ``reshape``/``flatten``, never ``view``, so channels_last inputs and
  outputs are fine.

Architectures (:data:`GAN_ARCH_REGISTRY`; ``pggan``, the progressive GAN, is in
:mod:`impasto.nets.pggan` and registered here too):

``dcgan`` (Radford et al. 2015), resolutions 32, 64, 128
    G: ``z`` as a 1x1 map, a 4x4 transposed convolution to 4x4, then stride-2 4x4 transposed
    convolutions with BatchNorm + ReLU doubling the size and halving the width, and a last
    stride-2 transposed convolution to the image with Tanh. The width at the last hidden layer is
    ``base_width`` (so ``base_width * 2**(log2(resolution) - 3)`` at 4x4). D mirrors it: stride-2
    4x4 convolutions with LeakyReLU(0.2) doubling the width from ``base_width``, a norm on every
    layer but the first, and a final 4x4 valid convolution to one logit. All convolution weights
    are drawn from N(0, 0.02) as in the paper; biases (only on layers not followed by a norm) are
    zero, norm gains 1 and biases 0. ``d_norm`` picks D's norm: ``"batch"`` (the paper),
    ``"layer"`` (GroupNorm with one group: the choice Gulrajani et al. recommend for WGAN-GP,
    whose per-sample gradient penalty batch norm breaks) or ``"none"``.

``sngan`` (Miyato et al. 2018; ImageNet layout of Miyato & Koyama 2018), resolutions 32, 64, 128
    G: linear ``z`` -> 4x4 map, residual up-blocks (BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3 plus
    a 1x1-conv, nearest-upsampled shortcut) to the resolution, BN-ReLU-conv3x3-Tanh. Widths:
    ``base_width * 2**(n-1)`` at 4x4, halving in every block but the first, ``base_width`` at the
    end (``n = log2(resolution) - 2``). D: every weight spectrally normalised
    (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per training
    forward); an "optimised" first down-block (conv-ReLU-conv-avgpool, shortcut avgpool-conv1x1)
    to ``base_width``, residual down-blocks (ReLU-conv-ReLU-conv-avgpool, shortcut conv1x1-avgpool)
    doubling the width to the 4x4 map, one more residual block without downsampling, ReLU,
    global sum pooling and a linear layer to the logit. Weights start Xavier-uniform (gain
    sqrt(2) on the residual convolutions, 1 elsewhere), biases zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from impasto.errors import InputError
from impasto.nets.layers import ConditionalBatchNorm2d
from impasto.nets.pggan import MAX_RESOLUTION as PGGAN_MAX_RESOLUTION
from impasto.nets.pggan import (
    PgganDiscriminator,
    PgganGenerator,
    PgganNetConfig,
    pggan_resolutions,
)
from impasto.registry import Registry

__all__ = [
    "GAN_ARCHS",
    "GAN_ARCH_REGISTRY",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GanArch",
    "GanNetConfig",
    "SNGANDiscriminator",
    "SNGANGenerator",
    "build_gan",
    "gan_arch",
    "sample_latents",
]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class GanNetConfig:
    """Everything needed to rebuild a generator/discriminator pair.

    Args:
        arch: one of :data:`GAN_ARCHS` (``"dcgan"`` or ``"sngan"``).
        resolution: image side in pixels; must be one the architecture supports.
        channels: 1 (grey) or 3 (RGB).
        z_dim: latent size.
        base_width: channel width at the full-resolution end of both networks; the other
            widths are this times a power of two (see the module documentation).
        num_classes: 0 for an unconditional pair, else the number of classes.
        d_norm: the discriminator's norm, ``None`` for the architecture's default (resolved on
            construction, so :meth:`to_dict` always holds the actual choice).

    Invalid values raise :class:`InputError` on construction.
    """

    arch: str
    resolution: int
    channels: int = 3
    z_dim: int = 128
    base_width: int = 64
    num_classes: int = 0
    d_norm: str | None = None

    def __post_init__(self) -> None:
        spec = gan_arch(self.arch, GanNetConfig)
        if type(self.resolution) is not int or self.resolution not in spec.resolutions:
            choices = ", ".join(str(r) for r in spec.resolutions)
            raise InputError(
                f"resolution {self.resolution} is not supported by {self.arch}; "
                f"choose from {choices}"
            )
        if type(self.channels) is not int or self.channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {self.channels!r}")
        _check_int("z_dim", self.z_dim, 1)
        _check_int("base_width", self.base_width, 1)
        _check_int("num_classes", self.num_classes, 0)
        norms = spec.d_norms
        if self.d_norm is None:
            object.__setattr__(self, "d_norm", norms[0])
        elif self.d_norm not in norms:
            raise InputError(
                f"d_norm {self.d_norm!r} is not supported by {self.arch}; "
                f"choose from {', '.join(norms)}"
            )

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of builtins, safe for ``torch.save(weights_only=True)`` and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GanNetConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`InputError`."""
        if not isinstance(data, Mapping):
            raise InputError(f"GAN config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError(
                f"unknown GAN config key(s) {', '.join(map(str, unknown))}; "
                f"expected {', '.join(names)}"
            )
        missing = [n for n in ("arch", "resolution") if n not in data]
        if missing:
            raise InputError(f"GAN config lacks {', '.join(missing)}")
        return cls(**dict(data))


class GanArch(NamedTuple):
    """One entry of :data:`GAN_ARCH_REGISTRY`: the two network builders (each takes a
    ``config_type`` instance), the resolutions the pair supports, the config class, whether
    the pair grows progressively (trained by :mod:`impasto.gan.progressive`, its checkpoints
    hold the growing stage), the discriminator norms it accepts (the first is its default)
    and a one-line description for help texts."""

    build_generator: Callable[[Any], nn.Module]
    build_discriminator: Callable[[Any], nn.Module]
    resolutions: tuple[int, ...]
    config_type: type = GanNetConfig
    progressive: bool = False
    d_norms: tuple[str, ...] = ("none",)
    description: str = ""


def gan_arch(name: Any, config_type: type | None = None) -> GanArch:
    """The :data:`GAN_ARCH_REGISTRY` entry of ``name``; :class:`InputError` for an unknown
    name, or for one whose networks another config class describes than ``config_type``
    (``GanNetConfig("pggan", ...)``: PGGAN has its own :class:`PgganNetConfig`)."""
    spec = GAN_ARCH_REGISTRY.get(name)
    if config_type is not None and spec.config_type is not config_type:
        raise InputError(
            f"GAN architecture {name!r} is configured by {spec.config_type.__name__}, not "
            f"{config_type.__name__}; {config_type.__name__} takes "
            f"{', '.join(n for n, a in GAN_ARCH_REGISTRY.items() if a.config_type is config_type)}"
        )
    return spec


def build_gan(
    config: GanNetConfig | PgganNetConfig | Mapping[str, Any],
) -> tuple[nn.Module, nn.Module]:
    """Builds ``(generator, discriminator)`` from the config of any registered architecture
    (a mapping is read as :meth:`GanNetConfig.from_dict`). Both networks keep the config as
    ``.config``."""
    if isinstance(config, Mapping):
        config = GanNetConfig.from_dict(config)
    spec = gan_arch(config.arch, type(config))
    return spec.build_generator(config), spec.build_discriminator(config)


# --------------------------------------------------------------------------------------------
# Latents
# --------------------------------------------------------------------------------------------


def sample_latents(
    n: int,
    z_dim: int,
    generator: torch.Generator | None = None,
    truncation: float | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(n, z_dim)`` standard normal latents, optionally truncated.

    Truncation trick (Brock et al. 2019): with ``truncation=t`` every entry with ``|z| > t`` is
    *resampled* (not scaled) until all lie in ``[-t, t]``, i.e. ``z`` follows a standard normal
    truncated to ``[-t, t]``. Smaller ``t`` trades variety for fidelity; ``None`` turns it off.
    The cost grows like ``1 / t`` for very small ``t`` (acceptance rate about ``0.8 t``).

    The numbers are drawn on ``generator``'s device (the default device when ``generator`` is
    ``None``) in float32, so a seeded CPU generator gives the same latents for every target
    ``device``, then moved to ``device``/``dtype``.
    """
    _check_int("n", n, 0)
    _check_int("z_dim", z_dim, 1)
    if truncation is not None:
        t = float(truncation)
        if not math.isfinite(t) or t <= 0:
            raise InputError(f"truncation must be a positive number or None, got {truncation!r}")
    draw_device = generator.device if generator is not None else device
    z = torch.randn(n, z_dim, generator=generator, device=draw_device, dtype=torch.float32)
    if truncation is not None:
        outside = z.abs() > t
        while bool(outside.any()):
            z[outside] = torch.randn(
                int(outside.sum()), generator=generator, device=z.device, dtype=z.dtype
            )
            outside = z.abs() > t
    return z.to(device=device if device is not None else z.device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _stages(resolution: int) -> int:
    """Number of factor-2 size changes between 4x4 and ``resolution``."""
    return int(math.log2(resolution)) - 2


def _check_labels(net: nn.Module, num_classes: int, n: int, y: Tensor | None) -> None:
    name = type(net).__name__
    if num_classes > 0:
        if y is None:
            raise InputError(f"{name} is class-conditional ({num_classes} classes): pass labels y")
        if y.shape != (n,) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise InputError(
                f"labels y must be an integer tensor of shape ({n},), "
                f"got {y.dtype} {tuple(y.shape)}"
            )
    elif y is not None:
        raise InputError(f"{name} is unconditional (num_classes=0): y must be None")


class _Generator(nn.Module):
    """Input checks and sampling shared by the generators."""

    config: GanNetConfig

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.num_classes = config.num_classes
        self.resolution = config.resolution
        self.channels = config.channels

    def _check(self, z: Tensor, y: Tensor | None) -> None:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise InputError(
                f"latents must have shape (N, {self.z_dim}), got {tuple(z.shape)}"
            )
        _check_labels(self, self.num_classes, z.shape[0], y)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        truncation: float | None = None,
    ) -> Tensor:
        """``n`` images from latents of :func:`sample_latents` (no gradients; the current
        train/eval mode is kept, so call ``eval()`` first for running batch-norm statistics)."""
        p = next(self.parameters())
        z = sample_latents(n, self.z_dim, generator, truncation, device=p.device, dtype=p.dtype)
        return self(z, y)


class _Discriminator(nn.Module):
    config: GanNetConfig

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        self.resolution = config.resolution
        self.channels = config.channels

    def _check(self, x: Tensor, y: Tensor | None) -> None:
        r, c = self.resolution, self.channels
        if x.dim() != 4 or x.shape[1:] != (c, r, r):
            raise InputError(f"images must have shape (N, {c}, {r}, {r}), got {tuple(x.shape)}")
        _check_labels(self, self.num_classes, x.shape[0], y)


def _norm2d(width: int, num_classes: int) -> nn.Module:
    return ConditionalBatchNorm2d(width, num_classes) if num_classes > 0 else nn.BatchNorm2d(width)


def _apply_norm(norm: nn.Module, h: Tensor, y: Tensor | None) -> Tensor:
    return norm(h, y) if isinstance(norm, ConditionalBatchNorm2d) else norm(h)


# --------------------------------------------------------------------------------------------
# DCGAN
# --------------------------------------------------------------------------------------------


def _dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DCGANGenerator(_Generator):
    """DCGAN generator (Radford et al. 2015); see the module documentation."""

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__(config)
        n = _stages(config.resolution)
        widths = [config.base_width * 2 ** (n - 1 - i) for i in range(n)]  # 4x4 ... res/2
        self.widths = tuple(widths)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = config.z_dim
        for i, w in enumerate(widths):
            if i == 0:
                self.convs.append(nn.ConvTranspose2d(c_in, w, 4, 1, 0, bias=False))
            else:
                self.convs.append(nn.ConvTranspose2d(c_in, w, 4, 2, 1, bias=False))
            self.norms.append(_norm2d(w, config.num_classes))
            c_in = w
        self.to_image = nn.ConvTranspose2d(c_in, config.channels, 4, 2, 1, bias=True)
        _dcgan_init(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(z, y)
        h = z.reshape(z.shape[0], self.z_dim, 1, 1)
        for conv, norm in zip(self.convs, self.norms):
            h = F.relu(_apply_norm(norm, conv(h), y))
        return torch.tanh(self.to_image(h))


class DCGANDiscriminator(_Discriminator):
    """DCGAN discriminator; logits ``(N,)``. Projection head when ``num_classes > 0``."""

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__(config)
        n = _stages(config.resolution)
        widths = [config.base_width * 2**i for i in range(n)]  # res/2 ... 4x4
        self.widths = tuple(widths)
        layers: list[nn.Module] = []
        c_in = config.channels
        for i, w in enumerate(widths):
            has_norm = i > 0 and config.d_norm != "none"
            layers.append(nn.Conv2d(c_in, w, 4, 2, 1, bias=not has_norm))
            if has_norm:
                layers.append(nn.BatchNorm2d(w) if config.d_norm == "batch" else nn.GroupNorm(1, w))
            layers.append(nn.LeakyReLU(0.2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.to_logit = nn.Conv2d(c_in, 1, 4, 1, 0, bias=True)
        self.embed: nn.Embedding | None = None
        if config.num_classes > 0:
            self.embed = nn.Embedding(config.num_classes, c_in * 16)
        _dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(x, y)
        h = self.features(x)
        logit = self.to_logit(h).flatten()
        if self.embed is not None:
            logit = logit + (self.embed(y) * h.flatten(1)).sum(1)
        return logit


# --------------------------------------------------------------------------------------------
# SNGAN (ResNet + spectral normalisation)
# --------------------------------------------------------------------------------------------


def _xavier(m: nn.Module, gain: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(m.weight, gain)
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)
    return m


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class _GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        g = math.sqrt(2.0)
        self.norm1 = _norm2d(c_in, num_classes)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), g)
        self.norm2 = _norm2d(c_out, num_classes)
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), g)
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1, 1, 0))

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = self.conv1(_up(F.relu(_apply_norm(self.norm1, x, y))))
        h = self.conv2(F.relu(_apply_norm(self.norm2, h, y)))
        # A 1x1 convolution commutes with nearest upsampling: convolve at the lower size.
        return h + _up(self.shortcut(x))


class _DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, down: bool, optimized: bool = False) -> None:
        super().__init__()
        g = math.sqrt(2.0)
        self.down, self.optimized = down, optimized
        self.conv1 = spectral_norm(_xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), g))
        self.conv2 = spectral_norm(_xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), g))
        self.shortcut: nn.Module | None = None
        if down or c_in != c_out:
            self.shortcut = spectral_norm(_xavier(nn.Conv2d(c_in, c_out, 1, 1, 0)))

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.optimized else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            s = x
        elif self.optimized:  # pool first, then 1x1 conv (the "optimised block")
            s = self.shortcut(F.avg_pool2d(x, 2))
        else:
            s = self.shortcut(x)
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class SNGANGenerator(_Generator):
    """ResNet generator of SNGAN (Miyato et al. 2018); see the module documentation."""

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__(config)
        n = _stages(config.resolution)
        b = config.base_width
        w0 = b * 2 ** (n - 1)
        outs = [b * 2 ** (n - 1 - i) for i in range(n)]
        self.widths = (w0, *outs)
        self.w0 = w0
        self.linear = _xavier(nn.Linear(config.z_dim, 16 * w0))
        self.blocks = nn.ModuleList()
        c_in = w0
        for w in outs:
            self.blocks.append(_GBlock(c_in, w, config.num_classes))
            c_in = w
        self.norm = nn.BatchNorm2d(c_in)
        self.to_image = _xavier(nn.Conv2d(c_in, config.channels, 3, 1, 1))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(z, y)
        h = self.linear(z).reshape(z.shape[0], self.w0, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.to_image(F.relu(self.norm(h))))


class SNGANDiscriminator(_Discriminator):
    """Spectrally normalised ResNet discriminator; logits ``(N,)``. Projection head when
    ``num_classes > 0`` (its embedding is spectrally normalised too)."""

    def __init__(self, config: GanNetConfig) -> None:
        super().__init__(config)
        n = _stages(config.resolution)
        widths = [config.base_width * 2**i for i in range(n)]  # res/2 ... 4x4
        self.widths = tuple(widths)
        blocks: list[nn.Module] = [_DBlock(config.channels, widths[0], True, optimized=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            blocks.append(_DBlock(c_in, c_out, True))
        blocks.append(_DBlock(widths[-1], widths[-1], False))
        self.blocks = nn.Sequential(*blocks)
        self.linear = spectral_norm(_xavier(nn.Linear(widths[-1], 1)))
        self.embed: nn.Module | None = None
        if config.num_classes > 0:
            emb = nn.Embedding(config.num_classes, widths[-1])
            nn.init.xavier_uniform_(emb.weight)
            self.embed = spectral_norm(emb)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(x, y)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        logit = self.linear(h).flatten()
        if self.embed is not None:
            logit = logit + (self.embed(y) * h).sum(1)
        return logit


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: Every GAN architecture: ``dcgan`` and ``sngan`` (this module, :class:`GanNetConfig`) and
#: ``pggan`` (:mod:`impasto.nets.pggan`, :class:`PgganNetConfig`, grown progressively).
GAN_ARCH_REGISTRY: Registry[GanArch] = Registry("GAN architecture")
GAN_ARCH_REGISTRY.register("dcgan", GanArch(
    DCGANGenerator, DCGANDiscriminator, (32, 64, 128), d_norms=("batch", "layer", "none"),
    description="DCGAN (Radford et al. 2015)",
))
GAN_ARCH_REGISTRY.register("sngan", GanArch(
    SNGANGenerator, SNGANDiscriminator, (32, 64, 128),
    description="ResNet with a spectrally normalised discriminator (Miyato et al. 2018)",
))
GAN_ARCH_REGISTRY.register("pggan", GanArch(
    PgganGenerator, PgganDiscriminator, pggan_resolutions(PGGAN_MAX_RESOLUTION),
    config_type=PgganNetConfig, progressive=True,
    description="progressive growing (Karras et al. 2018)",
))

#: The names of the fixed-size architectures (those :class:`GanNetConfig` builds), in
#: registration order; :data:`GAN_ARCH_REGISTRY` holds ``pggan`` as well.
GAN_ARCHS: tuple[str, ...] = tuple(
    n for n, a in GAN_ARCH_REGISTRY.items() if a.config_type is GanNetConfig
)
