"""Masks for per-region styles, one meaning for every method (Gatys, AdaIN, the instant
styles): one mask per style image, white = where that style goes, grey values weigh it (soft
masks), any size (resized to the output).

* :func:`load_masks`: mask images (paths, PIL images, arrays) or a tensor -> float ``(K, H, W)``
  in ``[0, 1]`` (all brought to the first mask's size);
* :func:`check_masks`: one mask per style, none black everywhere, no blend weights beside
  them (one-line :class:`~impasto.errors.InputError`);
* :func:`mask_shares`: what a pixel takes from each style: masks that overlap share the pixel in
  proportion, and where the masks add up to less than 1 the rest keeps the photo (AdaIN keeps
  the content's features there, Gatys puts no style loss there, the instant styles blend with
  the photo);
* :func:`check_keep_mask` and :func:`keep_style_masks`: a content-only region (``--keep-mask``,
  white = keep the photo there) and the style masks it leaves, ``masks * (1 - keep)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.io import load_image, to_tensor

__all__ = ["check_keep_mask", "check_masks", "keep_photo", "keep_style_masks", "load_masks",
           "mask_shares", "resize_masks"]


def load_masks(masks: Any, max_pixels: int | None) -> Tensor:
    """Mask images (paths, PIL, arrays; white = the region) or a tensor ``(K, H, W)`` ->
    float ``(K, H, W)`` in ``[0, 1]``; all masks are brought to the first one's size."""
    if isinstance(masks, Tensor):
        m = masks.float()
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3:
            raise InputError(f"masks must be a (K, H, W) tensor, not {tuple(masks.shape)}")
        return m.clamp(0, 1)
    out: list[Tensor] = []
    for item in masks:
        if isinstance(item, Tensor) and item.ndim == 2:
            t = item.float()[None]
        else:
            img = load_image(item, max_pixels=max_pixels)
            t = to_tensor(img).mean(1)  # (1, H, W)
        if out and t.shape[-2:] != out[0].shape[-2:]:
            t = F.interpolate(t[None], size=out[0].shape[-2:], mode="bilinear",
                              align_corners=False)[0]
        out.append(t)
    return torch.cat(out).clamp(0, 1)


def check_masks(masks: Tensor, n_styles: int,
                blend: Sequence[float] | None = None) -> Tensor:
    """``masks`` as float ``(K, H, W)`` in ``[0, 1]``; :class:`InputError` unless there is one
    per style image, none is empty and no blend weights are given."""
    m = masks.detach().float()
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise InputError(f"masks must be (K, H, W), not {tuple(masks.shape)}")
    if m.shape[0] != n_styles:
        raise InputError(f"{m.shape[0]} masks for {n_styles} style image(s); give one mask per "
                         "style")
    if blend is not None:
        raise InputError("style blend weights do not apply with masks (each mask says where "
                         "its style goes)")
    empty = [k + 1 for k in range(m.shape[0]) if float(m[k].max()) <= 1 / 255]
    if empty:
        raise InputError(f"mask {', '.join(map(str, empty))} is black everywhere: its style "
                         "would go nowhere")
    return m.clamp(0, 1)


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """``masks`` ``(K, Hm, Wm)`` resized to ``size`` ``(H, W)`` (bilinear, antialiased when
    shrinking) as ``(1, K, H, W)`` in ``[0, 1]``."""
    m = masks.float()[None]
    if tuple(m.shape[-2:]) == tuple(size):
        return m.clamp(0, 1)
    return F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


def mask_shares(masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(weights, cover)`` of masks ``(N, K, H, W)`` in ``[0, 1]``: ``weights`` ``(N, K, H,
    W)`` sum to 1 at every pixel (each style's share where masks overlap; equal where no mask
    covers the pixel), ``cover`` ``(N, 1, H, W)`` = ``min(sum of the masks, 1)``, how much of
    the pixel is styled at all (the rest keeps the photo)."""
    total = masks.sum(1, keepdim=True)
    k = masks.shape[1]
    weights = torch.where(total > 0, masks / total.clamp_min(1e-12),
                          torch.full_like(masks, 1.0 / k))
    return weights, total.clamp(max=1.0)


def check_keep_mask(keep: Any) -> Tensor | None:
    """A keep mask (a path, PIL image, array, or tensor ``(H, W)``/``(1, H, W)``; white = keep
    the photo there) as float ``(H, W)`` in ``[0, 1]``, or None when it is black everywhere (it
    keeps nothing: a no-op). :class:`InputError` when it is white everywhere (nothing would be
    left to stylise)."""
    if isinstance(keep, Tensor):
        k = keep.detach().float()
        while k.ndim > 2 and k.shape[0] == 1:
            k = k[0]
        if k.ndim != 2:
            raise InputError(f"the keep mask must be (H, W), not {tuple(keep.shape)}")
        k = k.clamp(0, 1)
    else:
        k = load_masks([keep], None)[0]
    if float(k.min()) >= 1 - 1 / 255:
        raise InputError("the keep mask is white everywhere: nothing would be left to stylise")
    if float(k.max()) <= 1 / 255:
        return None
    return k


def keep_style_masks(keep: Tensor, masks: Tensor | None, n_styles: int) -> Tensor:
    """The style masks ``(K, H, W)`` at ``keep``'s size ``(H, W)`` once the keep region is
    taken out: ``masks * (1 - keep)``, or ``1 - keep`` for a single style without masks
    (Gatys et al. 2017: no style statistics are taken or pulled in the kept region).
    :class:`InputError` for several styles without masks, or a mask left empty."""
    free = (1 - keep.float())[None]
    if masks is None:
        if n_styles != 1:
            raise InputError("--keep-mask with several style images needs one --mask per style "
                             "(where each goes)")
        return free
    m = resize_masks(masks, tuple(keep.shape[-2:]))[0].to(free.device) * free
    inside = [k + 1 for k in range(m.shape[0]) if float(m[k].max()) <= 1 / 255]
    if inside:
        raise InputError(f"mask {', '.join(map(str, inside))} lies inside the keep mask: its "
                         "style would go nowhere")
    return m


def keep_photo(photo: Tensor, stylised: Tensor, keep: Tensor) -> Tensor:
    """``keep * photo + (1 - keep) * stylised``: images ``(N, 3, H, W)`` in ``[0, 1]`` (the
    stylised one resized to the photo's size if it differs), ``keep`` ``(H', W')`` in ``[0, 1]``
    resized to ``(H, W)``."""
    hw = tuple(photo.shape[-2:])
    if tuple(stylised.shape[-2:]) != hw:
        stylised = F.interpolate(stylised.float(), size=hw, mode="bilinear", align_corners=False)
    k = resize_masks(keep[None], hw).to(stylised.device)
    photo = photo.to(stylised.device, stylised.dtype)
    return photo + (1 - k).to(stylised.dtype) * (stylised - photo)
