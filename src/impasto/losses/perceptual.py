"""The functional pieces of the Gatys et al. (2016) perceptual losses: the Gram matrix and the
mean squared errors between feature maps and between Gram matrices.

Style transfer minimises them (:mod:`impasto.style.losses` builds its loss modules on them)
and :mod:`impasto.metrics.nst` measures stylised images with them, so both use one definition.
Inputs may be bf16 (autocast); every comparison is done in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["content_loss", "gram_matrix", "style_loss"]


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix of ``(N, C, H, W)`` features, as float32 ``(N, C, C)`` divided by ``C*H*W``."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(input: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between feature maps, in float32."""
    return torch.mean((input.float() - target.float()) ** 2)


def style_loss(input_gram: Tensor, target_gram: Tensor) -> Tensor:
    """Mean squared error between Gram matrices (see :func:`gram_matrix`)."""
    return torch.mean((input_gram - target_gram) ** 2)
