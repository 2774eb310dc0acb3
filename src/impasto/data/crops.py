"""Random square crops of the images in a folder: the training data of the style networks
(per-style feed-forward networks, AdaIN decoders).

Item ``i`` of :class:`CropFolder` is float32 ``(3, crop, crop)`` in ``[0, 1]``: image ``i``
resized so that its shorter side is ``load_size``, cropped at a random place and, with
``hflip``, mirrored half the time. The crop is a function of ``(seed, epoch, i)`` only
(:meth:`CropFolder.set_epoch`, called by :class:`~impasto.data.EpochLoader`), so runs and
resumes repeat exactly whatever the number of loader workers. The order of the items is the
sampler's (:class:`impasto.train.EpochSampler`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from impasto.data.sources import list_folder, readable_images
from impasto.errors import InputError, escape_line
from impasto.io import load_image, resize_shorter

__all__ = ["RESAMPLES", "CropFolder"]

log = logging.getLogger(__name__)

#: How images are brought to ``load_size`` (see :class:`CropFolder`).
RESAMPLES = ("lanczos", "bilinear")


class CropFolder(Dataset):
    """Random square crops of the images under ``root`` (searched recursively); see the module
    doc.

    Args:
        root: the folder. Files whose header cannot be read are left out with one warning
            (their names in :attr:`skipped`); a missing, empty or unreadable folder is an
            :class:`InputError` naming ``what`` (e.g. ``"content photos"``).
        size: side of the crops.
        load_size: the shorter side the images are resized to first (default ``size``).
        seed: the crops' seed.
        hflip: mirror half the crops.
        resample: ``"lanczos"`` (antialiased, the longer side rounded up: the per-style
            networks) or ``"bilinear"`` (AdaIN); see :func:`impasto.io.resize_shorter`.
        cache: keep the resized images in memory (default: when there are at most 1,000).
    """

    def __init__(self, root: str | os.PathLike[str], size: int, *,
                 load_size: int | None = None, seed: int = 0, hflip: bool = True,
                 resample: str = "lanczos", cache: bool | None = None,
                 what: str = "images") -> None:
        if resample not in RESAMPLES:
            raise ValueError(f"resample must be one of {RESAMPLES}, not {resample!r}")
        self.root = Path(root)
        self.what = what
        if not self.root.is_dir():
            problem = "not a folder" if self.root.exists() else "no such folder"
            raise InputError(escape_line(f"{self.root}: {problem} (the {what})"))
        names = list_folder(self.root)
        if not names:
            raise InputError(escape_line(f"{self.root}: no images in this folder (the {what})"))
        good, bad = readable_images(self.root, names)
        if not good:
            raise InputError(escape_line(
                f"{self.root}: no readable images: all {len(names)} image files are "
                f"unreadable (the {what})"
            ))
        if bad:
            log.warning("skipped %d unreadable image files in %s: %s", len(bad), self.root,
                        ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        self.names = good
        self.skipped = bad
        self.size = int(size)
        self.load_size = self.size if load_size is None else int(load_size)
        if self.load_size < self.size:
            raise ValueError(f"load_size {self.load_size} is smaller than the crop {self.size}")
        self.seed = int(seed)
        self.hflip = bool(hflip)
        self.resample = resample
        self.epoch = 0
        self.cache = len(good) <= 1000 if cache is None else bool(cache)
        self._cached: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def photo(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 ``(H, W, 3)`` with its shorter side ``load_size`` (decoded once
        when cached)."""
        if i in self._cached:
            return self._cached[i]
        img = resize_shorter(load_image(self.root / self.names[i]), self.load_size,
                             resample=self.resample)
        arr = np.asarray(img)
        if self.cache:
            self._cached[i] = arr
        return arr

    def _crop(self, arr: np.ndarray, top: int, left: int, flip: bool) -> Tensor:
        s = self.size
        patch = arr[top : top + s, left : left + s]
        if flip:
            patch = patch[:, ::-1]
        t = torch.from_numpy(np.array(patch, dtype=np.uint8))  # a writable copy
        return t.permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, i: int) -> Tensor:
        for k in range(len(self.names)):
            j = (i + k) % len(self.names)
            try:
                arr = self.photo(j)
            except InputError as e:  # broken past its header: use the next image instead
                log.warning("skipping %s", e)
                continue
            rng = np.random.default_rng([self.seed, self.epoch, i])
            top = int(rng.integers(0, arr.shape[0] - self.size + 1))
            left = int(rng.integers(0, arr.shape[1] - self.size + 1))
            flip = self.hflip and bool(rng.random() < 0.5)
            return self._crop(arr, top, left, flip)
        raise InputError(escape_line(f"{self.root}: none of the images can be decoded"))

    def center(self, i: int) -> Tensor:
        """The centre crop of image ``i`` (for fixed sample grids), never mirrored."""
        arr = self.photo(i % len(self.names))
        return self._crop(arr, (arr.shape[0] - self.size) // 2, (arr.shape[1] - self.size) // 2,
                          False)
