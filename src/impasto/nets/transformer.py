"""The image transformation network of feed-forward style transfer (Johnson, Alahi & Fei-Fei
2016, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution"), with the changes
that later work found to matter:

* instance normalisation in place of batch normalisation (Ulyanov, Vedaldi & Lempitsky 2016,
  "Instance Normalization: The Missing Ingredient for Fast Stylization");
* reflection padding before every convolution, so borders carry no zero-padding artefacts;
* nearest-neighbour upsampling followed by a convolution in place of transposed convolutions,
  which avoids checkerboard patterns (Odena, Dumoulin & Olah 2016, "Deconvolution and
  Checkerboard Artifacts").

Layout (default widths)::

    9x9 conv 32 -> 3x3 conv 64 stride 2 -> 3x3 conv 128 stride 2      (each + IN + ReLU)
    5 residual blocks of two 3x3 convs, 128 channels (IN; ReLU between)
    x2 nearest + 3x3 conv 64 -> x2 nearest + 3x3 conv 32               (each + IN + ReLU)
    9x9 conv 3 -> sigmoid

The network maps RGB ``(N, 3, H, W)`` in ``[0, 1]`` to RGB ``(N, 3, H, W)`` in ``[0, 1]`` for
any ``H, W``: the input is padded (reflection, replication where an image is too small to
reflect) up to a multiple of 4 (at least 8) and the output cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError

__all__ = ["TransformerConfig", "TransformerNet"]

#: Sides are padded to a multiple of this (two stride-2 convolutions).
MULTIPLE = 4
#: Smallest padded side: the 3x3 reflection padding at 1/4 scale needs 2 pixels.
MIN_SIDE = 8


def _pos_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive whole number, not {value!r}")


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of a :class:`TransformerNet`; stored in model files so that a file rebuilds
    its own network.

    channels: widths at full, 1/2 and 1/4 resolution (Johnson et al.: 32, 64, 128).
    num_residual: residual blocks at 1/4 resolution (Johnson et al.: 5).
    kernel_size: of the first and last convolution (9).
    """

    channels: tuple[int, int, int] = (32, 64, 128)
    num_residual: int = 5
    kernel_size: int = 9

    def __post_init__(self) -> None:
        ch = tuple(self.channels)
        if len(ch) != 3:
            raise InputError(f"channels must be three widths (full, 1/2, 1/4), not {ch!r}")
        for c in ch:
            _pos_int("each channel width", c)
        object.__setattr__(self, "channels", ch)
        if isinstance(self.num_residual, bool) or not isinstance(self.num_residual, int) \
                or self.num_residual < 0:
            raise InputError(
                f"num_residual must be a whole number >= 0, not {self.num_residual!r}"
            )
        _pos_int("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0 or self.kernel_size > 2 * MIN_SIDE - 1:
            raise InputError(f"kernel_size must be odd and at most 15, not {self.kernel_size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        from impasto.config_io import config_from_dict

        return config_from_dict(cls, d)


class _ConvLayer(nn.Sequential):
    """Reflection pad, convolution, then (optionally) instance norm and ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, *, norm: bool = True,
                 relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(k // 2),
            nn.Conv2d(cin, cout, k, stride=stride),
        ]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Residual(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with reflection padding (He et al. 2016 as used by
    Johnson et al., without their cropping)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _ConvLayer(channels, channels, 3),
            _ConvLayer(channels, channels, 3, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _Upsample(nn.Sequential):
    """Nearest-neighbour x2, then a reflection-padded convolution + IN + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), _ConvLayer(cin, cout, 3))


class TransformerNet(nn.Module):
    """Feed-forward style network (see the module doc): RGB ``(N, 3, H, W)`` in ``[0, 1]`` ->
    RGB ``(N, 3, H, W)`` in ``[0, 1]``, any ``H, W >= 1``."""

    def __init__(self, config: TransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config or TransformerConfig()
        c1, c2, c3 = self.config.channels
        k = self.config.kernel_size
        self.encoder = nn.Sequential(
            _ConvLayer(3, c1, k),
            _ConvLayer(c1, c2, 3, stride=2),
            _ConvLayer(c2, c3, 3, stride=2),
        )
        self.residuals = nn.Sequential(*(_Residual(c3) for _ in range(self.config.num_residual)))
        self.decoder = nn.Sequential(
            _Upsample(c3, c2),
            _Upsample(c2, c1),
            _ConvLayer(c1, 3, k, norm=False, relu=False),
        )

    @staticmethod
    def padding(h: int, w: int) -> tuple[int, int]:
        """``(pad_bottom, pad_right)`` that bring ``h, w`` to a multiple of 4, at least 8."""
        # Literals (MULTIPLE = 4, MIN_SIDE = 8), so that TorchScript can compile this.
        th = max(8, (h + 3) // 4 * 4)
        tw = max(8, (w + 3) // 4 * 4)
        return th - h, tw - w

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError("TransformerNet expects (N, 3, H, W) images")
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = self.padding(h, w)
        if ph > 0 or pw > 0:
            # Reflection needs the padding to be smaller than the side; tiny images replicate.
            if ph < h and pw < w:
                x = F.pad(x, [0, pw, 0, ph], mode="reflect")
            else:
                x = F.pad(x, [0, pw, 0, ph], mode="replicate")
        y = self.decoder(self.residuals(self.encoder(x)))
        y = torch.sigmoid(y)
        if ph > 0 or pw > 0:
            y = y[:, :, :h, :w]
        return y

    def extra_repr(self) -> str:
        c = self.config
        return f"channels={c.channels}, num_residual={c.num_residual}, kernel_size={c.kernel_size}"
