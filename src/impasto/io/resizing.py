"""Resizing: PIL images to a longest side, a pixel count or a shorter side; tensor batches.

PIL resizing is antialiased Lanczos by default; tensors are resized bicubic (antialiased when
shrinking) and stay differentiable.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PIL import Image

from impasto.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily: reading and writing files must not need it
    import torch

__all__ = ["LANCZOS", "resize", "resize_shorter", "resize_tensor", "scaled_size"]

LANCZOS = Image.Resampling.LANCZOS


def scaled_size(
    width: int, height: int, *, longest: int | None = None, pixels: int | None = None
) -> tuple[int, int]:
    """The ``(width, height)`` :func:`resize` produces, aspect ratio kept, each side >= 1.

    Exactly one of ``longest`` (the longer side becomes this) or ``pixels`` (width * height
    becomes about this) must be given, a positive int; otherwise :class:`InputError`. If a very
    thin image would need a side under one pixel, that side is 1 and the other keeps to ``pixels``.
    """
    if (longest is None) == (pixels is None):
        raise InputError("give exactly one of longest= or pixels= to resize")
    option, value = ("longest", longest) if longest is not None else ("pixels", pixels)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{option} must be a positive whole number, not {value!r}")
    if width <= 0 or height <= 0:
        raise InputError(f"cannot resize an image of {width}x{height} pixels")
    if longest is not None:
        scale = longest / max(width, height)
    else:
        scale = math.sqrt(pixels / (width * height))
    new_w = max(1, math.floor(width * scale + 0.5))
    new_h = max(1, math.floor(height * scale + 0.5))
    if longest is not None:  # no rounding drift on the side that was asked for
        if width >= height:
            new_w = longest
        else:
            new_h = longest
    elif min(width, height) * scale < 0.5:  # a side floored at 1 pixel: then the budget wins
        new_w, new_h = (min(new_w, pixels), 1) if new_h == 1 else (1, min(new_h, pixels))
    return new_w, new_h


def resize(
    img: Image.Image,
    *,
    longest: int | None = None,
    pixels: int | None = None,
    resample: Image.Resampling = LANCZOS,
) -> Image.Image:
    """Resize a PIL image, aspect kept, antialiased: to a longest side or to a pixel count.

    See :func:`scaled_size` for the arithmetic. Returns a new image (a copy if the size is
    unchanged). Raises :class:`InputError` unless exactly one positive ``longest``/``pixels``.
    """
    size = scaled_size(img.width, img.height, longest=longest, pixels=pixels)
    if size == img.size:
        return img.copy()
    # PIL's filters widen their support when shrinking, so this is antialiased; reducing_gap
    # first box-reduces very large shrinks by an integer factor, which is faster and as good.
    return img.resize(size, resample=resample, reducing_gap=3.0)


def resize_shorter(img: Image.Image, side: int, *, resample: str = "lanczos") -> Image.Image:
    """Resize a PIL image so that its shorter side is ``side``, aspect kept (the training crops
    of the style networks). ``"lanczos"``: antialiased, the longer side rounded up (so neither
    side is below ``side``); ``"bilinear"``: PIL's bilinear, both sides rounded to the nearest
    pixel (as AdaIN's reference code prepares its data)."""
    w, h = img.size
    if resample == "lanczos":
        return resize(img, longest=math.ceil(max(w, h) * side / min(w, h)))
    if resample != "bilinear":
        raise ValueError(f"resample must be 'lanczos' or 'bilinear', not {resample!r}")
    scale = side / min(w, h)
    return img.resize((max(side, round(w * scale)), max(side, round(h * scale))),
                      Image.Resampling.BILINEAR, reducing_gap=3.0)


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an image batch ``(N, C, H, W)`` to ``size = (new_H, new_W)`` (torch order).

    Bicubic, ``align_corners=False``, antialiased when shrinking either side. A batch whose
    values lie in ``[0, 1]`` is clamped back to ``[0, 1]`` (bicubic overshoots at edges).
    Differentiable; half-precision inputs are computed in float32 and cast back.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4:
        raise ValueError(f"resize_tensor expects (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"resize_tensor expects a float tensor, got {x.dtype}")
    new_h, new_w = (int(s) for s in size)
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"resize_tensor: size must be positive, got {tuple(size)}")
    h, w = x.shape[-2:]
    if (new_h, new_w) == (h, w):
        return x
    y = x if x.dtype in (torch.float32, torch.float64) else x.float()
    in_unit_range = bool(((y >= 0) & (y <= 1)).all())
    shrinking = new_h < h or new_w < w
    y = F.interpolate(y, size=(new_h, new_w), mode="bicubic", align_corners=False,
                      antialias=shrinking)
    if in_unit_range:
        y = y.clamp(0.0, 1.0)
    return y.to(x.dtype)
