"""Per-style model files: :func:`save_fast_style` writes one, :func:`load_fast_style` reads it
(and the files of the release before the common format), :func:`export_model` makes one from a
training checkpoint or run folder.

A model file is an impasto model file (:func:`impasto.train.save_model`) of kind
``"fast-style/transformer"``: ``config`` is the :class:`~impasto.nets.transformer.TransformerConfig`,
``state_dict`` the network's float32 weights, ``extra["metadata"]`` plain data (style name and
size, content folder, steps, whether training was stopped, the training settings, the impasto
version) and ``extra["thumbnail"]`` a uint8 ``(3, h, w)`` picture of the style, at most 64 px
(may be absent).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from impasto import __version__
from impasto.errors import InputError, escape_line
from impasto.io import load_image, resize
from impasto.nets.transformer import TransformerConfig, TransformerNet
from impasto.train import config_from_dict, resolve_checkpoint, restore
from impasto.train.modelfile import WrongKindError, load_model, save_model

__all__ = [
    "CHECKPOINT_PREFIX",
    "LEGACY_MODEL_KIND",
    "LEGACY_TRAIN_KIND",
    "MODEL_KIND",
    "THUMBNAIL_SIZE",
    "export_model",
    "load_fast_style",
    "make_thumbnail",
    "save_fast_style",
]

log = logging.getLogger(__name__)

#: ``kind`` of a model file and of a training checkpoint.
MODEL_KIND = "fast-style/transformer"
#: The kinds the release before the common format wrote: model files and checkpoints.
LEGACY_MODEL_KIND = "fast-style"
LEGACY_TRAIN_KIND = "fast-style-train"
#: Checkpoints are ``<run>/ckpt-<step>.pt``.
CHECKPOINT_PREFIX = "ckpt"
THUMBNAIL_SIZE = 64
_TOP_LEVEL = ("kind", "format_version", "net")  # in the file's header, not in its metadata


def make_thumbnail(image: Any) -> Tensor:
    """uint8 ``(3, h, w)`` of ``image`` (anything :func:`impasto.io.load_image` reads), longest
    side at most :data:`THUMBNAIL_SIZE`."""
    img = load_image(image)
    if max(img.size) > THUMBNAIL_SIZE:
        img = resize(img, longest=THUMBNAIL_SIZE)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _is_thumbnail(t: Any) -> bool:
    return isinstance(t, Tensor) and t.dtype == torch.uint8 and t.ndim == 3


def save_fast_style(
    net: TransformerNet,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    thumbnail: Any = None,
) -> Path:
    """Write a model file for ``net`` atomically (see the module doc; ``.safetensors`` by the
    name, else ``.pt``); returns its path. ``metadata`` must be JSON data (other values are
    stored as their ``str``); ``thumbnail``: any image :func:`impasto.io.load_image` reads,
    or a uint8 ``(3, h, w)`` tensor, or ``metadata["thumbnail"]``."""
    if not isinstance(net, TransformerNet):
        raise TypeError(f"save_fast_style expects a TransformerNet, not {type(net).__name__}")
    meta = dict(metadata or {})
    thumb = meta.pop("thumbnail", None) if thumbnail is None else thumbnail
    meta.pop("thumbnail", None)
    for key in _TOP_LEVEL:
        meta.pop(key, None)
    meta["impasto"] = __version__
    try:
        meta = json.loads(json.dumps(meta, ensure_ascii=False, allow_nan=True, default=str))
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON data: {e}") from None
    extra: dict[str, Any] = {"metadata": meta}
    if thumb is not None:
        small = _is_thumbnail(thumb) and max(thumb.shape[-2:]) <= THUMBNAIL_SIZE
        extra["thumbnail"] = thumb.detach().cpu() if small else make_thumbnail(thumb)
    state = {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach()
             for k, v in net.state_dict().items()}
    return save_model(path, kind=MODEL_KIND, config=net.config.to_dict(), state_dict=state,
                      extra=extra)


def _read(p: Path, *, checkpoints: bool) -> tuple[TransformerNet, Any]:
    """The network of a fast-style model file (or, with ``checkpoints``, also of a training
    checkpoint) and the :class:`~impasto.train.ModelFile` it came from."""
    try:
        m = load_model(p, kind="fast-style")
    except WrongKindError as e:
        what = "checkpoint" if checkpoints else "model"
        raise InputError(escape_line(
            f"{p}: is a '{e.legacy or e.kind}' file, not a fast-style {what}"
        )) from None
    if m.training_checkpoint and not checkpoints:
        raise InputError(escape_line(
            f"{p}: is a '{m.legacy}' file, not a fast-style model (a training checkpoint; "
            "training writes the model file with -o at its end, export_model makes one)"
        ))
    net = TransformerNet(config_from_dict(TransformerConfig, m.config, source=str(p)))
    restore({"path": str(p), "models": {"net": m.state_dict}}, {"net": net}, rng=False)
    return net.eval(), m


def load_fast_style(path: str | os.PathLike[str]) -> tuple[TransformerNet, dict[str, Any],
                                                            Tensor | None]:
    """Read a model file: ``(net on CPU in eval mode, metadata, thumbnail uint8 or None)``;
    ``metadata`` also holds the file's ``kind``, ``format_version`` and ``net`` (the
    architecture). Reads the per-style model files of the release before the common format.

    Raises :class:`InputError` with one line naming the file for a missing, truncated or
    corrupt file, a file that is not a fast-style model (another kind, or a training
    checkpoint: see :func:`export_model`), a newer format or weights that do not fit."""
    p = Path(path)
    net, m = _read(p, checkpoints=False)
    saved = m.extra.get("metadata")
    if not isinstance(saved, dict):
        raise InputError(escape_line(f"{p}: the fast-style model's metadata is not an object"))
    meta = {k: v for k, v in saved.items() if k != "impasto"}
    meta.update(kind=m.kind, format_version=m.format_version, net=m.config)
    if "impasto" in saved:
        meta["impasto"] = saved["impasto"]
    thumb = m.extra.get("thumbnail")
    return net, meta, thumb if _is_thumbnail(thumb) else None


def export_model(
    run_or_checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    thumbnail: Any = None,
) -> Path:
    """Write the model file of a training run: the network of ``run_or_checkpoint`` (a
    checkpoint, or a run folder: its latest checkpoint; also one of the release before the
    common format, or a model file) to ``out``, atomically. The metadata names the style and
    the steps done; the thumbnail comes from ``thumbnail``, else from the run's style image if
    it is still there. Raises :class:`InputError` for a file that holds no per-style network."""
    src = resolve_checkpoint(run_or_checkpoint, prefix=CHECKPOINT_PREFIX)
    net, m = _read(src, checkpoints=True)
    meta = dict(m.extra.get("metadata") or {})
    training = meta.get("training")
    training = training if isinstance(training, Mapping) else {}
    if isinstance(m.extra.get("step"), int):
        meta.setdefault("steps", m.extra["step"])
    meta.setdefault("content", training.get("content"))
    if thumbnail is None:
        thumbnail = m.extra.get("thumbnail")
    style = training.get("style")
    if thumbnail is None and isinstance(style, str) and style:
        try:
            thumbnail = load_image(style)
        except InputError as e:
            log.info("no thumbnail in %s: %s", out, e)
    return save_fast_style(net, out, meta, thumbnail=thumbnail)
