"""Images that wrap around (tileable textures and stylised images, Gatys et al. 2015/2016 with
circular padding): a VGG whose convolutions pad circularly, periodic resizing between scales,
periodic sizes, and a photo made periodic before it serves as content.

A result repeats without a seam when the loss sees the wrap-around neighbours as neighbours:
every 3x3 convolution pads with the opposite edge (the image is a torus along the wrapped axes)
and every pooling grid closes up, which needs sides that are multiples of the deepest layer's
stride (16 for the default layers) at every scale.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from impasto.errors import InputError

__all__ = ["TILEABLE", "circular", "make_periodic", "periodic_hw", "periodic_resize"]

#: ``tileable`` choices: the axes along which an image wraps around.
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


def _periodic_axis(x: Tensor, n: int, dim: int) -> Tensor:
    """Bilinear resize of a periodic ``x`` to ``n`` samples along ``dim`` (half-pixel
    centres, as ``interpolate(align_corners=False)``, with wrap-around neighbours)."""
    m = x.shape[dim]
    if m == n:
        return x
    u = (torch.arange(n, dtype=torch.float64) + 0.5) * (m / n) - 0.5
    i0 = torch.floor(u)
    frac = (u - i0).to(x.dtype)
    i0 = i0.long() % m
    a, b = x.index_select(dim, i0.to(x.device)), x.index_select(dim, ((i0 + 1) % m).to(x.device))
    shape = [1] * x.dim()
    shape[dim] = n
    return a + (b - a) * frac.to(x.device).reshape(shape)


def periodic_resize(x: Tensor, hw: tuple[int, int], pad: int = 2) -> Tensor:
    """Bilinear resize of a periodic image ``(N, C, h, w)`` to ``hw`` that stays periodic (the
    wrap-around neighbours are interpolated as neighbours), for any factor."""
    h, w = x.shape[-2:]
    sy, sx = hw[0] // h, hw[1] // w
    if sy * h != hw[0] or sx * w != hw[1] or not (sy and sx):
        return _periodic_axis(_periodic_axis(x, hw[0], -2), hw[1], -1)
    xp = torch.cat([x[..., -pad:, :], x, x[..., :pad, :]], dim=-2)
    xp = torch.cat([xp[..., -pad:], xp, xp[..., :pad]], dim=-1)
    up = nn.functional.interpolate(xp, size=((h + 2 * pad) * sy, (w + 2 * pad) * sx),
                                   mode="bilinear", align_corners=False)
    return up[..., pad * sy: pad * sy + hw[0], pad * sx: pad * sx + hw[1]]


def periodic_hw(hw: tuple[int, int], align: int = 16) -> tuple[int, int]:
    """``hw`` with each side rounded to the nearest multiple of ``align`` (at least ``align``),
    so that every pooled feature map of the image is periodic too."""
    return tuple(max(align, round(n / align) * align) for n in hw)  # type: ignore[return-value]


def make_periodic(x: Tensor, tileable: str) -> Tensor:
    """A photo ``(N, C, H, W)`` made to wrap around along ``tileable``'s axes, so that it can
    serve as content: along each wrapped axis it is cross-faded with itself shifted by half
    a period, the shifted copy taking over linearly in the outer quarter on each side (the
    seam-free middle of the photo meets itself at the wrap-around). The middle half is
    unchanged."""
    for dim, axis in ((-1, "x"), (-2, "y")):
        if axis not in tileable:
            continue
        n = x.shape[dim]
        pos = torch.arange(n, dtype=torch.float32, device=x.device)
        edge = torch.minimum(pos + 0.5, n - pos - 0.5)  # distance to the nearer border
        weight = (edge / (n / 4)).clamp(0, 1)
        shape = [1] * x.dim()
        shape[dim] = n
        weight = weight.reshape(shape).to(x.dtype)
        x = weight * x + (1 - weight) * torch.roll(x, n // 2, dims=dim)
    return x
