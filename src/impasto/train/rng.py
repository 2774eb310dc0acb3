"""The state of every random number generator a training loop draws from, as plain data.

:func:`capture_rng_state` returns tensors, ints, floats and str only (no numpy object), so the
state travels inside a checkpoint that loads with ``torch.load(weights_only=True)``;
:func:`restore_rng_state` puts it back, after which ``random``, ``np.random``, ``torch`` (CPU,
CUDA) and the named :class:`torch.Generator` objects draw the same numbers as after the capture.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from impasto._fileutil import reason
from impasto.errors import InputError

__all__ = ["GeneratorDeviceError", "capture_rng_state", "restore_rng_state"]


class GeneratorDeviceError(InputError):
    """A saved generator state that the generator cannot take: it was drawn on another kind of
    device (a CUDA generator's state is 16 bytes, a CPU one's 5056), as when a run written on a
    GPU is resumed on a CPU or the other way round. ``names``: the generators concerned."""

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every random number generator a training loop draws from, as plain data.

    ``python`` (:mod:`random`), ``numpy`` (the global ``np.random`` state: its key array as an
    int64 tensor plus ints and a float, so no numpy object is stored), ``torch`` (CPU),
    ``cuda`` (one state per CUDA device; only when CUDA is available and already initialised,
    so that capturing never creates CUDA contexts; otherwise None) and ``generators``: the state
    of each :class:`torch.Generator` passed by name (e.g. the data loader's seeded generator).
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    gens = {}
    for gname, g in (generators or {}).items():
        if not isinstance(g, torch.Generator):
            raise TypeError(f"generator {gname!r} is a {type(g).__name__}, not a torch.Generator")
        gens[str(gname)] = g.get_state().clone()
    return {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
        "generators": gens,
    }


def restore_rng_state(
    state: Mapping[str, Any],
    generators: Mapping[str, torch.Generator] | None = None,
    *,
    strict: bool = True,
) -> None:
    """Put back a state from :func:`capture_rng_state`: after it, ``random``, ``np.random``,
    ``torch`` (CPU and, where saved and available, CUDA) and each named generator produce the
    same numbers as right after the capture.

    A CUDA state saved on a machine with more devices is restored for the devices present; one
    saved without CUDA leaves the CUDA generators alone. A name in ``generators`` without a
    saved state raises :class:`InputError` when ``strict`` (is skipped otherwise).
    """
    try:
        py = state["python"]
        internal = tuple(int(v) for v in _as_cpu_tensor(py["state"]).tolist())
        gauss = py["gauss_next"]
        np_state = state["numpy"]
        keys = _as_cpu_tensor(np_state["keys"]).numpy().astype(np.uint32)
        np_tuple = (
            str(np_state["name"]),
            keys,
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
        torch_state = _as_cpu_tensor(state["torch"]).to(torch.uint8)
        saved_gens = state.get("generators") or {}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(
            f"the saved random number generator state is malformed ({reason(e)})"
        ) from None

    missing = [n for n in (generators or {}) if n not in saved_gens]
    if missing and strict:
        names = ", ".join(repr(n) for n in missing)
        raise InputError(f"no saved random number generator state for generator {names}")
    # Checked before anything is set: a state of another device's generator does not fit.
    foreign = [(n, _as_cpu_tensor(saved_gens[n]).numel(), g.get_state().numel(), g.device)
               for n, g in (generators or {}).items() if n in saved_gens
               and _as_cpu_tensor(saved_gens[n]).numel() != g.get_state().numel()]
    if foreign:
        n, have, want, device = foreign[0]
        raise GeneratorDeviceError(
            [f[0] for f in foreign],
            f"the saved state of generator {n!r} ({have} bytes) is not one a {device.type} "
            f"generator takes ({want} bytes): it was drawn on another kind of device",
        )

    random.setstate((int(py["version"]), internal, None if gauss is None else float(gauss)))
    np.random.set_state(np_tuple)
    torch.set_rng_state(torch_state)
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for i in range(min(len(cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(_as_cpu_tensor(cuda[i]).to(torch.uint8), i)
    for gname, g in (generators or {}).items():
        if gname in saved_gens:
            g.set_state(_as_cpu_tensor(saved_gens[gname]).to(torch.uint8))


def _as_cpu_tensor(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(value).__name__}")
    return value.detach().cpu()
