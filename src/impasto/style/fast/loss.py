"""The objective of a per-style network as two explicit phases (:class:`FastStyleLoss`): the
patch discriminator's and the transformer's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from impasto.errors import InputError
from impasto.losses.adversarial import ADVERSARIAL_LOSSES
from impasto.style.fast.config import ADV_LOSSES
from impasto.style.losses import PerceptualLoss

__all__ = ["FastStyleLoss", "random_crops"]


def random_crops(x: Tensor, n: int, size: int, generator: torch.Generator,
                 *, flip: bool = False) -> Tensor:
    """``n`` random ``size x size`` crops of the images ``x`` ``(B, C, H, W)`` (crop ``k`` from
    image ``k % B``), positions (and, with ``flip``, mirroring) drawn from ``generator``.
    Differentiable with respect to ``x``."""
    b, _, h, w = x.shape
    if size > h or size > w:
        raise InputError(f"cannot cut {size}x{size} crops from {w}x{h} images")
    tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
    out = []
    for k in range(n):
        c = x[k % b, :, tops[k] : tops[k] + size, lefts[k] : lefts[k] + size]
        out.append(c.flip(-1) if flips[k] else c)
    return torch.stack(out)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class FastStyleLoss:
    """The objective of a per-style network, as two explicit phases (each runs its forward
    passes, calls ``backward()`` and returns its statistics as detached 0-d tensors on the
    device, read only when the run logs; optimiser steps stay outside)::

        fake = net(content)                       # under autocast, with the graph
        opt_d.zero_grad(); loss.d_step(fake); opt_d.step()       # only with a discriminator
        opt.zero_grad();   loss.g_step(content, fake); opt.step()

    ``d_step`` trains ``D`` on random crops of the style image (real) against random crops of
    the detached ``fake`` (a loss of :data:`~impasto.losses.adversarial.ADVERSARIAL_LOSSES`);
    ``g_step`` backpropagates ``content_weight * L_content + style_weight * L_style + TV``
    (``perceptual``, whose style target must be set) plus ``adversarial_weight * L_G`` with
    D's parameters frozen.

    Args:
        perceptual: a :class:`PerceptualLoss` with its style target set.
        D: the patch discriminator, or None (no adversarial term).
        style: the style image ``(1, 3, H, W)`` in ``[0, 1]`` (D's real crops).
        adversarial_weight, kind, crop: weight of G's GAN loss, one of
            :data:`~impasto.style.fast.ADV_LOSSES`, crop side.
        generator: the :class:`torch.Generator` the crop positions are drawn from.
        autocast: optional zero-argument factory of a context for the forward passes.
    """

    def __init__(
        self,
        perceptual: PerceptualLoss,
        D: nn.Module | None = None,
        *,
        style: Tensor | None = None,
        adversarial_weight: float = 0.0,
        kind: str = "nonsaturating",
        crop: int = 64,
        generator: torch.Generator | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        if kind not in ADV_LOSSES:
            raise InputError(f"adversarial loss must be one of {', '.join(ADV_LOSSES)}")
        if D is not None and style is None:
            raise ValueError("a discriminator needs the style image")
        self.perceptual = perceptual
        self.D = D
        self.style = style
        self.adversarial_weight = float(adversarial_weight)
        self.kind = kind
        self.crop = int(crop)
        self.generator = generator if generator is not None else torch.Generator()
        self.autocast = autocast
        self._loss = ADVERSARIAL_LOSSES.get(kind)

    @property
    def adversarial(self) -> bool:
        return self.D is not None and self.adversarial_weight > 0

    def _ctx(self) -> contextlib.AbstractContextManager:
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    def _crops(self, x: Tensor, n: int, flip: bool = False) -> Tensor:
        return random_crops(x, n, self.crop, self.generator, flip=flip)

    def d_step(self, fake: Tensor) -> dict[str, Tensor]:
        """D's loss on style crops vs crops of ``fake`` (detached); backward. Returns
        ``d_loss``, ``d_real`` and ``d_fake`` (mean logits)."""
        if not self.adversarial:
            return {}
        assert self.D is not None and self.style is not None
        n = fake.shape[0]
        real = self._crops(self.style, n, flip=True)
        fake_c = self._crops(fake.detach().float(), n)
        with self._ctx():
            real_logits = self.D(real)
            fake_logits = self.D(fake_c)
        loss = self._loss.d_loss(real_logits, fake_logits)
        loss.backward()
        return {"d_loss": loss.detach(), "d_real": real_logits.detach().float().mean(),
                "d_fake": fake_logits.detach().float().mean()}

    def g_step(self, content: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """T's loss for ``fake = T(content)`` (graph kept); backward. Returns ``loss``
        (the total), ``content``, ``style``, ``tv`` (unweighted by content/style weights, as
        :class:`PerceptualLoss` reports them) and, with a discriminator, ``g_adv``."""
        with self._ctx():
            self.perceptual.set_content(content)
            total, parts = self.perceptual(fake.float())
        stats = {"content": parts["content"], "style": parts["style"], "tv": parts["tv"]}
        if self.adversarial:
            assert self.D is not None
            with _frozen(self.D):
                with self._ctx():
                    logits = self.D(self._crops(fake.float(), fake.shape[0]))
                g_adv = self._loss.g_loss(logits)
                total = total + self.adversarial_weight * g_adv
                total.backward()
            stats["g_adv"] = g_adv
        else:
            total.backward()
        return {k: v.detach().float() for k, v in {"loss": total, **stats}.items()}
