"""The classifier's data: the training set and its validation set or split
(:func:`open_train_val`), the input statistics the network normalises with, and the training
augmentation (:func:`augment_batch`).

Images come from :func:`impasto.data.open_dataset` as ``(C, S, S)`` floats in ``[-1, 1]`` with
integer labels; the network and the augmentation take ``[0, 1]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

from impasto.data import open_dataset
from impasto.errors import InputError

__all__ = [
    "Relabel",
    "TrainValData",
    "augment_batch",
    "class_mapping",
    "input_stats",
    "open_labelled",
    "open_train_val",
    "stratified_split",
]

log = logging.getLogger(__name__)

#: Training images measured for the input mean and std.
STATS_IMAGES = 4096


def augment_batch(
    x: Tensor, pad: int, hflip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Random crops with zero padding and random horizontal flips of a batch ``(N, C, H, W)``.

    Each image is padded by ``pad`` pixels of value 0 on every side and an ``H x W`` window is
    cut at a random offset (a shift of up to ``pad`` pixels each way); with ``hflip`` about half
    the images are mirrored. All draws come from ``generator`` (on ``x``'s device).
    """
    n, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H)
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (N, W)
        idx = torch.arange(n, device=x.device)[:, None, None]
        # padded[n, :, rows, cols] -> (N, H, W, C)
        x = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


class Relabel(Dataset):
    """``dataset`` with its labels mapped through ``mapping`` (dataset class -> model class)."""

    def __init__(self, dataset: Any, mapping: Sequence[int]) -> None:
        self.dataset = dataset
        self.mapping = torch.as_tensor(list(mapping), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.dataset[i]
        return x, self.mapping[y]


def class_mapping(source: str, names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """For each class name of a dataset, its index among ``model_names``; :class:`InputError`
    naming the first class the model does not know."""
    index = {c: k for k, c in enumerate(model_names)}
    unknown = [c for c in names if c not in index]
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:5])
        known = ", ".join(list(model_names)[:10]) + (" ..." if len(model_names) > 10 else "")
        raise InputError(f"{source}: class(es) {shown} unknown to the model (its classes: {known})")
    return [index[c] for c in names]


def stratified_split(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices: ``round(share * count)`` of every class (at least one when
    ``share > 0`` and the class has two or more items) go to validation, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(share * idx.size))
        if share > 0 and idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def input_stats(dataset: Any, indices: np.ndarray, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of up to ``STATS_IMAGES`` images (evenly spaced) in [0, 1]."""
    pick = indices[np.linspace(0, indices.size - 1, min(indices.size, STATS_IMAGES)).astype(int)]
    s = torch.zeros(channels, dtype=torch.float64)
    s2 = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for i in np.unique(pick):
        x = (dataset[int(i)][0].double() + 1.0) / 2.0
        s += x.sum(dim=(1, 2))
        s2 += (x * x).sum(dim=(1, 2))
        count += x[0].numel()
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def open_labelled(source: str, labels: str | None, *, image_size: int, channels: int,
                  seed: int) -> Any:
    """:func:`impasto.data.open_dataset` of labelled images; :class:`InputError` for
    unlabelled ones."""
    ds = open_dataset(source, resolution=image_size, channels=channels, labels_path=labels,
                      seed=seed)
    if ds.num_classes == 0:
        raise InputError(
            f"{source}: the images have no labels; a classifier needs labelled data (one "
            "sub-folder per class, IDX labels, or labels in the array file)"
        )
    return ds


@dataclass
class TrainValData:
    """A run's data: ``dataset`` (all of ``data``), its ``classes`` (the model's), the training
    subset ``train_set`` (indices ``train_idx`` of ``dataset``) and the validation set
    ``val_set`` with the indices ``val_idx`` used of it (empty: no validation)."""

    dataset: Any
    classes: list[str]
    train_set: Subset
    train_idx: np.ndarray
    val_set: Any
    val_idx: np.ndarray


def open_train_val(config: Any, split_seed: int) -> TrainValData:
    """Open ``config.data`` and its validation set: ``config.val_data`` (its classes matched to
    the training classes by name) or a stratified share ``config.val_split`` of every class,
    chosen by ``split_seed``. :class:`InputError` for unlabelled data and a single class."""
    opts = {"image_size": config.image_size, "channels": config.channels, "seed": config.seed}
    dataset = open_labelled(config.data, config.labels, **opts)
    if dataset.num_classes < 2:
        raise InputError(f"{config.data}: only one class; a classifier needs two or more")
    classes = list(dataset.classes)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if config.val_data is not None:
        val_ds = open_labelled(config.val_data, config.val_labels, **opts)
        val_set: Any = Relabel(val_ds, class_mapping(config.val_data, val_ds.classes, classes))
        train_idx, val_idx = np.arange(len(dataset)), np.arange(len(val_set))
    else:
        train_idx, val_idx = stratified_split(labels, config.val_split, split_seed)
        val_set = dataset
    present = set(np.unique(labels[train_idx]).tolist())
    if len(present) < len(classes):
        missing = [classes[k] for k in range(len(classes)) if k not in present]
        log.warning("no training images of class(es) %s", ", ".join(missing[:10]))
    return TrainValData(dataset, classes, Subset(dataset, train_idx.tolist()), train_idx,
                        val_set, val_idx)
