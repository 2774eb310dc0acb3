"""Cache files: :func:`build_cache` writes a dataset's prepared images to one tensor file that
:class:`CachedDataset` serves memory-mapped, without decoding.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from impasto._fileutil import _umask, load_tensors, reason
from impasto.data.base import (
    GanDataset,
    _check_channels,
    _report_skipped,
    _resolved,
    check_resolution,
)
from impasto.errors import InputError
from impasto.errors import escape_line as _one_line
from impasto.errors import input_error as _err

__all__ = ["CACHE_VERSION", "CachedDataset", "build_cache"]

log = logging.getLogger("impasto.data")

#: ``version`` written into cache files by :func:`build_cache`.
CACHE_VERSION = 1


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


def _load_cache(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise _err(path, "no such file")
    if path.is_dir():
        raise _err(path, "is a folder, not a cache file")
    try:
        try:
            data = load_tensors(path, map_location="cpu", mmap=True)
        except RuntimeError:
            data = load_tensors(path, map_location="cpu")
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
    from impasto.data.datasets import open_dataset  # here: datasets imports this module

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
