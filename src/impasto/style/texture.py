"""Texture synthesis (Gatys, Ecker & Bethge 2015, "Texture Synthesis Using Convolutional Neural
Networks"): an image optimised from noise until its VGG19 Gram matrices match a sample's, with
no content term. The same machinery as :mod:`impasto.style.gatys` (scales, precision, L-BFGS,
tiles).

``tileable`` makes the result repeat without a seam: every convolution of the VGG pads
circularly (the image is treated as a torus), so the loss sees the wrap-around neighbours as
neighbours and the optimised image is periodic; the sizes are multiples of the deepest layer's
stride (16 for the default layers) at every scale, so the pooling grids stay periodic too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from impasto.errors import InputError
from impasto.style.gatys import GatysConfig, GatysStyleTransfer, StepInfo, _image_tensor
from impasto.style.tiled import layer_geometry

__all__ = ["TILEABLE", "circular", "periodic_resize", "synthesize_texture", "texture_size"]

#: ``tileable`` choices: the axes along which the texture wraps around.
TILEABLE = ("none", "x", "y", "xy")


class _WrapPad(nn.Module):
    """Pads ``(N, C, H, W)`` by one pixel: circular along the wrapped axes, zeros elsewhere."""

    def __init__(self, wrap_x: bool, wrap_y: bool) -> None:
        super().__init__()
        self.wrap_x, self.wrap_y = wrap_x, wrap_y

    def forward(self, x: Tensor) -> Tensor:
        if self.wrap_x:
            x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
        else:
            x = nn.functional.pad(x, (1, 1, 0, 0))
        if self.wrap_y:
            x = torch.cat([x[..., -1:, :], x, x[..., :1, :]], dim=-2)
        else:
            x = nn.functional.pad(x, (0, 0, 1, 1))
        return x


def circular(encoder: nn.Module, tileable: str = "xy") -> nn.Module:
    """A copy of a VGG encoder whose 3x3 convolutions pad circularly along ``tileable``'s axes
    (the weights are shared, not copied)."""
    if tileable not in TILEABLE or tileable == "none":
        raise InputError(f"tileable must be one of x, y, xy, not {tileable!r}")
    body = nn.ModuleDict()
    for name, module in encoder.body.items():
        if isinstance(module, nn.Conv2d) and module.padding == (1, 1):
            conv = nn.Conv2d(module.in_channels, module.out_channels, 3, padding=0)
            conv.weight, conv.bias = module.weight, module.bias
            body[name] = nn.Sequential(_WrapPad("x" in tileable, "y" in tileable), conv)
        else:
            body[name] = module
    enc = copy.copy(encoder)
    enc._modules = {**encoder._modules, "body": body}
    return enc


def periodic_resize(x: Tensor, hw: tuple[int, int], pad: int = 2) -> Tensor:
    """Bilinear resize of a periodic image ``(N, C, h, w)`` to ``hw`` that stays periodic (the
    wrap-around neighbours are interpolated as neighbours); for integer scale factors."""
    h, w = x.shape[-2:]
    sy, sx = hw[0] // h, hw[1] // w
    xp = torch.cat([x[..., -pad:, :], x, x[..., :pad, :]], dim=-2)
    xp = torch.cat([xp[..., -pad:], xp, xp[..., :pad]], dim=-1)
    up = nn.functional.interpolate(xp, size=((h + 2 * pad) * sy, (w + 2 * pad) * sx),
                                   mode="bilinear", align_corners=False)
    return up[..., pad * sy: pad * sy + hw[0], pad * sx: pad * sx + hw[1]]


def texture_size(size: int, align: int = 16) -> int:
    """The nearest multiple of ``align`` to ``size`` (at least ``align``): tileable textures
    need sizes whose pooled feature maps stay periodic."""
    return max(align, round(size / align) * align)


def synthesize_texture(
    sample: Any,
    *,
    size: int | tuple[int, int] = 512,
    tileable: str = "none",
    config: GatysConfig | None = None,
    encoder: nn.Module | None = None,
    seed: int | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> Tensor:
    """A new texture with the statistics of ``sample`` (a path, PIL image, array or ``(1, 3,
    h, w)`` tensor in ``[0, 1]``): ``size`` (square) or ``(H, W)``; returns ``(1, 3, H, W)``
    float32 in ``[0, 1]``. ``config``: the Gatys settings (its content weight is ignored, the
    start is noise, ``style_scale`` sizes the sample relative to the output). With
    ``tileable`` ``"x"``, ``"y"`` or ``"xy"`` the result wraps around along those axes; its
    sides are then rounded to multiples of 16 (:func:`texture_size`)."""
    if tileable not in TILEABLE:
        raise InputError(f"tileable must be one of {', '.join(TILEABLE)}, not {tileable!r}")
    h, w = (size, size) if isinstance(size, int) else size
    if min(h, w) <= 0:
        raise InputError(f"size must be positive, not {size}")
    base = copy.copy(config) if config is not None else GatysConfig()
    base.size, base.content_weight, base.init = max(h, w), 0.0, "noise"
    align, _ = layer_geometry(base.content_layers + base.style_layers)
    if tileable != "none":
        base.tv_weight = 0.0  # the TV term does not see the wrap-around
        h, w = texture_size(h, align), texture_size(w, align)
        base.size = max(h, w)
        sizes = base.scale_sizes()
        if any(s % align for s in sizes):  # every scale periodic: coarse sides multiples too
            base.scales = 1 + max(k for k in range(len(sizes))
                                  if (base.size // 2**k) % align == 0 and base.size % 2**k == 0)
            if base.iterations is not None and not isinstance(base.iterations, int) \
                    and len(base.iterations) != base.scales:
                base.iterations = base.iterations[-1]
    transfer = GatysStyleTransfer(base, encoder=encoder)
    if tileable != "none":
        transfer.encoder = circular(transfer.encoder, tileable)
        transfer.upsample = periodic_resize
        if transfer.tiles((h, w)) is not None:
            raise InputError(f"a tileable texture of {w}x{h} px would need tiles, which do not "
                             "wrap around yet: use a smaller --size")
    placeholder = torch.zeros(1, 3, h, w)  # the output's size; no content term
    return transfer.run(placeholder, [_image_tensor(sample)], seed=seed, callback=callback,
                        on_tile=on_tile)
