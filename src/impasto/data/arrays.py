"""A dataset of images already in memory or memory-mapped: numpy arrays, tensors, IDX files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from impasto.data.base import GanDataset
from impasto.data.sources import as_nhwc, check_labels, image_u8
from impasto.data.transforms import prepare
from impasto.errors import input_error as _err

__all__ = ["ArrayDataset"]


class ArrayDataset(GanDataset):
    """Images from an array already in memory (or memory-mapped).

    ``images``: numpy array or tensor ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with
    ``C`` in 1, 3; uint8 (0..255) or float in ``[0, 1]`` (see
    :func:`impasto.data.sources.as_nhwc`). ``labels``: optional integers ``(N,)``, each >= 0;
    ``classes`` are then ``"0" .. str(max)`` unless given.
    """

    def __init__(
        self,
        images: Any,
        labels: Any = None,
        *,
        resolution: int,
        channels: int = 3,
        hflip: bool = False,
        seed: int = 0,
        source: str = "<array>",
        classes: Sequence[str] | None = None,
    ) -> None:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        images = as_nhwc(images, source)
        if labels is not None:
            labels = check_labels(labels, images.shape[0], source)
            if classes is not None and labels.size and int(labels.max()) >= len(classes):
                raise _err(source, f"label {int(labels.max())} but only {len(classes)} classes")
        super().__init__(
            resolution=resolution,
            channels=channels,
            hflip=hflip,
            seed=seed,
            source=source,
            labels=labels,
            classes=classes,
        )
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _u8(self, i: int) -> torch.Tensor:
        return prepare(image_u8(self.images[i]), self.resolution, self.channels)
