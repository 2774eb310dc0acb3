"""Reading dataset sources: image folders and zips (listing), MNIST IDX files, numpy arrays.

Nothing here resizes; every reader hands out 8-bit arrays ``(H, W, C)`` or whole stacks
``(N, H, W, C)`` with ``C`` in 1, 3. Bad files raise :class:`~impasto.errors.InputError` with one
line naming them.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from impasto.errors import InputError
from impasto._fileutil import reason as _reason
from impasto.errors import input_error as _err

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IMAGE_EXTENSIONS",
    "as_nhwc",
    "check_labels",
    "image_u8",
    "is_image_name",
    "list_folder",
    "list_zip",
    "load_numpy",
    "read_idx",
    "sniff_idx_magic",
]

#: File name endings (compared in lower case) taken as images in folders and zips.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, columns)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
_IDX_KIND = {IDX_IMAGES_MAGIC: "images (idx3)", IDX_LABELS_MAGIC: "labels (idx1)"}








def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with an image extension (any case)."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------------------------
# folders and zips


def list_folder(root: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``root``, recursively, sorted.

    Hidden files and folders (names starting with ``.``) are ignored; symbolic links are
    followed, each real folder visited once.
    """
    found: list[str] = []
    seen: set[str] = set()

    def walk(folder: Path, rel: str) -> None:
        try:
            real = os.path.realpath(folder)
            if real in seen:
                return
            seen.add(real)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise _err(root, f"cannot list the folder: {_reason(exc)}") from None
            return  # an unreadable sub-folder is left out, like any unreadable entry
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = f"{rel}{entry.name}"
            try:
                if entry.is_dir():
                    walk(Path(entry.path), name + "/")
                elif is_image_name(entry.name):
                    found.append(name)
            except OSError:
                continue

    walk(root, "")
    return sorted(found)


def readable_images(root: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """Split ``names`` (paths relative to ``root``) into the images whose header reads with a
    non-empty size and the rest: ``(good, bad)``, each in the given order."""
    from impasto.io import image_size

    good, bad = [], []
    for name in names:
        try:
            w, h = image_size(root / name)
        except InputError:
            bad.append(name)
            continue
        (good if min(w, h) > 0 else bad).append(name)
    return good, bad


def list_zip(path: Path) -> list[str]:
    """Image member names of a zip archive, sorted (folders, hidden and ``__MACOSX`` skipped)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise _err(path, f"not a readable zip archive ({_reason(exc)})") from None
    names = []
    for info in infos:
        name = info.filename
        if info.is_dir() or name.startswith("__MACOSX/") or "/." in f"/{name}":
            continue
        if is_image_name(name):
            names.append(name)
    return sorted(names)


# --------------------------------------------------------------------------------------------
# IDX (MNIST format)


def _read_bytes(path: Path) -> bytes:
    """The whole file, gunzipped when it starts with the gzip magic bytes."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(2)
            fp.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fp) as gz:
                    return gz.read()
            return fp.read()
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except IsADirectoryError:
        raise _err(path, "is a folder, not an IDX file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _err(path, f"truncated or corrupt gzip data ({_reason(exc)})") from None
    except OSError as exc:
        raise _err(path, f"cannot read: {_reason(exc)}") from None


def sniff_idx_magic(path: Path) -> int | None:
    """The big-endian magic number at the start of a (possibly gzipped) file; None if unreadable."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(2)
            fp.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=fp) as gz:
                    data = gz.read(4)
            else:
                data = fp.read(4)
    except (OSError, EOFError, zlib.error):
        return None
    return struct.unpack(">I", data)[0] if len(data) == 4 else None


def read_idx(path: str | os.PathLike[str], expect: int = IDX_IMAGES_MAGIC) -> np.ndarray:
    """Read an IDX file (``.gz`` or not): uint8 ``(N, rows, cols)`` for images, ``(N,)`` for labels.

    The header is a big-endian magic number (2051 for images, 2049 for labels; ``expect``) and
    one 32-bit size per dimension; the data are unsigned bytes. A wrong magic number, a short
    header or data, or bytes after the data raise :class:`InputError` naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    kind = _IDX_KIND[expect]
    if len(data) < 4:
        raise _err(path, f"truncated IDX file ({len(data)} bytes, no complete header)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expect:
        other = f", an IDX {_IDX_KIND[magic]} file" if magic in _IDX_KIND else ""
        raise _err(
            path,
            f"not an IDX {kind} file: magic number {magic} (0x{magic:08x}){other}; "
            f"expected {expect} (0x{expect:08x})",
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _err(path, f"truncated IDX file: the header needs {header} bytes, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)
    have = len(data) - header
    if have < count:
        shape = "x".join(map(str, dims))
        raise _err(path, f"truncated IDX file: {shape} needs {count} data bytes, found {have}")
    if have > count:
        raise _err(path, f"not a valid IDX file: {have - count} unexpected bytes after the data")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(dims)


# --------------------------------------------------------------------------------------------
# numpy arrays


def as_nhwc(arr: np.ndarray, label: object) -> np.ndarray:
    """View an image stack as ``(N, H, W, C)``, C in 1, 3, checking dtype and range.

    Accepted: ``(N, H, W)`` (grey), ``(N, H, W, C)`` and ``(N, C, H, W)`` with ``C`` in 1, 3 (a
    shape that fits both, such as ``(N, 3, 8, 3)``, is read as ``(N, H, W, C)``); dtype uint8,
    another integer type with values in 0..255, or float with values in ``[0, 1]`` (converted per
    image as ``round(255 x)``). No copy is made; the range check reads the array once.
    """
    if not isinstance(arr, np.ndarray):
        raise _err(label, f"expected a numpy array, got {type(arr).__name__}")
    if arr.ndim == 3:
        arr = arr[..., None]
    elif arr.ndim == 4:
        if arr.shape[3] in (1, 3):
            pass
        elif arr.shape[1] in (1, 3):
            arr = arr.transpose(0, 2, 3, 1)
        else:
            raise _err(
                label,
                f"image array of shape {arr.shape}: expected 1 or 3 channels, "
                "as (N, H, W, C) or (N, C, H, W)",
            )
    else:
        hint = " (flat rows? reshape to (N, H, W) first)" if arr.ndim == 2 else ""
        raise _err(
            label,
            f"image array of shape {arr.shape}: expected (N, H, W), (N, H, W, C) or (N, C, H, W)"
            + hint,
        )
    n, h, w, _ = arr.shape
    if n == 0:
        raise _err(label, "no images (the array is empty)")
    if h == 0 or w == 0:
        raise _err(label, f"images have no pixels ({h}x{w})")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind in "iu":
        lo, hi = _range(arr)
        if lo < 0 or hi > 255:
            raise _err(label, f"{arr.dtype} pixel values span {lo}..{hi}; expected 0..255")
        return arr
    if arr.dtype.kind == "f":
        lo, hi = _range(arr)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise _err(
                label,
                f"float pixel values span {lo:g}..{hi:g}; expected [0, 1] (or use uint8 0..255)",
            )
        return arr
    raise _err(label, f"unsupported image dtype {arr.dtype}; expected uint8 or float in [0, 1]")


def _range(arr: np.ndarray, block: int = 256) -> tuple:
    """(min, max) of a possibly memory-mapped array, read in blocks; NaN propagates."""
    lo = hi = None
    for i in range(0, arr.shape[0], block):
        part = np.asarray(arr[i : i + block])
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            return (float("nan"), float("nan"))
        plo, phi = part.min(), part.max()
        lo = plo if lo is None else min(lo, plo)
        hi = phi if hi is None else max(hi, phi)
    return (lo.item(), hi.item())


def image_u8(arr: np.ndarray) -> np.ndarray:
    """One image ``(H, W, C)`` of an :func:`as_nhwc` stack as uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        return np.rint(np.asarray(arr, dtype=np.float64) * 255.0).astype(np.uint8)
    return np.asarray(arr).astype(np.uint8)


def check_labels(labels: object, n: int, label: object) -> np.ndarray:
    """Labels as int64 ``(n,)``, each >= 0; :class:`InputError` for a bad shape, type or count."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _err(label, f"labels must be one number per image, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise _err(label, f"labels must be integers, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise _err(label, f"{arr.shape[0]} labels for {n} images")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise _err(label, f"labels must be >= 0, found {int(out.min())}")
    return out


def _np_load(path: Path, **kw):
    try:
        return np.load(path, allow_pickle=False, **kw)
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except IsADirectoryError:
        raise _err(path, "is a folder, not a numpy file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _err(path, f"not a readable numpy file ({_reason(exc)})") from None


def _close(obj: object) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        close()


def _npz_get(z, keys: tuple[str, ...], path: Path, what: str):
    for key in keys:
        if key in z.files:
            try:
                return z[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise _err(path, f"cannot read {what} array {key!r} ({_reason(exc)})") from None
    return None


def load_numpy(
    path: str | os.PathLike[str], labels_path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images ``(N, H, W, C)`` and labels int64 ``(N,)`` or None from a ``.npy`` or ``.npz`` file.

    A ``.npy`` holds the images (memory-mapped, not read into memory); its labels may come from
    ``labels_path`` (a ``.npy`` of integers). A ``.npz`` holds the images under key ``images``
    (or ``x``) and optional labels under ``labels`` (or ``y``); ``labels_path``, if given, is
    used instead. Pickled (object) arrays are refused. See :func:`as_nhwc` for accepted layouts.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with _np_load(path) as z:
            images = _npz_get(z, ("images", "x"), path, "image")
            if images is None:
                found = ", ".join(repr(k) for k in z.files) or "none"
                raise _err(path, f"no 'images' or 'x' array in the .npz (keys: {found})")
            labels = _npz_get(z, ("labels", "y"), path, "label")
    else:
        images = _np_load(path, mmap_mode="r")
        labels = None
        if not isinstance(images, np.ndarray):
            _close(images)
            raise _err(path, "is a .npz archive, not a .npy array; name it .npz")
    images = as_nhwc(images, path)
    if labels_path is not None:
        lp = Path(labels_path)
        labels = _np_load(lp)
        if not isinstance(labels, np.ndarray):
            _close(labels)
            raise _err(lp, "expected a .npy array of labels, not a .npz")
        return images, check_labels(labels, images.shape[0], lp)
    if labels is not None:
        labels = check_labels(labels, images.shape[0], path)
    return images, labels
