"""Stop training cleanly when a loss stops being a finite number.

``check_finite({"d_loss": d_loss, "g_loss": g_loss}, step)`` raises
:class:`NonFiniteLossError` with one line such as ``loss 'd_loss' became nan at step 120; the
last good checkpoint is kept`` as soon as a loss is NaN or infinite, before the bad step is
saved. It is an :class:`~impasto.errors.ImpastoError` but not an
:class:`~impasto.errors.InputError`: the input was fine, the training diverged (try a lower
learning rate and resume from the last checkpoint).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
from torch import nn

from impasto.errors import ImpastoError

__all__ = ["NonFiniteLossError", "NonFiniteStateError", "check_finite", "check_finite_state"]


class NonFiniteLossError(ImpastoError, FloatingPointError):
    """A training loss became NaN or infinite; ``name``, ``value``, ``step`` say which and when."""

    def __init__(
        self, name: str, value: float, step: int, checkpoint: str | os.PathLike[str] | None = None
    ) -> None:
        self.name = name
        self.value = value
        self.step = step
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        kept = (
            f"the last good checkpoint ({self.checkpoint}) is kept"
            if checkpoint
            else "no checkpoint had been written yet"
        )
        super().__init__(f"loss '{name}' became {_text(value)} at step {step}; {kept}")


def _text(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def check_finite(
    losses: Mapping[str, torch.Tensor | float],
    step: int,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
) -> None:
    """Raise :class:`NonFiniteLossError` for the first loss (in ``losses`` order) that is NaN or
    ±inf; tensors of any shape are checked element-wise. ``checkpoint``, when given, is named
    in the message as the last good one. Tensors are checked with one device sync per device.
    """
    flags: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    bad: list[str] = []
    for name, value in losses.items():
        if isinstance(value, torch.Tensor):
            flags.setdefault(value.device, []).append((name, torch.isfinite(value.detach()).all()))
        elif not math.isfinite(float(value)):
            bad.append(name)
    for items in flags.values():
        ok = torch.stack([f for _, f in items]).all()
        if not bool(ok):  # one sync per device
            bad += [n for n, f in items if not bool(f)]
    if not bad:
        return
    order = list(losses)
    name = min(bad, key=order.index)
    value = losses[name]
    if isinstance(value, torch.Tensor):
        v = value.detach().float()
        number = (
            math.nan if bool(torch.isnan(v).any()) else float(v[~torch.isfinite(v)].flatten()[0])
        )
    else:
        number = float(value)
    raise NonFiniteLossError(name, number, int(step), checkpoint)


class NonFiniteStateError(NonFiniteLossError):
    """A network's parameters or buffers hold NaN or infinity although the losses were finite
    (a batch-norm variance that overflowed, say); ``name`` is ``"<network>.<tensor>"``."""

    def __init__(
        self, name: str, value: float, step: int, checkpoint: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(name, value, step, checkpoint)
        kept = (f"the last good checkpoint ({self.checkpoint}) is kept" if checkpoint
                else "no checkpoint had been written yet")
        self.args = (f"'{name}' became {_text(value)} at step {step} (the training diverged); "
                     f"{kept}",)


def check_finite_state(
    module: nn.Module, name: str, step: int,
    checkpoint: str | os.PathLike[str] | None = None,
) -> None:
    """Raise :class:`NonFiniteStateError` when a parameter or buffer of ``module`` holds NaN or
    ±inf: one device sync for the whole module."""
    tensors = [(n, t) for n, t in [*module.named_parameters(), *module.named_buffers()]
               if t.is_floating_point() and t.numel()]
    if not tensors:
        return
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in tensors])
    if bool(flags.all()):
        return
    tname, t = tensors[int((~flags).nonzero()[0])]
    v = t.detach().float()
    value = math.nan if bool(torch.isnan(v).any()) else float(v[~torch.isfinite(v)].flatten()[0])
    raise NonFiniteStateError(f"{name}.{tname}", value, int(step), checkpoint)
