"""The instant start of Gatys style transfer (``init="instant"``, ``--init instant``): the
arbitrary-style network's result (Ghiasi et al. 2017) at the output's full size, made with the
style as Gatys sees it, so that the optimisation (Gatys et al. 2016) starts near its goal.

Two things are matched to what the Gatys loss expects:

* **scale**: Gatys compares Gram matrices of the style image resized to its final style side
  (``size * style_scale`` on the longest side). The style network reproduces strokes at the
  pixel scale its predictor saw, so the predictor is shown the style *at that same scale*:
  256 x 256 crops of the resized style (a grid of up to 4 x 4 covering it, their style vectors
  averaged, as Gatys' Gram matrices cover the whole painting), not the painting's centred
  square squeezed to 256 px as ``--method instant`` does. A style smaller than 256 px on its
  short side is magnified for the predictor, and the network then runs on a copy of the photo
  shrunk by as much (scaled back up after), so the strokes keep Gatys' scale;
* **colours**: the style images get Gatys' colour mode first (``histogram``: the content's
  colours, Gatys et al. 2017 sec. 3.2; ``luminance``: their luminance matched to the
  content's), and the Gatys code takes the start's luminance in ``luminance`` mode.

Several styles blend by the normalised blend weights of their style vectors; with masks each
style's result goes where its mask is (the content elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from impasto.io import resize_tensor
from impasto.style.color import luminance_image, match_color

__all__ = ["instant_start", "style_crops", "style_vector"]

#: The predictor's training crop (Magenta: 256 x 256 style crops).
CROP = 256
#: At most this many crops along each side of a style image.
MAX_CROPS = 4


def _fit_longest(hw: Sequence[int], longest: int) -> tuple[int, int]:
    h, w = hw
    s = longest / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def style_crops(style: Tensor) -> tuple[list[Tensor], float]:
    """Crops of ``style`` ``(1, 3, h, w)`` for the predictor and the magnification they carry:
    a grid of ``CROP`` x ``CROP`` crops covering the image (evenly spaced, at most
    ``MAX_CROPS`` per side) and 1.0 when its short side is at least ``CROP``; else the
    centred square resized up to ``CROP`` and ``CROP / short side``."""
    h, w = style.shape[-2:]
    if min(h, w) < CROP:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        sq = style[..., top:top + s, left:left + s]
        return [resize_tensor(sq, (CROP, CROP)).clamp(0, 1)], CROP / s

    def starts(n: int) -> list[int]:
        k = min(MAX_CROPS, math.ceil(n / CROP))
        return [round(i * (n - CROP) / max(k - 1, 1)) for i in range(k)]

    return [style[..., t:t + CROP, l:l + CROP] for t in starts(h) for l in starts(w)], 1.0


def style_vector(inst: Any, style: Tensor) -> tuple[Tensor, float]:
    """The mean style vector ``(100,)`` of ``style``'s crops (:func:`style_crops`) and their
    magnification."""
    crops, zoom = style_crops(style)
    return inst.style_vectors(crops).mean(0), zoom


@torch.inference_mode()
def instant_start(
    inst: Any,
    content: Tensor,
    styles: Sequence[Tensor],
    *,
    style_side: int,
    blend: Sequence[float] | None = None,
    masks: Tensor | None = None,
    preserve_color: str = "none",
    precision: str | None = None,
) -> Tensor:
    """The start image ``(1, 3, H, W)`` in ``[0, 1]`` for Gatys at ``content``'s size.

    Args:
        inst: an :class:`~impasto.style.instant.InstantStyle`.
        content: ``(1, 3, H, W)`` in ``[0, 1]``, already at the output's size.
        styles: ``(1, 3, h, w)`` style images in ``[0, 1]``, any size.
        style_side: the longest side Gatys resizes the styles to at full size.
        blend: one weight per style (None: equal); ignored with ``masks``.
        masks: ``(K, H', W')`` in ``[0, 1]``, one per style, any size.
        preserve_color: Gatys' colour mode (``none``, ``luminance``, ``histogram``).
        precision: the transformer's precision (None: the pipeline's).
    """
    device = inst.device
    x = content.detach().float().to(device)
    hw = tuple(x.shape[-2:])
    vectors, zooms = [], []
    for s in styles:
        s = s.detach().float().to(device)
        s = resize_tensor(s, _fit_longest(s.shape[-2:], style_side)).clamp(0, 1)
        if preserve_color == "histogram":
            s = match_color(s, x)
        elif preserve_color == "luminance":
            s = luminance_image(s, like=x)
        v, z = style_vector(inst, s)
        vectors.append(v)
        zooms.append(z)
    # One resolution for every style (the most magnified one's): the network runs on the
    # photo shrunk by that magnification.
    zoom = max(zooms)
    run_hw = hw if zoom == 1.0 else tuple(max(16, round(n / zoom)) for n in hw)
    x_run = x if run_hw == hw else resize_tensor(x, run_hw).clamp(0, 1)

    def render(vector: Tensor) -> Tensor:
        from impasto.nets.magenta import FixedCondition

        net = FixedCondition(inst.transformer, vector)
        y = inst.runner(net, precision=precision)(x_run).float()
        return y if run_hw == hw else resize_tensor(y, hw).clamp(0, 1)

    if masks is None:
        if blend is None:
            w = torch.full((len(vectors),), 1.0 / len(vectors))
        else:
            w = torch.tensor([float(b) for b in blend], dtype=torch.float64)
            w = (w / w.sum()).float()
        vector = (w.to(device)[:, None] * torch.stack(vectors)).sum(0)
        return render(vector).cpu()
    m = resize_tensor(masks.float().to(device)[None], hw)[0].clamp(0, 1)  # (K, H, W)
    total = m.sum(0, keepdim=True)
    rest = (1.0 - total).clamp(min=0.0)
    out = rest * x
    for k, v in enumerate(vectors):
        out = out + m[k:k + 1] * render(v)
    return (out / (total + rest).clamp(min=1e-6)).clamp(0, 1).cpu()
