"""Image classifiers: a LeNet-5-style network for small grey images and a small ResNet for colour.

Every classifier is described by a :class:`ClassifierNetConfig`, which checkpoints store with
:meth:`ClassifierNetConfig.to_dict`, so :func:`build_classifier` rebuilds the very same network
from the checkpoint alone (its input statistics and class names included)::

    config = ClassifierNetConfig("lenet", in_channels=1, image_size=28, num_classes=10)
    net = build_classifier(config)
    logits = net(x)            # x: (N, 1, 28, 28) float in [0, 1] -> (N, 10)
    feats = net.features(x)    # (N, net.feature_dim): the penultimate layer, e.g. for FID

Conventions shared by every architecture here:

* Inputs are ``(N, in_channels, image_size, image_size)`` float in ``[0, 1]``; the network
  normalises them itself with the per-channel ``mean`` and ``std`` of its config (the training
  data's, measured by the training loop), so callers never normalise.
* ``forward(x)`` returns raw logits ``(N, num_classes)``; ``features(x)`` the penultimate
  activations ``(N, feature_dim)`` (after the last ReLU / global pooling, before dropout and
  the final linear layer): ``net.head(net.features(x)) == net(x)`` in eval mode.
* Attributes: ``config``, ``in_channels``, ``image_size``, ``num_classes``, ``class_names``,
  ``feature_dim``.
* Tensors are reshaped with ``flatten``/``reshape``, never ``view``, so channels_last works.

Architectures (:data:`CLASSIFIER_ARCHS`):

``lenet`` (after LeCun et al. 1998, "Gradient-based learning applied to document recognition")
    Two 5x5 convolutions (``width`` and ``2 width`` channels, padding 2) each followed by batch
    norm, ReLU and 2x2 max pooling; then two fully connected layers of ``8 width`` and
    ``4 width`` units (the original's 120 and 84), each with batch norm and ReLU, and the linear
    classifier. Batch norm (Ioffe & Szegedy 2015) is an addition to the original: with it SGD at
    learning rate 0.1 is stable (without it the 3,136-input first FC layer blows up under a
    one-cycle warm-up). Default width 32 (features of 128). Images of side 8 or more.

``resnet`` (He et al. 2016, "Deep residual learning", their CIFAR-10 layout)
    A 3x3 stem convolution to ``width`` channels, three stages of ``blocks`` basic residual
    blocks (two 3x3 convolutions with batch norm; a 1x1 projection shortcut where the shape
    changes) of ``width``, ``2 width`` and ``4 width`` channels, the last two starting with
    stride 2, global average pooling and the linear classifier. ``blocks=3`` is ResNet-20. The
    last batch norm of every residual branch starts at zero gain (Goyal et al. 2017), so each
    block starts as the identity. Default width 32, 2 blocks (features of 128).

Convolution and linear weights start Kaiming-normal (fan-out for convolutions), biases zero,
except the final linear layer: N(0, 0.01), so the initial loss is about ``ln(num_classes)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.registry import Registry

__all__ = [
    "CLASSIFIER_ARCHS",
    "ClassifierArch",
    "ClassifierNetConfig",
    "LeNet5",
    "ResNetClassifier",
    "build_classifier",
]


class ClassifierArch(NamedTuple):
    """One entry of :data:`CLASSIFIER_ARCHS`."""

    build: Callable[[ClassifierNetConfig], nn.Module]
    description: str
    channels: int  # default input channels
    image_size: int  # default image side
    width: int  # default width
    blocks: int  # default residual blocks per stage (0: not used)
    hflip: bool  # whether mirrored images make sense by default (digits: no)
    min_size: int  # smallest image side


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, not {value!r}")


def _floats(name: str, value: Any, n: int, *, positive: bool) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * n
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise InputError(f"{name} must be {n} number(s), one per input channel, not {value!r}")
    out = []
    for v in value:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (positive and v <= 0):
            what = "positive numbers" if positive else "finite numbers"
            raise InputError(f"{name} must be {what}, not {value!r}")
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class ClassifierNetConfig:
    """Everything needed to rebuild a classifier (see the module doc).

    Args:
        arch: a name in :data:`CLASSIFIER_ARCHS` (``"lenet"`` or ``"resnet"``).
        in_channels: 1 (grey) or 3 (RGB).
        image_size: the side of the square input images.
        num_classes: number of classes (>= 2).
        width: channel width of the first layer (None: the architecture's default).
        blocks: residual blocks per stage (``resnet``; None: its default; ignored by ``lenet``).
        dropout: dropout probability before the final linear layer.
        mean, std: per-channel statistics of the inputs in ``[0, 1]``, used to normalise them
            inside the network (None: 0.5 and 0.25).
        class_names: one name per class (None: ``"0"``, ``"1"``, ...).

    ``None`` defaults are resolved on construction, so :meth:`to_dict` always holds the actual
    values. Invalid values raise :class:`InputError`.
    """

    arch: str
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    width: int | None = None
    blocks: int | None = None
    dropout: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        spec = CLASSIFIER_ARCHS.get(self.arch)
        if isinstance(self.in_channels, bool) or self.in_channels not in (1, 3):
            raise InputError(f"in_channels must be 1 (grey) or 3 (RGB), not {self.in_channels!r}")
        _check_int("image_size", self.image_size, spec.min_size)
        _check_int("num_classes", self.num_classes, 2)
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("width", spec.width if self.width is None else self.width)
        _check_int("width", self.width, 1)
        set_("blocks", spec.blocks if self.blocks is None else self.blocks)
        _check_int("blocks", self.blocks, 1 if spec.blocks else 0)
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise InputError(f"dropout must be a number from 0 to below 1, not {p!r}")
        set_("dropout", float(p))
        n = self.in_channels
        set_("mean", _floats("mean", 0.5 if self.mean is None else self.mean, n, positive=False))
        set_("std", _floats("std", 0.25 if self.std is None else self.std, n, positive=True))
        names = self.class_names
        if names is None:
            names = tuple(str(i) for i in range(self.num_classes))
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise InputError(f"class_names must be a list of names, not {names!r}")
        names = tuple(names)
        if len(names) != self.num_classes or not all(isinstance(c, str) for c in names):
            raise InputError(
                f"class_names must be {self.num_classes} names (one per class), not {len(names)}"
            )
        if len(set(names)) != len(names):
            raise InputError("class_names must be distinct")
        set_("class_names", names)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of builtins (lists for tuples), for checkpoints and JSON."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassifierNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys or a missing ``arch`` raise InputError."""
        if not isinstance(data, Mapping):
            raise InputError(f"classifier config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in set(data) - set(names))
        if unknown:
            raise InputError(
                f"unknown classifier config key(s) {', '.join(unknown)}; "
                f"expected {', '.join(names)}"
            )
        if "arch" not in data:
            raise InputError("classifier config lacks 'arch'")
        kw = dict(data)
        for key in ("mean", "std", "class_names"):
            if isinstance(kw.get(key), list):
                kw[key] = tuple(kw[key])
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# shared base


class _Classifier(nn.Module):
    """Normalisation, input checks, ``features``/``forward`` and the public attributes."""

    head: nn.Linear
    feature_dim: int

    def __init__(self, config: ClassifierNetConfig) -> None:
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.image_size = config.image_size
        self.num_classes = config.num_classes
        self.class_names: list[str] = list(config.class_names or ())
        c = config.in_channels
        self.register_buffer("mean", torch.tensor(config.mean).reshape(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(config.std).reshape(1, c, 1, 1))

    def _body(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _check(self, x: Tensor) -> None:
        s, c = self.image_size, self.in_channels
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            raise InputError(
                f"{self.config.arch} classifier expects images (N, {c}, {s}, {s}) in [0, 1], "
                f"got shape {tuple(x.shape)}; convert them with impasto.classify.prepare_images"
            )

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``(N, feature_dim)`` of images ``(N, C, S, S)`` in [0, 1]."""
        self._check(x)
        return self._body((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, C, S, S)`` in ``[0, 1]``."""
        return self.head(self.drop(self.features(x)))

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # small logits at the start: the loss starts near ln(num_classes)
        nn.init.normal_(self.head.weight, std=0.01)

    def extra_repr(self) -> str:
        c, s = self.in_channels, self.image_size
        return f"input=({c}, {s}, {s}), classes={self.num_classes}, features={self.feature_dim}"


# --------------------------------------------------------------------------------------------
# LeNet-5 style


class LeNet5(_Classifier):
    """LeNet-5-style classifier for small grey images (see the module doc)."""

    def __init__(self, config: ClassifierNetConfig) -> None:
        super().__init__(config)
        w = int(config.width or 32)
        side = (config.image_size // 2) // 2

        def conv(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 5, padding=2, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.conv1 = conv(config.in_channels, w)
        self.conv2 = conv(w, 2 * w)
        self.fc1 = nn.Sequential(
            nn.Linear(2 * w * side * side, 8 * w, bias=False), nn.BatchNorm1d(8 * w),
            nn.ReLU(inplace=True),
        )
        self.fc2 = nn.Sequential(
            nn.Linear(8 * w, 4 * w, bias=False), nn.BatchNorm1d(4 * w), nn.ReLU(inplace=True),
        )
        self.feature_dim = 4 * w
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(4 * w, config.num_classes)
        self._init_weights()

    def _body(self, x: Tensor) -> Tensor:
        x = self.conv2(self.conv1(x))
        return self.fc2(self.fc1(x.flatten(1)))


# --------------------------------------------------------------------------------------------
# ResNet


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNetClassifier(_Classifier):
    """Small ResNet for colour images, CIFAR layout (see the module doc)."""

    def __init__(self, config: ClassifierNetConfig) -> None:
        super().__init__(config)
        w = int(config.width or 32)
        n = int(config.blocks or 2)
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        cin = w
        for stage, cout in enumerate((w, 2 * w, 4 * w)):
            for b in range(n):
                layers.append(_BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = 4 * w
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(4 * w, config.num_classes)
        self._init_weights()
        for m in self.blocks:
            nn.init.zeros_(m.bn2.weight)  # each residual branch starts at zero

    def _body(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem(x))
        return x.mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# registry


#: Every classifier architecture, by name (``classify train --arch``).
CLASSIFIER_ARCHS: Registry[ClassifierArch] = Registry("classifier architecture")
CLASSIFIER_ARCHS.register("lenet", ClassifierArch(
    LeNet5, "LeNet-5 style: two 5x5 conv + BN + max-pool, two FC layers (small grey images)",
    channels=1, image_size=28, width=32, blocks=0, hflip=False, min_size=8,
))
CLASSIFIER_ARCHS.register("resnet", ClassifierArch(
    ResNetClassifier, "CIFAR-style ResNet: 3 stages of basic blocks, global pooling "
    "(colour images)",
    channels=3, image_size=32, width=32, blocks=2, hflip=True, min_size=8,
))


def build_classifier(config: ClassifierNetConfig | Mapping[str, Any]) -> nn.Module:
    """The network of ``config`` (or of its :meth:`~ClassifierNetConfig.to_dict` form), freshly
    initialised (seed torch's RNG first for reproducible weights)."""
    if not isinstance(config, ClassifierNetConfig):
        config = ClassifierNetConfig.from_dict(config)
    return CLASSIFIER_ARCHS.get(config.arch).build(config)

