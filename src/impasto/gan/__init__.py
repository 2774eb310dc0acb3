"""GAN training pieces: losses and penalties, the phased :class:`GanLoss`, DiffAugment, the
training loop (:class:`GanTrainConfig`, :func:`train`), sampling (:class:`GanGenerator`) and model
files (:func:`export_model`).

Networks live in :mod:`impasto.nets.gan`; this package may import them, never the reverse.
"""

from impasto.gan.augment import DIFFAUGMENT_POLICIES, DiffAugment
from impasto.gan.config import GanTrainConfig
from impasto.gan.losses import (
    GAN_LOSS_KINDS,
    GanLoss,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
from impasto.gan.model import export_model, read_generator
from impasto.gan.pipeline import GanGenerator, slerp
from impasto.gan.training import GanProgress, GanRunResult, RunResult, train

__all__ = [
    "DIFFAUGMENT_POLICIES",
    "GAN_LOSS_KINDS",
    "DiffAugment",
    "GanGenerator",
    "GanLoss",
    "GanProgress",
    "GanRunResult",
    "GanTrainConfig",
    "RunResult",
    "d_loss_hinge",
    "d_loss_nonsaturating",
    "d_loss_wgan",
    "export_model",
    "g_loss_hinge",
    "g_loss_nonsaturating",
    "g_loss_wgan",
    "gradient_penalty",
    "r1_penalty",
    "read_generator",
    "slerp",
    "train",
]
