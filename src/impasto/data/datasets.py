"""Datasets for GAN training: image folders, zips, MNIST IDX files, numpy arrays, cache files.

Every dataset yields ``(image, label)``: ``image`` float32 ``(C, R, R)`` in ``[-1, 1]`` (the GAN
convention: 0 -> -1, 255 -> 1), ``label`` an int64 scalar tensor (``-1`` when unlabelled). All
share the attributes ``resolution``, ``channels``, ``classes`` (list of names), ``num_classes``
(0 when unlabelled), ``skipped`` (names of unreadable files left out), ``source`` (a string).

:func:`open_dataset` picks the dataset by the path. The datasets live in one module per kind
of source, re-exported here: :mod:`~impasto.data.base` (:class:`GanDataset`),
:mod:`~impasto.data.files` (folders, zips), :mod:`~impasto.data.arrays` (numpy, IDX) and
:mod:`~impasto.data.cache` (cache files).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from impasto.data.arrays import ArrayDataset
from impasto.data.base import (
    GanDataset,
    _check_channels,
    _check_seed,
    _check_verify,
    _resolved,
    check_resolution,
)
from impasto.data.cache import CACHE_VERSION, CachedDataset, build_cache
from impasto.data.files import ImageFolderDataset, ZipImageDataset
from impasto.data.sources import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    check_labels,
    load_numpy,
    read_idx,
    sniff_idx_magic,
)
from impasto.errors import input_error as _err

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


def _idx_labels_sibling(path: Path) -> Path | None:
    """``train-images-idx3-ubyte.gz`` -> ``train-labels-idx1-ubyte.gz`` if that file exists."""
    name = path.name.replace("idx3", "idx1").replace("images", "labels")
    if name == path.name:
        return None
    candidate = path.with_name(name)
    return candidate if candidate.is_file() else None


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
