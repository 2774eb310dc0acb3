"""Small helpers for multi-process training started with ``torchrun``.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT`` for each process; :func:`init_distributed` reads them and joins the process
group (``gloo`` on CPU, ``nccl`` on CUDA). Without ``WORLD_SIZE`` (a plain ``python`` run) or
with ``WORLD_SIZE=1`` nothing is initialised and every helper here is a no-op, so training code
calls them unconditionally::

    info = init_distributed("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = model.to(info.device)
        ...
        if is_main():
            manager.save(step, ...)
        barrier()
    finally:
        cleanup()
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from impasto.errors import InputError

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main",
    "unwrap_model",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    machine, and the ``device`` it trains on (``cuda:<local_rank>`` on CUDA)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes checkpoints and logs."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str = "cpu") -> DistInfo:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (defaults 0, 1 and ``RANK``).

        Raises :class:`InputError` for values that are not whole numbers or out of range.
        """
        world_size = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", rank)
        if world_size < 1:
            raise InputError(f"WORLD_SIZE must be at least 1, not {world_size}")
        if not 0 <= rank < world_size:
            raise InputError(f"RANK must be from 0 to WORLD_SIZE-1 = {world_size - 1}, not {rank}")
        if local_rank < 0:
            raise InputError(f"LOCAL_RANK must not be negative, not {local_rank}")
        return cls(rank, world_size, local_rank, _device(device_type, local_rank))


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"environment variable {name} must be a whole number, not {text!r}"
        ) from None


def _device(device_type: str | torch.device, local_rank: int) -> torch.device:
    kind = torch.device(device_type).type
    if kind == "cpu":
        return torch.device("cpu")
    return torch.device(kind, local_rank)


def init_distributed(
    device_type: str | torch.device = "cpu", *, timeout_s: float = 1800.0
) -> DistInfo:
    """Join the ``torchrun`` process group described by the environment; returns a DistInfo.

    Backend ``nccl`` for ``"cuda"`` (and ``torch.cuda.set_device(local_rank)``), ``gloo``
    otherwise. A no-op (returning rank 0 of 1) when ``WORLD_SIZE`` is unset or 1, and when the
    group is already initialised (the existing group is described). Raises :class:`InputError`
    for a bad environment (e.g. ``WORLD_SIZE`` > 1 without ``MASTER_ADDR``/``MASTER_PORT``: start
    the run with ``torchrun``) or a CUDA run with fewer GPUs than ``LOCAL_RANK`` needs.
    """
    info = DistInfo.from_env(device_type)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, info.device)
    if info.world_size == 1:
        return DistInfo(0, 1, info.local_rank, info.device)
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise InputError(
            f"WORLD_SIZE={info.world_size} but {' and '.join(missing)} not set; "
            "start the run with torchrun"
        )
    if info.device.type == "cuda":
        count = torch.cuda.device_count()
        if info.local_rank >= count:
            raise InputError(
                f"LOCAL_RANK={info.local_rank} but this machine has {count} CUDA device(s)"
            )
        torch.cuda.set_device(info.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return info


def is_distributed() -> bool:
    """True when a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, and always when not distributed."""
    return get_rank() == 0


def cleanup() -> None:
    """Leave the process group (if one is initialised); safe to call more than once."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process; a no-op when not distributed."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as given on rank ``src``, on every rank (picklable objects); ``obj`` itself when not
    distributed. Typical use: rank 0 resolves the checkpoint to resume from and tells the others."""
    if not is_distributed():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a new tensor); a detached copy if not distributed."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def unwrap_model(model: Any) -> Any:
    """The plain module inside ``DistributedDataParallel``/``DataParallel`` and ``torch.compile``
    wrappers (their state dicts carry ``module.``/``_orig_mod.`` prefixes); others unchanged."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(model, nn.Module) and isinstance(
            getattr(model, "_orig_mod", None), nn.Module
        ):
            model = model._orig_mod
        else:
            return model
