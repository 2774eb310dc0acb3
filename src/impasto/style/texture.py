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
from impasto.style.wrap import TILEABLE, circular, periodic_resize  # (re-exported)

__all__ = ["TILEABLE", "circular", "periodic_resize", "synthesize_texture", "texture_size"]


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
    progress: bool = False,
) -> Tensor:
    """A new texture with the statistics of ``sample`` (a path, PIL image, array or ``(1, 3,
    h, w)`` tensor in ``[0, 1]``): ``size`` (square) or ``(H, W)``; returns ``(1, 3, H, W)``
    float32 in ``[0, 1]``. ``config``: the Gatys settings (its content weight is ignored, the
    start is noise, ``style_scale`` sizes the sample relative to the output). With
    ``tileable`` ``"x"``, ``"y"`` or ``"xy"`` the result wraps around along those axes; its
    sides are then rounded to multiples of 16 (:func:`texture_size`). A size too large for
    the memory budget is optimised in tiles (:mod:`impasto.style.tiled`; they wrap around too).
    ``progress``: stylize's progress bar (iterations and tiles)."""
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
    base.tileable = tileable  # circular padding, periodic resizing, tiles that wrap around
    transfer = GatysStyleTransfer(base, encoder=encoder)
    placeholder = torch.zeros(1, 3, h, w)  # the output's size; no content term
    sample_t = _image_tensor(sample)
    bar = None
    if progress:
        from impasto.style.pipeline import GatysProgress

        sizes, its, _ = transfer.plan((h, w), [tuple(sample_t.shape[-2:])])
        bar = GatysProgress(transfer, (h, w), sizes, its, callback)
        callback, on_tile = bar.on_step, bar.on_tile
    try:
        return transfer.run(placeholder, [sample_t], seed=seed, callback=callback,
                            on_tile=on_tile)
    finally:
        if bar is not None:
            bar.close()
