"""Datasets for GAN training: image folders, zips, MNIST IDX files, numpy arrays, cache files.

Every dataset yields ``(image, label)``: ``image`` float32 ``(C, R, R)`` in ``[-1, 1]`` (the GAN
convention: 0 -> -1, 255 -> 1), ``label`` an int64 scalar tensor (``-1`` when unlabelled). All
share the attributes ``resolution``, ``channels``, ``classes`` (list of names), ``num_classes``
(0 when unlabelled), ``skipped`` (names of unreadable files left out), ``source`` (a string).
"""

from __future__ import annotations

import logging
import operator
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from impasto.data.sources import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    as_nhwc,
    check_labels,
    image_u8,
    list_folder,
    list_zip,
    load_numpy,
    read_idx,
    sniff_idx_magic,
)
from impasto.data.transforms import flip_mask, prepare, to_signed
from impasto.errors import InputError
from impasto._fileutil import reason
from impasto.errors import escape_line as _one_line
from impasto.errors import input_error as _err
from impasto.io import image_size, load_image

__all__ = [
    "CACHE_VERSION",
    "ArrayDataset",
    "CachedDataset",
    "GanDataset",
    "ImageFolderDataset",
    "ZipImageDataset",
    "build_cache",
    "check_resolution",
    "open_dataset",
]

log = logging.getLogger("impasto.data")

#: ``version`` written into cache files by :func:`build_cache`.
CACHE_VERSION = 1
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


# --------------------------------------------------------------------------------------------
# files: folders and zips


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


# --------------------------------------------------------------------------------------------
# arrays: numpy, IDX


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


def _idx_labels_sibling(path: Path) -> Path | None:
    """``train-images-idx3-ubyte.gz`` -> ``train-labels-idx1-ubyte.gz`` if that file exists."""
    name = path.name.replace("idx3", "idx1").replace("images", "labels")
    if name == path.name:
        return None
    candidate = path.with_name(name)
    return candidate if candidate.is_file() else None


# --------------------------------------------------------------------------------------------
# cache files


class CachedDataset(GanDataset):
    """A cache file written by :func:`build_cache`: prepared uint8 images, no decoding.

    Loaded with ``torch.load(weights_only=True, mmap=True)`` (the pixels are memory-mapped, not
    read into memory). Serves the same items as the dataset the cache was built from (same
    values, same order), with optional flips. ``resolution``/``channels``/``source``, when given,
    must match the file, else :class:`InputError` (delete the cache to rebuild it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resolution: int | None = None,
        channels: int | None = None,
        hflip: bool = False,
        seed: int = 0,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        data = _load_cache(self.path)
        res, ch = data["resolution"], data["channels"]
        if resolution is not None and check_resolution(resolution) != res:
            raise _err(
                self.path,
                f"cache holds resolution {res}, not the {resolution} requested; "
                "delete it or choose another cache path",
            )
        if channels is not None and _check_channels(channels) != ch:
            raise _err(
                self.path,
                f"cache holds {ch}-channel images, not the {channels} requested; "
                "delete it or choose another cache path",
            )
        if source is not None and _same_source(data["source"], source) is False:
            raise _err(
                self.path,
                f"cache was built from {_one_line(data['source'])}, not {_one_line(source)}; "
                "delete it or choose another cache path",
            )
        super().__init__(
            resolution=res,
            channels=ch,
            hflip=hflip,
            seed=seed,
            source=data["source"],
            labels=None,
            classes=data["classes"],
        )
        self.images: torch.Tensor = data["images"]
        labels = data["labels"]
        self.labels = None if bool((labels < 0).all()) else labels.numpy()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _u8(self, i: int) -> torch.Tensor:
        return self.images[i].clone()


def _same_source(stored: str, requested: str | os.PathLike[str]) -> bool:
    return str(stored) == str(_resolved(requested))


def _resolved(source: str | os.PathLike[str]) -> str:
    try:
        return str(Path(source).resolve())
    except (OSError, RuntimeError):
        return str(Path(source).absolute())


def _load_cache(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise _err(path, "no such file")
    if path.is_dir():
        raise _err(path, "is a folder, not a cache file")
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling errors of every kind
        raise _err(path, f"not a cache file made by build_cache ({reason(exc)})") from None
    problem = _cache_problem(data)
    if problem:
        raise _err(path, f"not a valid impasto cache file: {problem}")
    return data


def _cache_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}, not a dict"
    missing = [
        k
        for k in ("images", "labels", "classes", "resolution", "channels", "source", "version")
        if k not in data
    ]
    if missing:
        return f"missing {', '.join(missing)}"
    if data["version"] != CACHE_VERSION:
        return f"version {data['version']!r}, expected {CACHE_VERSION}"
    images, labels = data["images"], data["labels"]
    res, ch = data["resolution"], data["channels"]
    if not isinstance(res, int) or res <= 0 or ch not in (1, 3):
        return f"bad resolution {res!r} or channels {ch!r}"
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        return "images are not a uint8 tensor"
    if images.ndim != 4 or tuple(images.shape[1:]) != (ch, res, res) or images.shape[0] == 0:
        return f"images of shape {tuple(images.shape)}, expected (N, {ch}, {res}, {res})"
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        return "labels are not an int64 tensor"
    if tuple(labels.shape) != (images.shape[0],):
        return f"{labels.numel()} labels for {images.shape[0]} images"
    classes = data["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "classes are not a list of names"
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= len(classes)):
        return f"label {int(labels.max())} but only {len(classes)} classes"
    return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def build_cache(
    dataset_or_source: GanDataset | str | os.PathLike[str],
    path: str | os.PathLike[str],
    resolution: int,
    channels: int = 3,
    *,
    labels_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Decode and prepare every image once and write them to ``path`` as one tensor file.

    ``dataset_or_source``: a dataset from this module (its resolution and channels must equal
    ``resolution``/``channels``) or a source path for :func:`open_dataset`. The file is
    ``torch.save`` of ``{'images': uint8 (N, C, R, R), 'labels': int64 (N,) (-1 = unlabelled),
    'classes': list[str], 'resolution': int, 'channels': int, 'source': str, 'version': 1}``,
    written atomically (a temporary file in the same folder, then ``os.replace``). Images that
    fail to decode are left out and reported in one warning. Returns ``path``.
    """
    resolution = check_resolution(resolution)
    channels = _check_channels(channels)
    path = Path(path)
    if isinstance(dataset_or_source, GanDataset):
        ds = dataset_or_source
        if (ds.resolution, ds.channels) != (resolution, channels):
            raise InputError(
                f"build_cache: the dataset is {ds.channels}x{ds.resolution}x{ds.resolution}, "
                f"not the {channels}x{resolution}x{resolution} requested"
            )
    else:
        ds = open_dataset(
            dataset_or_source, resolution=resolution, channels=channels, labels_path=labels_path
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise _err(path, f"cannot write the cache: folder {folder} does not exist")
    if path.is_dir():
        raise _err(path, "is a folder; give a file name for the cache")

    n = len(ds)
    images = torch.empty((n, channels, resolution, resolution), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    kept, failed = 0, []
    for i in range(n):
        x = ds._try_u8(i, report=False)
        if x is None:
            failed.append(ds._name(i))
            continue
        images[kept] = x
        labels[kept] = ds.label(i)
        kept += 1
    _report_skipped(ds.source, failed, n, "while building the cache")
    if kept == 0:
        raise _err(ds.source, f"no readable images (all {n} failed to decode)")
    data = {
        "images": images[:kept].clone() if kept < n else images,
        "labels": labels[:kept].clone() if kept < n else labels,
        "classes": list(ds.classes),
        "resolution": resolution,
        "channels": channels,
        "source": str(ds.source),
        "version": CACHE_VERSION,
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fp:
            torch.save(data, fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    log.info("wrote a cache of %d images to %s", kept, path)
    return path


# --------------------------------------------------------------------------------------------
# the entry point


def _kind(path: Path) -> str:
    """Which dataset class reads ``path``: folder, zip, npy, npz, cache or idx."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise _err(path, "no such file or folder")
    name = path.name.lower()
    suffix = path.suffix.lower()
    simple = {".zip": "zip", ".npy": "npy", ".npz": "npz", ".pt": "cache", ".pth": "cache"}
    if suffix in simple:
        return simple[suffix]
    magic = sniff_idx_magic(path)
    if magic == IDX_LABELS_MAGIC:
        raise _err(
            path,
            "is an IDX labels file (idx1); pass the images file (idx3) as the source "
            "and this one as labels_path",
        )
    looks_idx = "idx3" in name or "ubyte" in name or name.endswith((".idx", ".idx.gz"))
    if magic == IDX_IMAGES_MAGIC or looks_idx:
        return "idx"
    raise _err(
        path,
        "cannot tell what kind of dataset this is; expected a folder, a .zip, an IDX images "
        "file (*-idx3-ubyte[.gz]), a .npy/.npz array or a .pt cache from build_cache",
    )


def open_dataset(
    source: str | os.PathLike[str],
    *,
    resolution: int,
    channels: int = 3,
    hflip: bool = False,
    labels_path: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    seed: int = 0,
    verify: str = "header",
) -> GanDataset:
    """Open a training set; items are ``(float32 (channels, R, R) in [-1, 1], int64 label)``.

    ``source`` is chosen by its path:

    * a folder: :class:`ImageFolderDataset` (recursive; labels from sub-folder names);
    * ``*.zip``: :class:`ZipImageDataset`;
    * an IDX images file (``*-idx3-ubyte[.gz]``, ``*.idx``, or any file starting with magic
      2051; gzipped or not): labels from ``labels_path`` or, if that is None, from the sibling
      named with ``labels``/``idx1`` for ``images``/``idx3`` when it exists;
    * ``*.npy`` (labels from ``labels_path``, a ``.npy`` of integers) or ``*.npz`` (keys
      ``images``/``x`` and optional ``labels``/``y``): :class:`ArrayDataset`;
    * ``*.pt``: a cache from :func:`build_cache` (:class:`CachedDataset`).

    Images are centre-cropped to a square and resized to ``resolution`` (see
    :func:`impasto.data.transforms.prepare`), with ``channels`` 1 (grey) or 3 (RGB); ``hflip``
    mirrors about half the items per epoch, chosen from ``seed``. ``cache``: a ``.pt`` path;
    built from ``source`` if missing, else loaded (it must match ``source``, ``resolution`` and
    ``channels``). ``verify``: the construction-time check of folders and zips (``"header"``,
    ``"full"`` or ``"none"``; see :class:`ImageFolderDataset`).

    Raises :class:`InputError` (one line) for a bad argument, a missing or unreadable source, or
    a source with no readable images.
    """
    resolution = check_resolution(resolution)
    channels = _check_channels(channels)
    seed = _check_seed(seed)
    verify = _check_verify(verify)
    path = Path(source)
    opts = {"resolution": resolution, "channels": channels, "hflip": hflip, "seed": seed}

    if cache is not None:
        cache = Path(cache)
        if not cache.exists():
            ds = open_dataset(
                path, resolution=resolution, channels=channels, labels_path=labels_path,
                verify=verify,
            )
            build_cache(ds, cache, resolution, channels)
        return CachedDataset(cache, source=path, **opts)

    kind = _kind(path)
    if labels_path is not None and kind in ("folder", "zip", "cache"):
        raise _err(
            path,
            "labels_path applies only to IDX and numpy sources (folders and zips take labels "
            "from sub-folder names; caches store theirs)",
        )
    src = _resolved(path)
    if kind == "folder":
        ds: GanDataset = ImageFolderDataset(path, verify=verify, **opts)
    elif kind == "zip":
        ds = ZipImageDataset(path, verify=verify, **opts)
    elif kind == "cache":
        return CachedDataset(path, **opts)
    elif kind == "idx":
        images = read_idx(path, IDX_IMAGES_MAGIC)
        lp = Path(labels_path) if labels_path is not None else _idx_labels_sibling(path)
        labels = None
        if lp is not None:
            labels = read_idx(lp, IDX_LABELS_MAGIC)
            log.info("labels of %s from %s", path, lp)
        if images.shape[0] == 0:
            raise _err(path, "no images (the IDX file holds 0 images)")
        if labels is not None:
            labels = check_labels(labels, images.shape[0], lp)
        ds = ArrayDataset(images, labels, source=src, **opts)
    else:  # npy, npz
        images, labels = load_numpy(path, labels_path)
        ds = ArrayDataset(images, labels, source=src, **opts)
    ds.source = src
    return ds
