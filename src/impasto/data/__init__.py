"""Training data: for the GANs and classifiers, image folders, zips, MNIST IDX files, numpy
arrays, caches; for the style networks, random crops of a folder (:class:`CropFolder`).

Use :func:`open_dataset` (picks the reader by path) and :func:`make_loader`. Every dataset yields
``(image, label)``: ``image`` float32 ``(C, R, R)`` in ``[-1, 1]`` (GAN convention: pixel value
``v`` in 0..255 becomes ``v / 127.5 - 1``), ``C`` = ``channels`` (1 grey, 3 RGB), ``R`` =
``resolution`` (centre square, resized); ``label`` an int64 scalar, ``-1`` when unlabelled.
Datasets have ``classes``, ``num_classes`` (0 when unlabelled) and ``skipped`` (unreadable files
left out, reported in one ``logging`` warning on the ``impasto.data`` logger).
:func:`build_cache` writes the prepared images to one file that :class:`CachedDataset` serves
without decoding. Image files are decoded only through :mod:`impasto.io`.
"""

from impasto.data.crops import CropFolder
from impasto.data.datasets import (
    CACHE_VERSION,
    ArrayDataset,
    CachedDataset,
    GanDataset,
    ImageFolderDataset,
    ZipImageDataset,
    build_cache,
    check_resolution,
    open_dataset,
)
from impasto.data.loader import EpochLoader, make_loader
from impasto.data.sources import IMAGE_EXTENSIONS, read_idx
from impasto.data.transforms import flip_mask, prepare, to_grey, to_signed

__all__ = [
    "CACHE_VERSION",
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "CachedDataset",
    "CropFolder",
    "EpochLoader",
    "GanDataset",
    "ImageFolderDataset",
    "ZipImageDataset",
    "build_cache",
    "check_resolution",
    "flip_mask",
    "make_loader",
    "open_dataset",
    "prepare",
    "read_idx",
    "to_grey",
    "to_signed",
]
