"""Style transfer: perceptual losses, colour control, and Gatys optimisation."""

from impasto.style.gatys import GatysConfig, GatysStyleTransfer, StepInfo
from impasto.style.losses import (
    ContentLoss,
    PerceptualLoss,
    StyleLoss,
    TVLoss,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
)

__all__ = [
    "ContentLoss",
    "GatysConfig",
    "GatysStyleTransfer",
    "PerceptualLoss",
    "StepInfo",
    "StyleLoss",
    "TVLoss",
    "content_loss",
    "gram_matrix",
    "style_loss",
    "total_variation",
]
