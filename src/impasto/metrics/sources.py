"""The real and generated sets the metrics compare, opened from what a user names.

:func:`open_set` accepts:

* a **folder of images** (searched recursively; hidden files skipped; any format
  :func:`impasto.io.load_image` reads, as 8-bit RGB);
* an **.npz of images** (key ``images`` or ``x``; uint8 ``(N, H, W, C)``, ``(N, C, H, W)`` or
  ``(N, H, W)``, or float in ``[0, 1]``) or an ``.npy`` of the same;
* an **.npz of statistics** (key ``mu`` and ``sigma``; optionally ``n``, ``meta``, and the
  ``features`` and ``logits`` that KID, precision/recall and IS need), as written by
  :func:`save_encoding` (``impasto metrics ... --save-stats``). Files with only ``mu`` and
  ``sigma``, such as pytorch-fid's, work for FID;
* a **generator**: a GAN checkpoint file or run folder (its latest checkpoint), from which
  ``n`` images are drawn with ``seed`` (EMA weights; the classes in turn on a conditional
  model), quantised to 8 bits like saved images.

Image sets yield float32 batches ``(B, C, H, W)`` in ``[0, 1]``, one image size per batch, read
or generated one batch at a time. With ``n`` smaller than a folder or array, a seeded random
subset of ``n`` images is used.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from impasto._fileutil import atomic_open
from impasto._fileutil import reason as _reason
from impasto.errors import InputError, escape_line
from impasto.metrics.extractors import Encoding
from impasto.metrics.fid import FeatureStats

__all__ = [
    "DEFAULT_GENERATOR_SAMPLES",
    "ArraySet",
    "FolderSet",
    "GeneratorSet",
    "ImageSet",
    "StatsSet",
    "load_encoding",
    "open_set",
    "save_encoding",
]

#: Images drawn from a generator when no ``n`` is given.
DEFAULT_GENERATOR_SAMPLES = 10_000
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_STATS_FORMAT = "impasto-metrics-stats/1"


def _err(label: object, problem: str) -> InputError:
    return InputError(escape_line(f"{label}: {problem}"))


def _subset(total: int, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``min(n, total)`` items: all in order, or a sorted seeded random subset."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


class ImageSet:
    """A set of images, read or generated one batch at a time. Subclasses implement
    ``__len__``, :meth:`batches`, :meth:`image_shape` and :meth:`describe`."""

    kind = "images"
    label = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        """Float32 ``(B, C, H, W)`` in ``[0, 1]``, B <= ``batch_size``, one size per batch."""
        raise NotImplementedError

    def image_shape(self, why: str = "this metric") -> tuple[int, int, int]:
        """``(C, H, W)`` shared by every image; :class:`InputError` naming two images of
        different sizes otherwise (``why`` says who needs one size)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_all(self, batch_size: int = 64) -> Tensor:
        """Every image as one uint8 tensor ``(N, C, H, W)`` (for SWD, which needs them all)."""
        parts = [
            torch.round(b * 255.0).to(torch.uint8) for b in self.batches(batch_size)
        ]
        return torch.cat(parts)


class FolderSet(ImageSet):
    """Image files under a folder (recursively), as 8-bit RGB."""

    kind = "folder"

    def __init__(self, root: Path, n: int | None = None, seed: int = 0) -> None:
        from impasto.data.sources import IMAGE_EXTENSIONS, list_folder

        self.root = root
        self.label = str(root)
        names = list_folder(root)
        if not names:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise _err(root, f"empty folder: no image files ({exts}) in it or below it")
        self.total = len(names)
        self.files = [root / names[i] for i in _subset(len(names), n, seed)]

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> np.ndarray:
        from impasto.io import load_image

        return np.asarray(load_image(path), dtype=np.uint8)

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        for start in range(0, len(self.files), batch_size):
            arrays = [self._read(p) for p in self.files[start : start + batch_size]]
            run: list[np.ndarray] = []
            for a in arrays:  # consecutive images of one size go together
                if run and a.shape != run[0].shape:
                    yield _to_batch(run)
                    run = []
                run.append(a)
            if run:
                yield _to_batch(run)

    def image_shape(self, why: str = "this metric") -> tuple[int, int, int]:
        from impasto.io import image_size

        first = self.files[0]
        w0, h0 = image_size(first)
        for p in self.files[1:]:
            w, h = image_size(p)
            if (w, h) != (w0, h0):
                raise _err(
                    self.root,
                    f"images differ in size ({first.name} is {w0}x{h0}, {p.name} is {w}x{h}); "
                    f"{why} needs one size",
                )
        return (3, h0, w0)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.label, "n": len(self), "available": self.total}


def _to_batch(arrays: list[np.ndarray]) -> Tensor:
    x = torch.from_numpy(np.stack(arrays))  # (B, H, W, C) uint8
    return x.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


class ArraySet(ImageSet):
    """Images in a ``.npz`` (key ``images`` or ``x``) or ``.npy`` array."""

    kind = "array"

    def __init__(self, path: Path, n: int | None = None, seed: int = 0) -> None:
        from impasto.data.sources import load_numpy

        self.path = path
        self.label = str(path)
        self.array, _ = load_numpy(path)  # (N, H, W, C), checked
        self.total = int(self.array.shape[0])
        self.index = _subset(self.total, n, seed)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        for start in range(0, len(self), batch_size):
            part = np.asarray(self.array[self.index[start : start + batch_size]])
            x = torch.from_numpy(np.ascontiguousarray(part)).permute(0, 3, 1, 2)
            if part.dtype.kind == "f":
                yield x.float().contiguous()
            else:
                yield x.float().div_(255.0).contiguous()

    def image_shape(self, why: str = "this metric") -> tuple[int, int, int]:
        _, h, w, c = self.array.shape
        return (int(c), int(h), int(w))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.label, "n": len(self), "available": self.total}


class GeneratorSet(ImageSet):
    """``n`` images drawn with ``seed`` from a GAN checkpoint or run folder (EMA weights)."""

    kind = "generator"

    def __init__(self, path: Path, n: int | None = None, seed: int = 0,
                 device: str = "cpu", truncation: float | None = None) -> None:
        from impasto.gan.pipeline import GanGenerator

        self.gen = GanGenerator.from_file(path, device)
        self.path = path
        self.label = str(path)
        self.n = DEFAULT_GENERATOR_SAMPLES if n is None else int(n)
        self.seed = int(seed)
        self.truncation = truncation
        self._z = self.gen.latents(self.n, self.seed, truncation)
        self._y = (
            torch.arange(self.n) % self.gen.num_classes if self.gen.conditional else None
        )

    def __len__(self) -> int:
        return self.n

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        for start in range(0, self.n, batch_size):
            stop = start + batch_size
            y = None if self._y is None else self._y[start:stop]
            x = self.gen.generate(self._z[start:stop], y)
            yield torch.round(x * 255.0).div_(255.0)  # as if saved as 8-bit images

    def image_shape(self, why: str = "this metric") -> tuple[int, int, int]:
        return (self.gen.channels, self.gen.resolution, self.gen.resolution)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.gen.source), "n": self.n, "seed": self.seed,
                "truncation": self.truncation}


class StatsSet:
    """A set already encoded: an :class:`Encoding` read from a statistics ``.npz``."""

    kind = "stats"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self.encoding = load_encoding(path)

    def __len__(self) -> int:
        return self.encoding.n

    def describe(self) -> dict[str, Any]:
        enc = self.encoding
        return {
            "kind": self.kind, "path": self.label, "n": enc.n, "extractor": enc.fingerprint,
            "features": enc.features is not None, "logits": enc.logits is not None,
        }


AnySet = ImageSet | StatsSet


def _npz_keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _err(path, f"not a readable .npz file ({_reason(e)})") from None


def _is_run_folder(p: Path) -> bool:
    return (p / "latest.json").is_file() or any(p.glob("ckpt-*.pt"))


def open_set(
    spec: str | os.PathLike[str],
    *,
    n: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    truncation: float | None = None,
) -> AnySet:
    """Open what ``spec`` names (see the module doc). ``n``: images to draw from a generator
    (default :data:`DEFAULT_GENERATOR_SAMPLES`) and the most to use of a folder or array (a
    seeded subset); ignored for statistics. Raises :class:`InputError` for a missing path, an
    empty folder, or a file of no known kind."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"n must be a positive whole number, not {n!r}")
    p = Path(spec).expanduser()
    if not p.exists():
        raise _err(p, "no such file or folder")
    if p.is_dir():
        if _is_run_folder(p):
            return GeneratorSet(p, n, seed, device, truncation)
        return FolderSet(p, n, seed)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        keys = _npz_keys(p)
        if "mu" in keys or "sigma" in keys:
            return StatsSet(p)
        if "images" in keys or "x" in keys:
            return ArraySet(p, n, seed)
        found = ", ".join(keys) or "none"
        raise _err(p, f"an .npz with neither images ('images' or 'x') nor statistics "
                      f"('mu', 'sigma'); keys: {found}")
    if suffix == ".npy":
        return ArraySet(p, n, seed)
    if suffix in _CHECKPOINT_SUFFIXES:
        return GeneratorSet(p, n, seed, device, truncation)
    raise _err(
        p,
        "not a set of images: give a folder of images, an .npz/.npy of images, an .npz of "
        "statistics, or a GAN checkpoint (.pt) or run folder",
    )


# --------------------------------------------------------------------------------------------
# statistics files


def save_encoding(
    encoding: Encoding, path: str | os.PathLike[str], *, features: bool = True
) -> Path:
    """Write ``encoding`` to ``path`` (``.npz``, atomically): ``mu``, ``sigma``, ``n``,
    ``meta`` (JSON) and, when present and ``features`` is true, ``features`` and ``logits``
    (float32). :meth:`FeatureStats.load` reads it too."""
    path = Path(path)
    stats = encoding.stats
    meta = {**stats.meta, "format": _STATS_FORMAT}
    arrays: dict[str, Any] = {
        "mu": stats.mu, "sigma": stats.sigma, "n": np.int64(stats.n),
        "meta": np.str_(json.dumps(meta, sort_keys=True)),
    }
    if features and encoding.features is not None:
        arrays["features"] = np.asarray(encoding.features, dtype=np.float32)
    if features and encoding.logits is not None:
        arrays["logits"] = np.asarray(encoding.logits, dtype=np.float32)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _array(z: Any, key: str, path: Path) -> np.ndarray | None:
    if key not in z.files:
        return None
    try:
        return np.asarray(z[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _err(path, f"cannot read {key!r} ({_reason(e)})") from None


def load_encoding(path: str | os.PathLike[str]) -> Encoding:
    """Read a statistics ``.npz`` (see :func:`save_encoding`; ``n``, ``meta``, ``features`` and
    ``logits`` are optional, so pytorch-fid's ``mu``/``sigma`` files load too, with ``n = 0``
    meaning unknown and no extractor recorded)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _err(path, "no such file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _err(path, f"not a readable .npz file ({_reason(e)})") from None
    if isinstance(z, np.ndarray):
        raise _err(path, "a single array, not an .npz archive of statistics")
    with z:
        mu, sigma = _array(z, "mu", path), _array(z, "sigma", path)
        if mu is None or sigma is None:
            raise _err(path, "a statistics file needs both 'mu' and 'sigma'")
        n_arr = _array(z, "n", path)
        meta_arr = _array(z, "meta", path)
        feats = _array(z, "features", path)
        logits = _array(z, "logits", path)
    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise _err(path, "'mu' and 'sigma' must be numeric")
    n = 0
    if n_arr is not None:
        if n_arr.shape != () or n_arr.dtype.kind not in "iu":
            raise _err(path, "'n' must be an integer")
        n = int(n_arr)
    meta: dict[str, Any] = {}
    if meta_arr is not None:
        try:
            loaded = json.loads(str(meta_arr))
        except json.JSONDecodeError:
            raise _err(path, "'meta' is not valid JSON") from None
        meta = loaded if isinstance(loaded, dict) else {}
    try:
        stats = FeatureStats(mu, sigma, n, meta)
    except InputError as e:
        raise _err(path, str(e)) from None
    for name, arr in (("features", feats), ("logits", logits)):
        if arr is None:
            continue
        if arr.ndim != 2 or arr.dtype.kind != "f" or (n and arr.shape[0] != n):
            raise _err(path, f"{name!r} must be a float (n, D) array with n = {n}, "
                             f"got {arr.dtype} {arr.shape}")
    if feats is not None and feats.shape[1] != stats.dim:
        raise _err(path, f"'features' have {feats.shape[1]} dimensions but 'mu' has {stats.dim}")
    if n == 0 and feats is not None:
        stats.n = int(feats.shape[0])
    return Encoding(stats, feats, logits)
