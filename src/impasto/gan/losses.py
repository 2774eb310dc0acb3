"""GAN losses, gradient penalties, and :class:`GanLoss`, whose explicit named phases
(``d_step``, ``penalty_step``, ``g_step``) follow the loss-object design of StyleGAN2-ADA.

Functional losses take raw discriminator logits of any shape (impasto's discriminators return
``(N,)``) and average over every element. They compute in float32 whatever the logits' dtype,
so they are safe to call on bf16/fp16 outputs of an autocast region.

* ``nonsaturating``: D ``mean(softplus(-D(x))) + mean(softplus(D(G(z))))``,
  G ``mean(softplus(-D(G(z))))``.
* ``hinge``: D ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``, G ``-mean(D(G(z)))``.
* ``wgan`` (with the gradient penalty: ``wgan-gp``): D ``mean(D(G(z))) - mean(D(x))``,
  G ``-mean(D(G(z)))``.

Networks are called as ``D(x)`` / ``G(z)`` when ``y`` is ``None`` and as ``D(x, y)`` /
``G(z, y)`` otherwise, so plain single-input modules (toy MLPs) work too.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import ContextManager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.nets.gan import sample_latents

__all__ = [
    "GAN_LOSS_KINDS",
    "GanLoss",
    "d_loss_hinge",
    "d_loss_nonsaturating",
    "d_loss_wgan",
    "g_loss_hinge",
    "g_loss_nonsaturating",
    "g_loss_wgan",
    "gradient_penalty",
    "r1_penalty",
]

GAN_LOSS_KINDS: tuple[str, ...] = ("nonsaturating", "hinge", "wgan-gp")


# --------------------------------------------------------------------------------------------
# Functional losses
# --------------------------------------------------------------------------------------------


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


def _call(net: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    return net(x) if y is None else net(x, y)


def _input_grad(D: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    """d sum(D(x)) / dx with the graph kept, so the penalty can be back-propagated."""
    out = _call(D, x, y)
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
# Loss object with named phases
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily sets ``requires_grad=False`` on every parameter of ``module``, restoring each
    parameter's own flag afterwards."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _check_weight(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class GanLoss:
    """GAN objective split into explicit phases, each of which runs its forward passes,
    computes its loss, calls ``backward()`` and returns a ``dict`` of float statistics.

    Optimizer stepping stays **outside**: the training loop zeroes the gradients, calls a phase
    (or several, whose gradients add up), and steps the optimizer::

        loss = GanLoss(G, D, "wgan-gp", augment=DiffAugment())
        for real, y in loader:
            z = sample_latents(len(real), G.z_dim)
            opt_d.zero_grad(set_to_none=True)
            stats = loss.d_step(real, y, z)
            with torch.no_grad():
                fake = G(z, y)
            stats |= loss.penalty_step(real, fake, y)     # {} when no penalty is on
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            stats |= loss.g_step(sample_latents(len(real), G.z_dim), y)
            opt_g.step()

    Which network receives gradients:

    * ``d_step`` and ``penalty_step`` run G under ``torch.no_grad()`` (or use a given, detached
      fake), so G's gradients are untouched.
    * ``g_step`` sets ``requires_grad=False`` on D's parameters for the duration of the phase
      (each parameter's own flag is restored afterwards), so D's gradients are not accumulated
      (they stay ``None`` if they were) while the gradient still flows through D into G.

    Args:
        G, D: the networks; called as ``G(z[, y])`` and ``D(x[, y])``.
        kind: ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``.
        gp_weight: weight of the WGAN-GP penalty (used only by ``"wgan-gp"``).
        r1_gamma: R1 weight; 0 turns R1 off. Can be combined with any kind.
        augment: optional differentiable augmentation (e.g. :class:`DiffAugment`) applied to
            every image D sees, real and fake alike, in every phase. Penalties take their
            gradient w.r.t. the images *before* augmentation, as StyleGAN2-ADA does.
        autocast: optional zero-argument factory of a context manager wrapped around the
            forward passes of ``d_step`` and ``g_step``, e.g.
            ``lambda: torch.autocast("cpu", dtype=torch.bfloat16)``. Losses are computed from
            logits cast to float32, and ``backward()`` runs outside the context. The penalty
            phase never uses it: D's forward, the input gradient and the penalty are all
            float32.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        kind: str = "nonsaturating",
        *,
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        augment: Callable[[Tensor], Tensor] | None = None,
        autocast: Callable[[], ContextManager] | None = None,
    ) -> None:
        if kind not in GAN_LOSS_KINDS:
            raise InputError(f"unknown GAN loss {kind!r}; choose from {', '.join(GAN_LOSS_KINDS)}")
        if augment is not None and not callable(augment):
            raise InputError("augment must be callable or None")
        if autocast is not None and not callable(autocast):
            raise InputError("autocast must be a zero-argument callable returning a context")
        self.G, self.D, self.kind = G, D, kind
        self.gp_weight = _check_weight("gp_weight", gp_weight)
        self.r1_gamma = _check_weight("r1_gamma", r1_gamma)
        self.augment = augment
        self.autocast = autocast
        if kind == "nonsaturating":
            self._d_loss, self._g_loss = d_loss_nonsaturating, g_loss_nonsaturating
        elif kind == "hinge":
            self._d_loss, self._g_loss = d_loss_hinge, g_loss_hinge
        else:
            self._d_loss, self._g_loss = d_loss_wgan, g_loss_wgan

    # -- helpers ---------------------------------------------------------------------------

    def _ctx(self) -> ContextManager:
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    def run_D(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """D on augmented images (no autocast of its own)."""
        if self.augment is not None:
            x = self.augment(x)
        return _call(self.D, x, y)

    def _latents(self, z: Tensor | None, n: int, device: torch.device) -> Tensor:
        if z is not None:
            return z
        z_dim = getattr(self.G, "z_dim", None)
        if not isinstance(z_dim, int):
            raise InputError("pass latents z: the generator has no integer attribute z_dim")
        return sample_latents(n, z_dim, device=device)

    @property
    def penalties(self) -> tuple[str, ...]:
        """Names of the penalties ``penalty_step`` computes: ``gp`` and/or ``r1``."""
        out = ("gp",) if self.kind == "wgan-gp" and self.gp_weight > 0 else ()
        return out + (("r1",) if self.r1_gamma > 0 else ())

    # -- phases ----------------------------------------------------------------------------

    def d_step(self, real: Tensor, y: Tensor | None = None, z: Tensor | None = None
               ) -> dict[str, float]:
        """D's main loss on ``real`` vs ``G(z, y)`` (G run without gradients); backward.

        ``z=None`` samples standard normal latents of size ``G.z_dim``. Returns ``d_loss``,
        ``d_real`` (mean D(x)) and ``d_fake`` (mean D(G(z))).
        """
        z = self._latents(z, real.shape[0], real.device)
        with self._ctx():
            with torch.no_grad():
                fake = _call(self.G, z, y)
            real_logits = self.run_D(real, y)
            fake_logits = self.run_D(fake.detach(), y)
        loss = self._d_loss(real_logits, fake_logits)
        loss.backward()
        stats = torch.stack(
            [loss.detach(), real_logits.detach().float().mean(), fake_logits.detach().float().mean()]
        ).tolist()
        return dict(zip(("d_loss", "d_real", "d_fake"), stats))

    def penalty_step(self, real: Tensor, fake: Tensor | None = None, y: Tensor | None = None
                     ) -> dict[str, float]:
        """The regulariser phase, in float32 without autocast: the WGAN-GP penalty (kind
        ``"wgan-gp"``, needs ``fake``; it is detached) and/or R1 on ``real`` (``r1_gamma > 0``).
        Backward, then returns ``{"gp": ...}`` / ``{"r1": ...}``; ``{}`` when neither is on.
        """
        names = self.penalties
        if not names:
            return {}
        total: Tensor | None = None
        values: list[Tensor] = []
        for name in names:
            if name == "gp":
                if fake is None:
                    raise InputError("the wgan-gp penalty needs a fake batch: pass fake=G(z)")
                term = gradient_penalty(self.run_D, real, fake, y, self.gp_weight)
            else:
                term = r1_penalty(self.run_D, real, y, self.r1_gamma)
            values.append(term.detach())
            total = term if total is None else total + term
        assert total is not None
        total.backward()
        return dict(zip(names, torch.stack(values).tolist()))

    def g_step(self, z: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """G's loss on ``D(G(z, y), y)`` with D's parameters frozen; backward. Returns
        ``g_loss`` and ``g_d_fake`` (mean D(G(z)) seen in this phase)."""
        with _frozen(self.D):
            with self._ctx():
                fake = _call(self.G, z, y)
                fake_logits = self.run_D(fake, y)
            loss = self._g_loss(fake_logits)
            loss.backward()
        stats = torch.stack([loss.detach(), fake_logits.detach().float().mean()]).tolist()
        return dict(zip(("g_loss", "g_d_fake"), stats))
