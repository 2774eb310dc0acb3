"""The pieces every training loop repeats (GANs, progressive GANs, classifiers, per-style
networks, AdaIN): seeds, deterministic mode, the resumable data order, gradients and buffers
under ``torchrun``, and the random streams of each process in checkpoints.

A loop built from them (:func:`impasto.gan.train` is the full example)::

    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        rank, world = info.rank, info.world_size
        sampler = EpochSampler(dataset, derive_seed(seed, DATA), world_size=world, rank=rank)
        loader = make_loader(dataset, batch_size, seed=seed, sampler=sampler)
        gen = torch.Generator().manual_seed(derive_seed(seed, AUGMENT, rank))
        generators = {"augment": gen, "loader": loader.generator}
        if ckpt is not None:                     # epoch, pos from the checkpoint's extra
            restore_rng_for_rank(ckpt, generators, rank=rank, world_size=world)
        batches = Batches(loader, sampler, epoch, pos)
        while step < total_steps:
            x, y = batches.next()
            ...                                  # forward, backward, optimiser step
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            extra = {"epoch": batches.epoch, "pos": batches.pos,
                     **gather_rng_states(generators, world)}   # into the checkpoint
        if info.is_distributed:
            broadcast_buffers(model)

Resuming is exact because the data order is a function of the seed and the epoch only
(:class:`EpochSampler`), a resumed run skips the indices of its epoch already used
(:class:`Batches`), and every process's random streams are saved and put back
(:func:`gather_rng_states`, :func:`restore_rng_for_rank`).

The functions called collectives must be called by every rank, in the same order;
:func:`all_reduce_grads` and :func:`broadcast_buffers` need a process group, the others are
no-ops in one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from impasto.errors import InputError
from impasto.train.rng import GeneratorDeviceError, capture_rng_state, restore_rng_state
from impasto.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    is_distributed,
)

__all__ = [
    "EPOCH_ORDERS",
    "Batches",
    "EpochSampler",
    "agree_across_ranks",
    "all_reduce_grads",
    "broadcast_buffers",
    "derive_seed",
    "gather_rng_states",
    "grad_norm",
    "loader_workers",
    "restore_rng_for_rank",
    "runtime_flags",
    "training_session",
    "wrap_ddp",
]

log = logging.getLogger(__name__)

#: How :class:`EpochSampler` seeds the shuffle of an epoch (see there).
EPOCH_ORDERS = ("distributed", "derived")


# --------------------------------------------------------------------------------------------
# seeds and runtime settings


def derive_seed(*parts: int) -> int:
    """A 62-bit seed mixing ``parts`` (independent streams from one user seed, e.g.
    ``derive_seed(seed, STREAM, rank)``), from :class:`numpy.random.SeedSequence`."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 2)


@contextlib.contextmanager
def runtime_flags(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms for the run, or on CUDA cuDNN autotuning (every step has the
    same shapes) and TF32 matrix products (convolutions use TF32 by PyTorch's default already;
    no result a test pins runs on CUDA); the previous global settings are put back
    afterwards."""
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    bench, cudnn_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if deterministic:
            if device.type == "cuda":
                # cuBLAS needs a fixed workspace to be deterministic (read at its first use).
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = bench
        torch.backends.cudnn.deterministic = cudnn_det
        torch.backends.cuda.matmul.allow_tf32 = tf32


@contextlib.contextmanager
def training_session(
    device: torch.device, deterministic: bool
) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the ``torchrun`` process group (a no-op in one process) and set the
    :func:`runtime_flags` for one training run; yields ``(info, device)``, the device being
    this process's under ``torchrun``. Afterwards the flags are put back and the group is
    left, unless the caller had joined it already."""
    owns_group = not is_distributed()
    info = init_distributed(device.type)
    if info.is_distributed:
        device = info.device
    try:
        with runtime_flags(deterministic, device):
            yield info, device
        if info.is_distributed:
            # rank 0 writes the last checkpoint after the loop: no rank returns before it is
            # on disk (a resume right after would otherwise read an older one). Only on a
            # normal exit: after an error the other ranks may never get here.
            barrier()
    finally:
        if owns_group and info.is_distributed:
            cleanup()


def loader_workers(num_workers: int, deterministic: bool) -> int:
    """The data loader's worker count: 0 in deterministic mode (the main process loads)."""
    if deterministic and num_workers:
        log.info("deterministic mode: loading data in the main process (num_workers 0)")
        return 0
    return num_workers


# --------------------------------------------------------------------------------------------
# the data order


class EpochSampler(Sampler[int]):
    """This process's indices of one epoch, able to skip the indices a resumed run already
    used in its current epoch.

    Each epoch is a seeded permutation of all ``n`` indices (``data``: a dataset, or ``n``),
    a function of ``seed`` and the epoch only; process ``rank`` of ``world_size`` takes every
    ``world_size``-th index from position ``rank`` of its first ``n // world_size *
    world_size`` (so every process has as many; the last ``n % world_size`` are left out).
    With one process that is the whole permutation.

    ``order`` says how the permutation of epoch ``e`` is seeded: ``"distributed"``, with
    ``seed + e``, which gives exactly the indices of torch's
    :class:`~torch.utils.data.distributed.DistributedSampler` (``shuffle=True``,
    ``drop_last=True``; the GAN and classifier loops); ``"derived"``, with
    ``derive_seed(seed, e)`` (the style networks). Each loop keeps its own, so that its
    existing checkpoints resume to the same data order.

    ``fill``: an epoch of fewer than ``fill`` indices (a small folder of style images) is the
    permutation followed by further permutations from the same generator, up to the first
    length at least ``fill`` (a multiple of ``n``). Too few indices for every process to get
    one is an :class:`InputError` (``items`` names them in the message).
    """

    def __init__(self, data: Sized | int, seed: int, *, world_size: int = 1, rank: int = 0,
                 order: str = "distributed", fill: int = 0, items: str = "images") -> None:
        if order not in EPOCH_ORDERS:
            raise ValueError(f"unknown epoch order {order!r}; choose from {EPOCH_ORDERS}")
        self.n = data if isinstance(data, int) else len(data)
        self.seed, self.order = int(seed), order
        self.world_size, self.rank = int(world_size), int(rank)
        self.epoch, self._skip = 0, 0
        self.repeats = max(1, -(-int(fill) // self.n)) if self.n else 1
        if self.n * self.repeats < self.world_size:
            raise InputError(
                f"there are {self.n} usable {items}, fewer than the {self.world_size} training "
                f"processes; add {items} or start fewer processes"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` indices of the next iteration only."""
        self._skip = int(count)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        epoch_seed = (self.seed + self.epoch if self.order == "distributed"
                      else derive_seed(self.seed, self.epoch))
        g = torch.Generator().manual_seed(epoch_seed)
        order = [i for _ in range(self.repeats)
                 for i in torch.randperm(self.n, generator=g).tolist()]
        mine = order[self.rank : len(self) * self.world_size : self.world_size]
        return iter(mine[skip:])

    def __len__(self) -> int:
        return self.n * self.repeats // self.world_size


class Batches:
    """Endless batches from an :class:`~impasto.data.EpochLoader` over an
    :class:`EpochSampler`, with the position in the current epoch (``epoch``, ``pos`` = the
    indices used by this process) for checkpoints: ``Batches(loader, sampler, epoch, pos)``
    continues a run saved there. A batch is a tensor or a tuple whose first item is the
    images."""

    def __init__(self, loader: Any, sampler: EpochSampler, epoch: int, pos: int) -> None:
        self.loader, self.sampler = loader, sampler
        self.epoch, self.pos = epoch, pos
        self._it: Iterator | None = None

    def _start(self, skip: int) -> None:
        self.loader.set_epoch(self.epoch)
        self.sampler.skip_next(skip)
        self._it = iter(self.loader)

    def next(self) -> Any:
        if self._it is None:
            self._start(self.pos)
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.pos = self.epoch + 1, 0
            self._start(0)
            batch = next(self._it)
        images = batch if isinstance(batch, Tensor) else batch[0]
        self.pos += int(images.shape[0])
        return batch


# --------------------------------------------------------------------------------------------
# gradients, buffers and statistics across processes


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` on ``device``."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def grad_norm(module: nn.Module) -> float:
    """The L2 norm of all of ``module``'s gradients (0.0 without any)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def all_reduce_grads(module: nn.Module, world_size: int) -> None:
    """Average the gradients of ``module`` over the processes (one flat all-reduce; a
    collective), for passes that did not run through DDP (e.g. a gradient penalty)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].reshape(g.shape))
        offset += n


def broadcast_buffers(*modules: nn.Module | None) -> None:
    """Give every process rank 0's buffers (batch-norm statistics, spectral-norm vectors) of
    each module (None skipped); a collective."""
    for module in modules:
        if module is None:
            continue
        for b in module.buffers():
            dist.broadcast(b, 0)


def agree_across_ranks(
    stats: Mapping[str, float], stop: bool, device: torch.device, distributed: bool
) -> tuple[dict[str, float], bool]:
    """The step's statistics averaged over the processes (so every rank makes the same NaN
    check and logs the same values) and whether any process asked to stop: one float64
    all-reduce on ``device`` (a collective). Unchanged in one process."""
    if not distributed:
        return dict(stats), stop
    keys = sorted(stats)
    vec = torch.tensor([stats[k] for k in keys] + [float(stop)], dtype=torch.float64)
    values = all_reduce_mean(vec.to(device)).cpu().tolist()
    return dict(zip(keys, values[:-1])), values[-1] > 0


# --------------------------------------------------------------------------------------------
# random streams in checkpoints


def gather_rng_states(generators: Mapping[str, torch.Generator], world_size: int
                      ) -> dict[str, Any]:
    """``{"rng_per_rank": [...]}``, the random streams of every process (rank order), for a
    checkpoint's ``extra``, so that each rank resumes its own; a collective. ``{}`` in one
    process, where the checkpoint's own ``rng`` holds them."""
    if world_size <= 1:
        return {}
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, capture_rng_state(generators))
    return {"rng_per_rank": states}


def restore_rng_for_rank(
    ckpt: Mapping[str, Any],
    generators: Mapping[str, torch.Generator],
    *,
    rank: int,
    world_size: int,
) -> bool:
    """Put back this process's random streams (global ones and ``generators``) from a loaded
    checkpoint saved by as many processes (its ``rng``, or ``extra["rng_per_rank"][rank]``)
    and return True. A checkpoint of another number of processes, or one whose generators were
    on another kind of device (written on a GPU, resumed on a CPU, or the other way round), is
    logged and returns False, having put back nothing: the caller then reseeds its streams and
    starts the data afresh from the next epoch.

    Raises :class:`InputError` (naming the file) when the states are missing or unusable."""
    extra = ckpt.get("extra") or {}
    saved_world = int(extra.get("world_size", 1))
    if saved_world != world_size:
        log.warning(
            "%s was saved by %d processes, resumed by %d: the data order and random "
            "streams start afresh from the next epoch",
            ckpt["path"], saved_world, world_size,
        )
        return False
    state = ckpt["rng"] if world_size == 1 else (extra.get("rng_per_rank") or [None])[rank]
    if state is None:
        raise InputError(f"{ckpt['path']}: no random number generator state to resume")
    try:
        restore_rng_state(state, generators)
    except GeneratorDeviceError as e:
        log.warning(
            "%s: %s; the data order and random streams start afresh from the next epoch",
            ckpt["path"], e,
        )
        return False
    except InputError as e:
        raise InputError(f"{ckpt['path']}: {e}") from None
    return True
