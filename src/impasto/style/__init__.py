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

# Feed-forward per-style networks (impasto.style.fast), loaded lazily: they pull in the
# training machinery, which `import impasto.style` alone does not need.
_FAST = ("FastStyle", "FastStyleConfig", "FastStyleLoss", "FastStyleTrainConfig",
         "load_fast_style", "save_fast_style", "train_fast_style")
__all__ += list(_FAST)


def __getattr__(name: str):
    if name in _FAST:
        from impasto.style import fast

        return getattr(fast, name)
    raise AttributeError(f"module 'impasto.style' has no attribute {name!r}")
