"""Datasets of image files: a folder (:class:`ImageFolderDataset`) or a zip archive
(:class:`ZipImageDataset`), labelled by sub-folder, checked once, decoded through :mod:`impasto.io`.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impasto.data.base import (
    GanDataset,
    _check_verify,
    _report_skipped,
    _resolved,
)
from impasto.data.sources import list_folder, list_zip
from impasto.data.transforms import prepare
from impasto.errors import InputError
from impasto.errors import escape_line as _one_line
from impasto.errors import input_error as _err
from impasto.io import image_size, load_image

__all__ = ["ImageFolderDataset", "ZipImageDataset"]

log = logging.getLogger("impasto.data")


def _split_classes(names: list[str]) -> tuple[list[str], np.ndarray | None]:
    """Class names (sorted) and per-file labels from the first path component; unlabelled when
    any file lies directly in the root."""
    if not names or any("/" not in n for n in names):
        return [], None
    tops = [n.split("/", 1)[0] for n in names]
    classes = sorted(set(tops))
    index = {c: k for k, c in enumerate(classes)}
    return classes, np.array([index[t] for t in tops], dtype=np.int64)


class _FileDataset(GanDataset):
    """Images stored as individual files (folder or zip), checked once at construction.

    Prepared images are kept in memory when all of them fit in :attr:`MEMORY_CACHE_BYTES`, so
    only the first epoch decodes (per process: each DataLoader worker keeps its own copy).
    """

    MEMORY_CACHE_BYTES = 1 << 30
    _decoded: dict[int, torch.Tensor] | None = None

    def _setup(self, where: Path, names: list[str], label_names: list[str], verify: str) -> None:
        what = "folder" if isinstance(self, ImageFolderDataset) else "zip archive"
        if not names:
            raise _err(where, f"no images in this {what} (looked for {_ext_list()})")
        classes, labels = _split_classes(label_names)
        bad: list[int] = []
        if verify != "none":
            for k, name in enumerate(names):
                try:
                    self._check(name, verify)
                except InputError as exc:
                    log.debug("skipping %s", _one_line(exc))
                    bad.append(k)
        if len(bad) == len(names):
            raise _err(
                where,
                f"no readable images: all {len(names)} image files in this {what} are unreadable "
                f"or corrupt (first: {_one_line(names[0])})",
            )
        bad_set = set(bad)
        self.names = [n for k, n in enumerate(names) if k not in bad_set]
        self.skipped = [names[k] for k in bad]
        self.classes = classes
        self.labels = None if labels is None else np.delete(labels, bad)
        _report_skipped(where, self.skipped, len(names), f"checked with verify={verify!r}")
        size = len(self.names) * self.channels * self.resolution**2
        self._decoded = {} if size <= self.MEMORY_CACHE_BYTES else None

    def __len__(self) -> int:
        return len(self.names)

    def _u8(self, i: int) -> torch.Tensor:
        if self._decoded is None:
            return self._decode(i)
        x = self._decoded.get(i)
        if x is None:
            x = self._decoded[i] = self._decode(i)
        return x

    def _decode(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        return self.names[i]

    def _check(self, name: str, verify: str) -> None:
        raise NotImplementedError

    def _prepare(self, img: Any) -> torch.Tensor:
        return prepare(np.asarray(img), self.resolution, self.channels)


def _ext_list() -> str:
    from impasto.data.sources import IMAGE_EXTENSIONS

    return " ".join(sorted(IMAGE_EXTENSIONS))


class ImageFolderDataset(_FileDataset):
    """The images in a folder and its sub-folders (see ``IMAGE_EXTENSIONS``; hidden files ignored).

    Labels: when every image lies in a sub-folder, the top-level sub-folder names, sorted, are
    the ``classes`` and an image's label is its sub-folder's index (deeper folders belong to
    their top-level one); when any image lies directly in ``root``, the dataset is unlabelled.

    ``verify`` decides the one-time check at construction: ``"header"`` (default) reads each
    file's header with :func:`impasto.io.image_size` (catches non-images, empty and broken
    files quickly); ``"full"`` decodes every image once (also catches truncated pixel data);
    ``"none"`` checks nothing. Files failing the check are left out, listed in ``skipped`` and
    reported in one ``logging`` warning (count and first names); files failing later are handled
    by :meth:`GanDataset.__getitem__`. ``skipped`` names are relative to ``root``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        resolution: int,
        channels: int = 3,
        hflip: bool = False,
        seed: int = 0,
        verify: str = "header",
    ) -> None:
        self.root = Path(root)
        super().__init__(
            resolution=resolution,
            channels=channels,
            hflip=hflip,
            seed=seed,
            source=_resolved(self.root),
            labels=None,
        )
        verify = _check_verify(verify)
        if not self.root.is_dir():
            raise _err(self.root, "no such folder")
        names = list_folder(self.root)
        self._setup(self.root, names, names, verify)

    def _check(self, name: str, verify: str) -> None:
        path = self.root / name
        if verify == "full":
            load_image(path)
        else:
            image_size(path)

    def _decode(self, i: int) -> torch.Tensor:
        return self._prepare(load_image(self.root / self.names[i]))


def _strip_wrappers(names: list[str]) -> list[str]:
    """Drop leading folders that every name shares (``data/cat/1.png`` -> ``cat/1.png``)."""
    parts = [n.split("/") for n in names]
    depth = 0
    while parts and all(len(p) > depth + 1 for p in parts):
        first = parts[0][depth]
        if any(p[depth] != first for p in parts):
            break
        depth += 1
    return ["/".join(p[depth:]) for p in parts]


class ZipImageDataset(_FileDataset):
    """The images in a zip archive (members with an image extension; folders and hidden skipped).

    Labels as for :class:`ImageFolderDataset`, after removing the leading folders that every
    member shares (so ``mnist/3/a.png`` and ``mnist/7/b.png`` give classes ``3`` and ``7``, and
    an archive of one wrapped flat folder is unlabelled). ``verify`` as for the folder dataset
    (``"header"`` reads each member once). ``skipped`` holds member names. The archive is
    opened once per process, so DataLoader workers can read it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resolution: int,
        channels: int = 3,
        hflip: bool = False,
        seed: int = 0,
        verify: str = "header",
    ) -> None:
        self.path = Path(path)
        self._zf: zipfile.ZipFile | None = None
        self._zf_pid = -1
        super().__init__(
            resolution=resolution,
            channels=channels,
            hflip=hflip,
            seed=seed,
            source=_resolved(self.path),
            labels=None,
        )
        verify = _check_verify(verify)
        names = list_zip(self.path)
        try:
            self._setup(self.path, names, _strip_wrappers(names), verify)
        finally:
            self._close()

    def _archive(self) -> zipfile.ZipFile:
        if self._zf is None or self._zf_pid != os.getpid():
            # A forked worker must not share the parent's file offset: open its own handle.
            try:
                self._zf = zipfile.ZipFile(self.path)
            except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
                raise _err(self.path, f"cannot open the zip archive ({exc})") from None
            self._zf_pid = os.getpid()
        return self._zf

    def _close(self) -> None:
        if self._zf is not None and self._zf_pid == os.getpid():
            self._zf.close()
        self._zf = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_zf"] = None
        return state

    def _read(self, name: str) -> bytes:
        label = f"{self.path}:{name}"
        try:
            return self._archive().read(name)
        except InputError:
            raise
        except (
            zipfile.BadZipFile,
            RuntimeError,  # encrypted member
            NotImplementedError,  # unsupported compression
            zlib.error,
            EOFError,
            OSError,
            KeyError,
        ) as exc:
            raise _err(label, f"cannot read the member ({exc})") from None

    def _check(self, name: str, verify: str) -> None:
        data = self._read(name)
        label = f"{self.path}:{name}"
        if verify == "full":
            load_image(data, name=label)
        else:
            image_size(data, name=label)

    def _decode(self, i: int) -> torch.Tensor:
        name = self.names[i]
        return self._prepare(load_image(self._read(name), name=f"{self.path}:{name}"))
