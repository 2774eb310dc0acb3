"""Perceptual losses for style transfer (Gatys et al. 2016), as small modules with functional twins.

Each module holds a target (set with ``set_target``) and a weight; calling it with the current
features returns the weighted loss as a float32 scalar. Features may be bf16 (autocast); the
comparison is always done in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# The functional twins live one layer down: impasto.metrics.nst measures with them too.
from impasto.losses.perceptual import content_loss, gram_matrix, style_loss


TV_REDUCTIONS = ("mean", "sum")


def total_variation(image: Tensor, reduction: str = "mean", wrap: str = "none") -> Tensor:
    """Squared total variation of ``(N, C, H, W)`` images in ``[0, 1]``, on a 0-255 scale.

    ``reduction="sum"`` is jcjohnson/neural-style's TV term: half the sum, over the pixels that
    have both a right and a lower neighbour, of ``dx**2 + dy**2`` (summed over channels and
    images); its gradient is the one neural-style's ``TVLoss`` adds with strength 1, so a weight
    means what neural-style's ``-tv_weight`` does. ``reduction="mean"`` (impasto's original
    scale, still used by the per-style networks) is the sum of the squared differences to the
    right and lower neighbours divided by the number of elements: at 512 px about 3e5 times
    smaller than ``"sum"``.

    ``wrap`` (``"x"``, ``"y"``, ``"xy"``; with ``"sum"``): the image wraps around along those
    axes, and every pixel's difference to its right (lower) neighbour counts, the last
    column's (row's) to the first.
    """
    x = image.float() * 255.0
    if reduction == "sum" and wrap != "none":
        dx = x - torch.roll(x, -1, -1) if "x" in wrap else x[..., :, :-1] - x[..., :, 1:]
        dy = x - torch.roll(x, -1, -2) if "y" in wrap else x[..., :-1, :] - x[..., 1:, :]
        return 0.5 * (dx.pow(2).sum() + dy.pow(2).sum())
    if reduction == "sum":
        corner = x[..., :-1, :-1]
        dx = corner - x[..., :-1, 1:]
        dy = corner - x[..., 1:, :-1]
        return 0.5 * (dx.pow(2).sum() + dy.pow(2).sum())
    if reduction != "mean":
        raise ValueError(f"reduction must be one of {', '.join(TV_REDUCTIONS)}, not {reduction!r}")
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return (dx.pow(2).sum() + dy.pow(2).sum()) / x.numel()


class ContentLoss(nn.Module):
    """``weight * mse(features, target)`` for one layer."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("target", None, persistent=False)

    def set_target(self, features: Tensor) -> None:
        self.target = features.detach().float()

    def forward(self, features: Tensor) -> Tensor:
        if self.target is None:
            raise RuntimeError("ContentLoss: call set_target first")
        return self.weight * content_loss(features, self.target)


class StyleLoss(nn.Module):
    """``weight * mse(gram(features), target_gram)`` for one layer.

    ``set_target`` takes the features of one or several style images and blend weights; the
    target is the weighted mean of their Gram matrices (as in neural-style's style blending).
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("target", None, persistent=False)
        self.masks: Tensor | None = None  # (K, H, W) regions, one per style (set_masks)

    def set_target(self, features: Sequence[Tensor], blend: Sequence[float] | None = None) -> None:
        if isinstance(features, Tensor):
            features = [features]
        grams = [gram_matrix(f.detach()).mean(0, keepdim=True) for f in features]
        if self.masks is not None:  # one target per region: (K, C, C)
            self.target = torch.cat(grams)
            return
        blend = [1.0] * len(features) if blend is None else list(blend)
        total = float(sum(blend))
        self.target = sum(w / total * g for w, g in zip(blend, grams))

    def set_masks(self, masks: Tensor | None) -> None:
        """Spatial control (Gatys et al. 2017): ``masks`` ``(K, H, W)`` in ``[0, 1]`` at the
        image's size, one per style image; None: one global Gram matrix. Set before
        :meth:`set_target`."""
        self.masks = None if masks is None else masks.detach().float()

    def forward(self, features: Tensor) -> Tensor:
        if self.target is None:
            raise RuntimeError("StyleLoss: call set_target first")
        if self.masks is None:
            return self.weight * style_loss(gram_matrix(features), self.target)
        return self.weight * style_loss(masked_grams(features, self.masks), self.target)


def masked_grams(features: Tensor, masks: Tensor) -> Tensor:
    """Guided Gram matrices (Gatys et al. 2017, "Controlling perceptual factors"): for each
    region ``k``, ``(F m_k)(F m_k)^T / (C * sum m_k^2)`` with ``m_k`` the mask ``(K, H, W)``
    resized to the features ``(1, C, h, w)``, so a mask that is one everywhere gives
    :func:`gram_matrix`. Returns float32 ``(K, C, C)``."""
    _, c, h, w = features.shape
    m = torch.nn.functional.interpolate(masks[None].to(features.device), size=(h, w),
                                        mode="bilinear", align_corners=False, antialias=True)[0]
    f = features.float().reshape(1, c, h * w) * m.reshape(-1, 1, h * w)  # (K, C, hw)
    norm = (m.reshape(-1, h * w).pow(2).sum(1) * c).clamp_min(1e-8)
    return torch.bmm(f, f.transpose(1, 2)) / norm[:, None, None]


class TVLoss(nn.Module):
    """``weight * total_variation(image, reduction)``."""

    def __init__(self, weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in TV_REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(TV_REDUCTIONS)}")
        self.weight = weight
        self.reduction = reduction
        self.wrap = "none"  # axes the image wraps around along (total_variation)

    def forward(self, image: Tensor) -> Tensor:
        return self.weight * total_variation(image, self.reduction, self.wrap)


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss over one VGG encoder (Gatys et al. 2016).

    ``encoder`` maps RGB ``(N, 3, H, W)`` in ``[0, 1]`` to ``{layer: features}`` and must return
    every layer in ``content_layers`` and ``style_layers`` (for example
    :class:`impasto.nets.VGG19Features`). Set the targets with :meth:`set_content` and
    :meth:`set_styles`; calling the module returns ``(total, parts)`` where ``parts`` holds the
    unweighted-by-``*_weight`` sums ``content``, ``style`` and ``tv`` (float32 scalars).
    ``tv_reduction`` picks the scale of the TV term (see :func:`total_variation`): ``"sum"`` is
    neural-style's, ``"mean"`` impasto's original one.
    """

    def __init__(
        self,
        encoder: nn.Module,
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        *,
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        tv_weight: float = 0.0,
        tv_reduction: str = "mean",
        content_layer_weights: Sequence[float] | None = None,
        style_layer_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.content_weight = content_weight
        self.style_weight = style_weight
        cw = content_layer_weights or [1.0] * len(content_layers)
        sw = style_layer_weights or [1.0] * len(style_layers)
        if len(cw) != len(content_layers) or len(sw) != len(style_layers):
            raise ValueError("one layer weight per layer is needed")
        self.content = nn.ModuleDict({n: ContentLoss(w) for n, w in zip(content_layers, cw)})
        self.style = nn.ModuleDict({n: StyleLoss(w) for n, w in zip(style_layers, sw)})
        self.tv = TVLoss(tv_weight, tv_reduction)

    @torch.no_grad()
    def set_content(self, image: Tensor) -> None:
        feats = self.encoder(image)
        for name, loss in self.content.items():
            loss.set_target(feats[name])

    def set_masks(self, masks: Tensor | None) -> None:
        """Per-region styles: ``masks`` ``(K, H, W)`` in ``[0, 1]`` at the optimised image's
        size, mask ``k`` where style image ``k`` goes (:func:`masked_grams`); call before
        :meth:`set_styles`, whose blend weights then do not apply."""
        for loss in self.style.values():
            loss.set_masks(masks)

    @torch.no_grad()
    def set_styles(self, images: Sequence[Tensor], blend: Sequence[float] | None = None) -> None:
        """Style targets from one or more images (each ``(1, 3, H, W)``, sizes may differ)."""
        per_image = [self.encoder(img) for img in images]
        for name, loss in self.style.items():
            loss.set_target([f[name] for f in per_image], blend)

    def forward(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        feats = self.encoder(image)
        c = sum((loss(feats[n]) for n, loss in self.content.items()), image.new_zeros((), dtype=torch.float32))
        s = sum((loss(feats[n]) for n, loss in self.style.items()), image.new_zeros((), dtype=torch.float32))
        tv = self.tv(image) if self.tv.weight else image.new_zeros((), dtype=torch.float32)
        total = self.content_weight * c + self.style_weight * s + tv
        return total, {"content": c.detach(), "style": s.detach(), "tv": tv.detach()}
