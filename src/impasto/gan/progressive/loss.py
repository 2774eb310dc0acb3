"""What D sees of the reals at a stage (:func:`prepare_reals`) and the paper's objective as the
phases of :class:`~impasto.gan.GanLoss` (:class:`PgganLoss`).

The reals follow the same fade as G's output: the data are read at the target resolution,
box-filtered down to the current one and, during a fade, blended by α with their 2x
box-downsampled, nearest-upsampled versions. The loss is WGAN-GP with λ = 10 (Gulrajani et al.
2017) plus the drift term ``0.001 * E[D(x)^2]`` on the real scores (Karras et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.errors import InputError
from impasto.gan.losses import GanLoss, d_loss_wgan
from impasto.nets.pggan import downsample2x, upsample2x

__all__ = ["PgganLoss", "prepare_reals"]


def prepare_reals(real: Tensor, resolution: int, alpha: float | None = None) -> Tensor:
    """Real images ``(N, C, T, T)`` (the dataset's resolution ``T``) as D sees them at a stage:
    box-filtered down to ``(N, C, R, R)`` and, when fading (``alpha`` not None), blended
    ``lerp(up(down(x)), x, alpha)`` with their 2x box-downsampled, nearest-upsampled versions
    (the paper's code, ``process_reals``). ``alpha=1`` gives the plain downsampled images,
    ``alpha=0`` the previous resolution's, upsampled."""
    factor = real.shape[-1] // resolution
    if factor * resolution != real.shape[-1] or real.shape[-1] != real.shape[-2]:
        raise InputError(
            f"cannot bring images of {real.shape[-2]}x{real.shape[-1]} to {resolution}x{resolution}"
        )
    x = F.avg_pool2d(real, factor) if factor > 1 else real
    if alpha is not None:
        x = torch.lerp(upsample2x(downsample2x(x)), x, float(alpha))
    return x


class PgganLoss(GanLoss):
    """The paper's objective as the phases of :class:`~impasto.gan.GanLoss`: WGAN-GP (kind
    ``"wgan-gp"``, weight ``gp_weight``) plus the drift term ``drift_weight * E[D(x)^2]`` on
    the real scores, added to D's main phase (Karras et al. 2018, appendix A.1; the official
    code's ``wgan_epsilon``).

    :meth:`d_step` also keeps the fake batch it made as :attr:`last_fake` (detached), so the
    penalty phase need not run G again.
    """

    def __init__(self, G: nn.Module, D: nn.Module, *, gp_weight: float = 10.0,
                 drift_weight: float = 0.001, autocast: Callable[[], Any] | None = None) -> None:
        super().__init__(G, D, "wgan-gp", gp_weight=gp_weight, autocast=autocast)
        self.drift_weight = float(drift_weight)
        self.last_fake: Tensor | None = None

    def d_step(self, real: Tensor, y: Tensor | None = None, z: Tensor | None = None
               ) -> dict[str, Tensor]:
        """D's loss ``mean(D(G(z))) - mean(D(x)) + drift_weight * mean(D(x)^2)``; backward.
        Returns ``d_loss``, ``d_real``, ``d_fake`` and ``drift`` (``mean(D(x)^2)``), detached
        0-d tensors on the device."""
        z = self._latents(z, real.shape[0], real.device)
        with self._ctx():
            with torch.no_grad():
                fake = self.G(z) if y is None else self.G(z, y)
            real_logits = self.run_D(real, y)
            fake_logits = self.run_D(fake.detach(), y)
        drift = real_logits.float().square().mean()
        loss = d_loss_wgan(real_logits, fake_logits) + self.drift_weight * drift
        loss.backward()
        self.last_fake = fake.detach()
        return {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
                "d_fake": fake_logits.detach().float().mean(), "drift": drift.detach()}

