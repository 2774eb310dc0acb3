"""Adversarial losses and gradient penalties, and :data:`ADVERSARIAL_LOSSES`, the registry
that names each pair of discriminator and generator losses.

Functional losses take raw discriminator logits of any shape (impasto's discriminators return
``(N,)``; the patch discriminator ``(N, 1, h, w)``) and average over every element. They
compute in float32 whatever the logits' dtype, so they are safe to call on bf16/fp16 outputs
of an autocast region.

=================  ===========================================  ==========================
name               D loss                                       G loss
=================  ===========================================  ==========================
``nonsaturating``  ``mean(softplus(-D(x))) + mean(softplus(D(G(z))))``  ``mean(softplus(-D(G(z))))``
``hinge``          ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``  ``-mean(D(G(z)))``
``wgan-gp``        ``mean(D(G(z))) - mean(D(x))`` + :func:`gradient_penalty`  ``-mean(D(G(z)))``
=================  ===========================================  ==========================

Networks are called as ``D(x)`` when ``y`` is ``None`` and as ``D(x, y)`` otherwise
(:func:`call_net`), so plain single-input modules (toy MLPs) work too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.registry import Registry

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "call_net",
    "d_loss_hinge",
    "d_loss_nonsaturating",
    "d_loss_wgan",
    "g_loss_hinge",
    "g_loss_nonsaturating",
    "g_loss_wgan",
    "gradient_penalty",
    "r1_penalty",
]


def d_loss_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator cross-entropy (Goodfellow et al. 2014) in softplus form:
    ``mean(softplus(-real)) + mean(softplus(fake))`` = ``-log sigmoid(real) - log(1 - sigmoid(fake))``."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def g_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``mean(softplus(-fake))`` = ``-log sigmoid(D(G(z)))``."""
    return F.softplus(-fake_logits.float()).mean()


def d_loss_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018):
    ``mean(relu(1 - real)) + mean(relu(1 + fake))``."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def g_loss_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss ``-mean(D(G(z)))``."""
    return -fake_logits.float().mean()


def d_loss_wgan(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Wasserstein critic loss (Arjovsky et al. 2017) ``mean(fake) - mean(real)``; pair it
    with :func:`gradient_penalty` (WGAN-GP)."""
    return fake_logits.float().mean() - real_logits.float().mean()


def g_loss_wgan(fake_logits: Tensor) -> Tensor:
    """Wasserstein generator loss ``-mean(D(G(z)))``."""
    return -fake_logits.float().mean()


def call_net(net: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    """``net(x)`` when ``y`` is None, else ``net(x, y)`` (plain one-input modules work too)."""
    return net(x) if y is None else net(x, y)


def _input_grad(D: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    """d sum(D(x)) / dx with the graph kept, so the penalty can be back-propagated."""
    out = call_net(D, x, y)
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    return grad.float().flatten(1)


def gradient_penalty(
    D: Callable[..., Tensor],
    real: Tensor,
    fake: Tensor,
    y: Tensor | None = None,
    weight: float = 10.0,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``weight * E (||grad_x D(x_hat)||_2 - 1)^2`` at
    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per sample.

    ``real`` and ``fake`` are detached and interpolated in float32; the gradient norm and the
    penalty are float32. Run it outside any autocast region (as :class:`GanLoss` does) so that
    D's forward and the double backward are float32 too: the penalty is a difference of nearly
    equal numbers that bf16 would drown in rounding. ``generator`` seeds ``eps``.
    """
    if real.shape != fake.shape:
        raise InputError(
            f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}"
        )
    real32, fake32 = real.detach().float(), fake.detach().float()
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    draw_device = generator.device if generator is not None else real.device
    eps = torch.rand(shape, generator=generator, device=draw_device).to(real.device)
    x_hat = (eps * real32 + (1.0 - eps) * fake32).requires_grad_(True)
    norm = _input_grad(D, x_hat, y).norm(2, dim=1)
    return weight * (norm - 1.0).square().mean()


def r1_penalty(
    D: Callable[..., Tensor], real: Tensor, y: Tensor | None = None, gamma: float = 10.0
) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): ``gamma / 2 * E ||grad_x D(x)||^2`` on real data,
    in float32 (same advice as :func:`gradient_penalty`: call it outside autocast)."""
    x = real.detach().float().requires_grad_(True)
    sq = _input_grad(D, x, y).square().sum(dim=1)
    return 0.5 * gamma * sq.mean()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


class AdversarialLoss(NamedTuple):
    """One entry of :data:`ADVERSARIAL_LOSSES`: ``d_loss(real_logits, fake_logits)``,
    ``g_loss(fake_logits)``, whether the objective includes the WGAN-GP
    :func:`gradient_penalty`, and a one-line description."""

    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    gradient_penalty: bool = False
    description: str = ""


#: The adversarial objectives by name (``GanLoss(kind=...)``, ``gan train --loss``; the style
#: networks' patch discriminator takes the first two).
ADVERSARIAL_LOSSES: Registry[AdversarialLoss] = Registry("GAN loss")
ADVERSARIAL_LOSSES.register("nonsaturating", AdversarialLoss(
    d_loss_nonsaturating, g_loss_nonsaturating,
    description="cross-entropy D, non-saturating G (Goodfellow et al. 2014)",
))
ADVERSARIAL_LOSSES.register("hinge", AdversarialLoss(
    d_loss_hinge, g_loss_hinge, description="hinge (Lim & Ye 2017; Miyato et al. 2018)",
))
ADVERSARIAL_LOSSES.register("wgan-gp", AdversarialLoss(
    d_loss_wgan, g_loss_wgan, gradient_penalty=True,
    description="Wasserstein critic with gradient penalty (Gulrajani et al. 2017)",
))
