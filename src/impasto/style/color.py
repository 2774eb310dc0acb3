"""Colour preservation for style transfer (Gatys et al. 2017, "Controlling Perceptual Factors in
Neural Style Transfer"): luminance-only transfer and colour histogram matching.

All images are RGB ``(N, 3, H, W)`` tensors in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from impasto.registry import Registry

#: The colour modes (``--preserve-color``) by name, each with a one-line description; the
#: Gatys and AdaIN pipelines carry them out.
COLOR_MODE_REGISTRY: Registry[str] = Registry("colour mode")
COLOR_MODE_REGISTRY.register("none", "the stylised image takes the style's colours")
COLOR_MODE_REGISTRY.register(
    "luminance", "transfer on luminance only; the content keeps its colours (Gatys et al. 2017)"
)
COLOR_MODE_REGISTRY.register(
    "histogram", "recolour the style to the content's colour statistics first "
    "(Gatys et al. 2017)"
)
#: The colour mode names, in order (``"none"``, the default, first).
COLOR_MODES: tuple[str, ...] = COLOR_MODE_REGISTRY.names()

# NTSC YIQ: Y is the luminance, I and Q carry the chroma.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: Tensor, x: Tensor) -> Tensor:
    m = matrix.to(device=x.device, dtype=torch.float32)
    return torch.einsum("ij,njhw->nihw", m, x.float())


def rgb_to_yiq(x: Tensor) -> Tensor:
    """RGB ``(N, 3, H, W)`` to YIQ; Y in ``[0, 1]``."""
    return _apply(_RGB_TO_YIQ, x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """YIQ ``(N, 3, H, W)`` back to RGB (not clamped)."""
    return _apply(_YIQ_TO_RGB, x)


def luminance(x: Tensor) -> Tensor:
    """The Y channel of RGB ``(N, 3, H, W)``, as ``(N, 1, H, W)``."""
    return rgb_to_yiq(x)[:, :1]


def luminance_image(x: Tensor, like: Tensor | None = None) -> Tensor:
    """A grey RGB image of ``x``'s luminance. With ``like``, the luminance is first shifted and
    scaled to ``like``'s luminance mean and std (Gatys et al. 2017, eq. 1), so a style's
    luminance range matches the content's."""
    y = luminance(x)
    if like is not None:
        ref = luminance(like)
        y = (y - y.mean()) / (y.std() + 1e-8) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def combine_luminance(luma_rgb: Tensor, chroma_from: Tensor) -> Tensor:
    """Takes the luminance of ``luma_rgb`` and the I, Q chroma of ``chroma_from`` (same size)."""
    y = luminance(luma_rgb)
    iq = rgb_to_yiq(chroma_from)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def keep_colours(transform: Any) -> Any:
    """A batch function that restyles with ``transform`` (``(N, 3, H, W) -> (N, 3, H, W)`` in
    ``[0, 1]``) and puts each input's chroma back (colour preservation by luminance, Gatys et
    al. 2017). It keeps the transform's ``precision`` and ``expect`` (a runner's)."""

    def apply(x: Tensor) -> Tensor:
        return combine_luminance(transform(x), x)

    for name in ("expect", "precision"):
        if hasattr(transform, name):
            setattr(apply, name, getattr(transform, name))
    return apply


def match_color(source: Tensor, target: Tensor, eps: float = 1e-5) -> Tensor:
    """Recolours ``source`` so its pixels' mean and covariance match ``target``'s.

    This is the linear colour transfer of Gatys et al. 2017 (section 3.2), with the symmetric
    (PCA-style) matrix square root: ``x' = C_t^{1/2} C_s^{-1/2} (x - mu_s) + mu_t``. Used to give a
    style image the content's colours before transfer. ``eps`` regularises flat images.
    """
    s = source.float().reshape(source.shape[0], 3, -1)
    t = target.float().reshape(target.shape[0], 3, -1)
    out = []
    for si, ti in zip(s, t.expand(s.shape[0], -1, -1) if t.shape[0] == 1 else t):
        mu_s, mu_t = si.mean(1, keepdim=True), ti.mean(1, keepdim=True)
        cov_s = torch.cov(si) + eps * torch.eye(3, device=si.device)
        cov_t = torch.cov(ti) + eps * torch.eye(3, device=si.device)
        out.append(_sqrtm(cov_t) @ torch.linalg.inv(_sqrtm(cov_s)) @ (si - mu_s) + mu_t)
    return torch.stack(out).reshape(source.shape).clamp(0, 1)


def _sqrtm(c: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(c.double())
    return (vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T).to(c.dtype)
