"""The base of impasto's GAN datasets (:class:`GanDataset`) and the argument checks they share.

Every dataset yields ``(image, label)``: ``image`` float32 ``(C, R, R)`` in ``[-1, 1]`` (the GAN
convention: 0 -> -1, 255 -> 1), ``label`` an int64 scalar tensor (``-1`` when unlabelled). All
share the attributes ``resolution``, ``channels``, ``classes`` (list of names), ``num_classes``
(0 when unlabelled), ``skipped`` (names of unreadable files left out), ``source`` (a string).
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from impasto.data.transforms import flip_mask, to_signed
from impasto.errors import InputError
from impasto.errors import escape_line as _one_line
from impasto.errors import input_error as _err

__all__ = ["GanDataset", "check_resolution"]

log = logging.getLogger("impasto.data")

_SHOW_NAMES = 5  # how many skipped names a warning lists
_VERIFY = ("header", "full", "none")


# --------------------------------------------------------------------------------------------
# argument checks


def check_resolution(
    resolution: object, allowed: Iterable[int] | None = None, name: str = "the model"
) -> int:
    """Return ``resolution`` if it is a positive integer (and one of ``allowed``, if given).

    Raises :class:`InputError`, e.g. ``"resolution 48 is not supported by dcgan; choose from
    32, 64, 128"`` for ``check_resolution(48, (32, 64, 128), "dcgan")``.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise InputError(
            f"resolution must be a positive integer, not {_one_line(repr(resolution))}"
        )
    resolution = int(resolution)
    if resolution <= 0:
        raise InputError(f"resolution must be a positive integer, not {resolution}")
    if allowed is not None:
        choices = sorted({int(a) for a in allowed})
        if resolution not in choices:
            listed = ", ".join(map(str, choices))
            raise InputError(
                f"resolution {resolution} is not supported by {name}; choose from {listed}"
            )
    return resolution


def _check_channels(channels: object) -> int:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise InputError(f"channels must be 1 (grey) or 3 (RGB), not {_one_line(repr(channels))}")
    return int(channels)  # type: ignore[arg-type]


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, not {_one_line(repr(seed))}")
    return int(seed)


def _check_verify(verify: object) -> str:
    if verify not in _VERIFY:
        raise InputError(f"verify must be one of {', '.join(_VERIFY)}, not {verify!r}")
    return str(verify)


def _report_skipped(source: object, names: Sequence[str], total: int, when: str) -> None:
    """One warning for all files skipped at once: the count and the first few names."""
    if not names:
        return
    shown = ", ".join(_one_line(n) for n in names[:_SHOW_NAMES])
    more = f" and {len(names) - _SHOW_NAMES} more" if len(names) > _SHOW_NAMES else ""
    log.warning(
        "skipped %d of %d image files in %s that cannot be read (%s): %s%s",
        len(names),
        total,
        _one_line(source),
        when,
        shown,
        more,
    )


# --------------------------------------------------------------------------------------------
# the common base


class GanDataset(Dataset):
    """Base of impasto's datasets: flips, ``[-1, 1]`` conversion, labels, skipped files.

    Subclasses provide ``__len__``, ``_u8(i)`` (uint8 ``(C, R, R)``, may raise
    :class:`InputError` for a file that fails to decode) and ``_name(i)``.

    With ``hflip=True``, item ``i`` is mirrored left-right in epoch ``e`` when
    ``flip_mask(len(self), seed, e)[i]`` is True (see :func:`impasto.data.flip_mask`): the same in
    every run, process and worker. The epoch is set by :meth:`set_epoch` (the loader from
    :func:`impasto.data.make_loader` calls it at the start of each epoch); it starts at 0.
    """

    def __init__(
        self,
        *,
        resolution: int,
        channels: int,
        hflip: bool,
        seed: int,
        source: str,
        labels: np.ndarray | None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.resolution = check_resolution(resolution)
        self.channels = _check_channels(channels)
        self.hflip = bool(hflip)
        self.seed = _check_seed(seed)
        self.source = source
        self.labels = labels  # int64 (N,) or None
        if labels is not None and classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        self.classes: list[str] = list(classes or [])
        self.skipped: list[str] = []
        self.epoch = 0
        self._mask: tuple[int, torch.Tensor] | None = None
        self._bad: set[int] = set()

    # -- to implement
    def __len__(self) -> int:
        raise NotImplementedError

    def _u8(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        return f"#{i}"

    # -- shared
    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``); 0 for an unlabelled dataset."""
        return len(self.classes)

    def label(self, i: int) -> int:
        """The class index of item ``i``, or -1 when the dataset is unlabelled."""
        return -1 if self.labels is None else int(self.labels[i])

    def set_epoch(self, epoch: int) -> None:
        """Choose which flips are drawn (see the class docstring)."""
        self.epoch = int(epoch)

    def flips(self) -> torch.Tensor:
        """Bool ``(N,)``: the items mirrored in the current epoch (all False without hflip)."""
        if not self.hflip:
            return torch.zeros(len(self), dtype=torch.bool)
        if self._mask is None or self._mask[0] != self.epoch:
            self._mask = (self.epoch, flip_mask(len(self), self.seed, self.epoch))
        return self._mask[1]

    def image_u8(self, index: int) -> torch.Tensor:
        """Item ``index`` as uint8 ``(C, R, R)``, unflipped; :class:`InputError` if unreadable."""
        return self._u8(self._index(index))

    def _index(self, index: int) -> int:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        return i

    def _try_u8(self, i: int, *, report: bool = True) -> torch.Tensor | None:
        """``_u8(i)``, or None for a file that fails to decode (remembered, reported once)."""
        if i in self._bad:
            return None
        try:
            return self._u8(i)
        except InputError as exc:
            self._bad.add(i)
            name = self._name(i)
            self.skipped.append(name)
            if report:
                log.warning(
                    "skipping an image that cannot be decoded (reported once): %s",
                    _one_line(exc),
                )
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image float32 (C, R, R) in [-1, 1], label int64 scalar)``.

        A file that passed the construction-time check but fails to decode now (say, truncated
        image data with ``verify="header"``) is replaced by the next readable item, appended to
        ``skipped`` and logged once per process (DataLoader workers are separate processes).
        """
        i = self._index(index)
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            x = self._try_u8(j)
            if x is not None:
                break
        else:
            raise _err(self.source, f"no readable images (all {n} failed to decode)")
        if self.hflip and bool(self.flips()[i]):
            x = x.flip(-1)
        return to_signed(x), torch.tensor(self.label(j), dtype=torch.int64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, {len(self)} images, "
            f"resolution={self.resolution}, channels={self.channels}, "
            f"classes={self.num_classes}, hflip={self.hflip})"
        )


def _resolved(source: str | os.PathLike[str]) -> str:
    try:
        return str(Path(source).resolve())
    except (OSError, RuntimeError):
        return str(Path(source).absolute())
