"""Exponential moving average (EMA) of a model's weights, as used for GAN generators.

``ema = EMA(G, beta=0.999)`` keeps ``ema.model``, a deep copy of ``G`` in eval mode without
gradients. After each optimiser step, ``ema.update(G)`` sets, for every floating-point
parameter, ``ema_p = beta * ema_p + (1 - beta) * p`` (computed as ``ema_p * beta + p * (1 - beta)``
in the parameter's dtype, so results are bit-for-bit reproducible on CPU and CUDA), and copies
every buffer (BatchNorm running statistics, counters) and non-float parameter as it is.
Sample and evaluate with ``ema.model``.

Ramp-up (off by default): with ``rampup_images=N``, ``update(G, images_seen=n)`` uses
``beta * min(1, n / N)`` instead of ``beta``, so the average starts as a copy of the model and
forgets the random initial weights quickly; from ``n >= N`` on, ``beta`` itself is used.

Half-life (Karras et al. 2020, StyleGAN2-ADA's ``ema_kimg``/``ema_rampup``): with
``half_life_images=H`` the decay is not fixed but follows the images of each update,
``update(G, images_seen=n, images=b)`` using ``beta = 0.5 ** (b / h)`` with
``h = min(H, rampup_ratio * n)`` (``h = H`` without ``rampup_ratio``): the weight of a model
state halves every ``h`` images, and with ``rampup_ratio`` (0.05 in StyleGAN2-ADA) the average
never reaches further back than that fraction of the run so far, so it is useful at every
length of run, not only after the thousands of steps a fixed ``beta = 0.999`` needs to forget
the random start.

``state_dict()``/``load_state_dict()`` hold the averaged model's state dict and the update count;
they are plain data, so an :class:`EMA` can go into :func:`~impasto.train.save_checkpoint`'s
``models`` like a module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from impasto.train.distributed import unwrap_model

__all__ = ["EMA"]


class EMA:
    """EMA of ``model``'s parameters (see the module doc); ``model`` may be DDP-wrapped."""

    def __init__(
        self,
        model: nn.Module,
        beta: float = 0.999,
        *,
        rampup_images: int | None = None,
        half_life_images: float | None = None,
        rampup_ratio: float | None = None,
    ) -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), not {beta!r}")
        if rampup_images is not None and (
            isinstance(rampup_images, bool)
            or not isinstance(rampup_images, int)
            or rampup_images < 1
        ):
            raise ValueError(
                f"rampup_images must be a positive integer or None, not {rampup_images!r}"
            )
        for name, value in (("half_life_images", half_life_images),
                            ("rampup_ratio", rampup_ratio)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or not value > 0
                                      or value == float("inf")):
                raise ValueError(f"{name} must be a positive number or None, not {value!r}")
        if half_life_images is not None and rampup_images is not None:
            raise ValueError("give rampup_images (a ramp of the fixed beta) or half_life_images, "
                             "not both")
        if rampup_ratio is not None and half_life_images is None:
            raise ValueError("rampup_ratio needs half_life_images")
        self.beta = float(beta)
        self.rampup_images = rampup_images
        self.half_life_images = None if half_life_images is None else float(half_life_images)
        self.rampup_ratio = None if rampup_ratio is None else float(rampup_ratio)
        self.num_updates = 0
        src = unwrap_model(model)
        self.model: nn.Module = copy.deepcopy(src)
        self.model.eval()
        self.model.requires_grad_(False)
        for p in self.model.parameters():
            p.grad = None

    def current_beta(self, images_seen: int | None = None, images: int | None = None) -> float:
        """The decay used by an update at ``images_seen`` of ``images`` images (``beta``
        unless ramping up or set by a half-life; see the module doc)."""
        if self.half_life_images is not None:
            if images_seen is None or images is None:
                raise ValueError("this EMA has a half-life in images: call "
                                 "update(model, images_seen=..., images=...)")
            half_life = self.half_life_images
            if self.rampup_ratio is not None:
                half_life = min(half_life, self.rampup_ratio * max(0, int(images_seen)))
            return 0.5 ** (max(0, int(images)) / max(half_life, 1e-8))
        if self.rampup_images is None:
            return self.beta
        if images_seen is None:
            raise ValueError("this EMA ramps up by images: call update(model, images_seen=...)")
        return self.beta * min(1.0, max(0, int(images_seen)) / self.rampup_images)

    @torch.no_grad()
    def update(
        self, model: nn.Module, images_seen: int | None = None, images: int | None = None
    ) -> None:
        """Move the average towards ``model``'s current weights (call after each optimiser
        step; ``images_seen``: the count after this step, ``images``: this step's)."""
        beta = self.current_beta(images_seen, images)
        src = unwrap_model(model)
        ema_params = dict(self.model.named_parameters())
        ema_buffers = dict(self.model.named_buffers())
        src_params = dict(src.named_parameters())
        src_buffers = dict(src.named_buffers())
        if src_params.keys() != ema_params.keys() or src_buffers.keys() != ema_buffers.keys():
            raise ValueError(
                "EMA.update: the model's parameters and buffers differ from the averaged copy's"
            )
        for name, p in src_params.items():
            e = ema_params[name]
            if e.is_floating_point() or e.is_complex():
                # Two roundings then an add, in the parameter's dtype: same numbers everywhere.
                e.mul_(beta).add_(p.detach().to(e.device) * (1.0 - beta))
            else:
                e.copy_(p.detach())
        for name, b in src_buffers.items():
            ema_buffers[name].copy_(b.detach())
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Set the average to ``model``'s weights exactly (e.g. after loading new weights)."""
        self.model.load_state_dict(unwrap_model(model).state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "beta": self.beta,
            "rampup_images": self.rampup_images,
            "half_life_images": self.half_life_images,
            "rampup_ratio": self.rampup_ratio,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the averaged weights and update count from :meth:`state_dict`.

        The averaged model's keys and shapes must match. ``beta``, ``rampup_images``,
        ``half_life_images`` and ``rampup_ratio`` stay as given to the constructor (from the
        run's config), so a deliberate change takes effect.
        """
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state.get("num_updates", 0))
