"""A DataLoader whose epochs are reproducible from one seed."""

from __future__ import annotations

import numbers
import operator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from impasto.data.transforms import _epoch_seed
from impasto.errors import InputError

__all__ = ["EpochLoader", "make_loader"]


class EpochLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` that starts each iteration as a new epoch.

    On each ``iter()``, for epoch ``e`` (0, 1, 2, ...; see :meth:`set_epoch`): the loader's
    generator is reseeded from ``(seed, e)`` (so the shuffled order of epoch ``e`` depends only
    on ``seed`` and ``e``, also after resuming), and ``set_epoch(e)`` is called on the dataset
    (new flips) and on the sampler if they have one (e.g. a ``DistributedSampler``).
    """

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (e.g. when resuming training)."""
        self.epoch = operator.index(epoch)

    def __iter__(self):  # type: ignore[override]
        e = self.epoch
        self.epoch = e + 1
        if self.generator is not None:
            self.generator.manual_seed(_epoch_seed(self.seed, e))
        batch_sampler = self.batch_sampler
        for obj in (self.dataset, self.sampler, getattr(batch_sampler, "sampler", None)):
            set_epoch = getattr(obj, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(e)
        return super().__iter__()


def _positive(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise InputError(f"{name} must be {kind} integer, not {value!r}")
    return int(value)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
) -> EpochLoader:
    """Batches ``(images (B, C, R, R) float32 in [-1, 1], labels (B,) int64)`` from ``dataset``.

    Returns an :class:`EpochLoader` with a seeded :class:`torch.Generator`: the same ``seed``
    gives the same batches and flips, epoch after epoch, in every run. ``sampler`` (for example a
    :class:`~torch.utils.data.distributed.DistributedSampler`) replaces the shuffling (``shuffle``
    is then ignored) and gets ``set_epoch`` called each epoch. Raises :class:`InputError` when
    ``drop_last`` would leave no batch at all (fewer items than ``batch_size``).
    ``pin_memory`` (for a CUDA run): batches in page-locked memory, so that
    ``.to("cuda", non_blocking=True)`` copies them without waiting for the GPU.
    """
    batch_size = _positive("batch_size", batch_size, 1)
    num_workers = _positive("num_workers", num_workers, 0)
    seed = _positive("seed", seed, 0)
    count = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    if drop_last and count < batch_size:
        raise InputError(
            f"the dataset has {count} images, fewer than the batch size {batch_size}; "
            "lower the batch size"
        )
    generator = torch.Generator().manual_seed(_epoch_seed(seed, 0))
    return EpochLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
        seed=seed,
        pin_memory=bool(pin_memory),
    )
