"""GAN training's loss object :class:`GanLoss`, whose explicit named phases (``d_step``,
``penalty_step``, ``g_step``) follow the loss-object design of StyleGAN2-ADA.

The losses themselves, the penalties and the registry of loss kinds live one layer down, in
:mod:`impasto.losses.adversarial`, where style training uses them too; they are imported here
under their old names.

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

from impasto.errors import InputError
from impasto.losses.adversarial import (
    ADVERSARIAL_LOSSES,
    call_net,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
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

#: The names of :data:`~impasto.losses.adversarial.ADVERSARIAL_LOSSES`: ``GanLoss``'s kinds.
GAN_LOSS_KINDS: tuple[str, ...] = ADVERSARIAL_LOSSES.names()


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
    computes its loss, calls ``backward()`` and returns a ``dict`` of statistics: detached 0-d
    tensors on the networks' device, read by the caller when it needs them (reading every step
    would stall a GPU).

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
        kind: a name of :data:`~impasto.losses.adversarial.ADVERSARIAL_LOSSES`:
            ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``.
        gp_weight: weight of the WGAN-GP penalty (used only by kinds that include it:
            ``"wgan-gp"``).
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
        spec = ADVERSARIAL_LOSSES.get(kind)
        if augment is not None and not callable(augment):
            raise InputError("augment must be callable or None")
        if autocast is not None and not callable(autocast):
            raise InputError("autocast must be a zero-argument callable returning a context")
        self.G, self.D, self.kind = G, D, kind
        self.gp_weight = _check_weight("gp_weight", gp_weight)
        self.r1_gamma = _check_weight("r1_gamma", r1_gamma)
        self.augment = augment
        self.autocast = autocast
        self._d_loss, self._g_loss = spec.d_loss, spec.g_loss
        self._gradient_penalty = spec.gradient_penalty

    # -- helpers ---------------------------------------------------------------------------

    def _ctx(self) -> ContextManager:
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    def run_D(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """D on augmented images (no autocast of its own)."""
        if self.augment is not None:
            x = self.augment(x)
        return call_net(self.D, x, y)

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
        out = ("gp",) if self._gradient_penalty and self.gp_weight > 0 else ()
        return out + (("r1",) if self.r1_gamma > 0 else ())

    # -- phases ----------------------------------------------------------------------------

    def d_step(self, real: Tensor, y: Tensor | None = None, z: Tensor | None = None
               ) -> dict[str, Tensor]:
        """D's main loss on ``real`` vs ``G(z, y)`` (G run without gradients); backward.

        ``z=None`` samples standard normal latents of size ``G.z_dim``. Returns ``d_loss``,
        ``d_real`` (mean D(x)) and ``d_fake`` (mean D(G(z))).
        """
        z = self._latents(z, real.shape[0], real.device)
        with self._ctx():
            with torch.no_grad():
                fake = call_net(self.G, z, y)
            real_logits = self.run_D(real, y)
            fake_logits = self.run_D(fake.detach(), y)
        loss = self._d_loss(real_logits, fake_logits)
        loss.backward()
        return {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
                "d_fake": fake_logits.detach().float().mean()}

    def penalty_step(self, real: Tensor, fake: Tensor | None = None, y: Tensor | None = None
                     ) -> dict[str, Tensor]:
        """The regulariser phase, in float32 without autocast: the WGAN-GP penalty (kind
        ``"wgan-gp"``, needs ``fake``; it is detached) and/or R1 on ``real`` (``r1_gamma > 0``).
        Backward, then returns ``{"gp": ...}`` / ``{"r1": ...}``; ``{}`` when neither is on.
        """
        names = self.penalties
        if not names:
            return {}
        total: Tensor | None = None
        values: dict[str, Tensor] = {}
        for name in names:
            if name == "gp":
                if fake is None:
                    raise InputError("the wgan-gp penalty needs a fake batch: pass fake=G(z)")
                term = gradient_penalty(self.run_D, real, fake, y, self.gp_weight)
            else:
                term = r1_penalty(self.run_D, real, y, self.r1_gamma)
            values[name] = term.detach()
            total = term if total is None else total + term
        assert total is not None
        total.backward()
        return values

    def g_step(self, z: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """G's loss on ``D(G(z, y), y)`` with D's parameters frozen; backward. Returns
        ``g_loss`` and ``g_d_fake`` (mean D(G(z)) seen in this phase)."""
        with _frozen(self.D):
            with self._ctx():
                fake = call_net(self.G, z, y)
                fake_logits = self.run_D(fake, y)
            loss = self._g_loss(fake_logits)
            loss.backward()
        return {"g_loss": loss.detach(), "g_d_fake": fake_logits.detach().float().mean()}
