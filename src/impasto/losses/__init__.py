"""Objectives shared by more than one family: the adversarial losses and penalties that GAN
training (:mod:`impasto.gan`) and style training with a patch discriminator
(:mod:`impasto.style.fast`) both use, and the Gram-matrix pieces of the Gatys losses
(:mod:`impasto.losses.perceptual`) that style transfer minimises and :mod:`impasto.metrics.nst`
measures.

This layer sits below ``gan/`` and ``style/`` and imports neither; it needs only torch and
:mod:`impasto.errors`.
"""

from impasto.losses.adversarial import (
    ADVERSARIAL_LOSSES,
    AdversarialLoss,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
from impasto.losses.perceptual import content_loss, gram_matrix, style_loss

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "content_loss",
    "d_loss_hinge",
    "d_loss_nonsaturating",
    "d_loss_wgan",
    "g_loss_hinge",
    "g_loss_nonsaturating",
    "g_loss_wgan",
    "gradient_penalty",
    "gram_matrix",
    "r1_penalty",
    "style_loss",
]
