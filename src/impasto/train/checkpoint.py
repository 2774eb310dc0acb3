"""Checkpoints: one file per save holding only state dicts and plain data, written atomically.

A checkpoint is what :func:`torch.save` writes for a dict of::

    format_version  int (FORMAT_VERSION)          kind         str, e.g. "gan/dcgan"
    config          dict of JSON data              step         int    images_seen   int
    models          {name: module.state_dict()}    optimizers   {name: optimizer.state_dict()}
    rng             capture_rng_state() or None    extra        dict of plain data
    torch_version   str                            digest       {"sha256": hex} (from v0.2)

Everything in it is a tensor, str, int, float, bool, None, list, tuple or dict, so it loads with
``torch.load(..., weights_only=True)``: no pickled Python objects are ever executed on loading
(:func:`save_checkpoint` refuses anything else, numpy values included, with a ``TypeError``).

Resuming::

    ckpt = load_checkpoint(resolve_checkpoint(args.resume), kind="gan/dcgan")
    restore(ckpt, {"G": G, "D": D}, {"G": opt_g, "D": opt_d},
            generators={"loader": loader.generator})
    step, images_seen = ckpt["step"], ckpt["images_seen"]

Problems with the file (missing, a folder, truncated or corrupt, not an impasto checkpoint, a
newer format, another kind, weights that do not fit the model) raise
:class:`~impasto.errors.InputError` with one line naming the file.

Integrity: torch's zip reader does not verify the archive's CRCs, so a damaged file can load
with wrong numbers. :func:`save_checkpoint` stores a SHA-256 of every tensor's bytes
(:func:`tensor_digest`) and :func:`load_checkpoint` recomputes it; a mismatch is refused.
Loading also refuses a checkpoint whose weights, buffers or optimiser states hold NaN or
infinity (older files without a digest get this check too).

The RNG state a checkpoint stores comes from :mod:`impasto.train.rng`; run folders of numbered
checkpoints and ``--resume`` resolution are :mod:`impasto.train.manager`. Their public names are
importable from here too.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from impasto._fileutil import (
    atomic_open,
    load_tensors,
    one_line,
    reason,
    refused_pickle,
)
from impasto.errors import InputError
from impasto.train.config import config_to_dict
from impasto.train.distributed import unwrap_model
from impasto.train.ema import EMA
from impasto.train.rng import GeneratorDeviceError, capture_rng_state, restore_rng_state

__all__ = [
    "FORMAT_VERSION",
    "CheckpointManager",
    "GeneratorDeviceError",
    "capture_rng_state",
    "load_checkpoint",
    "resolve_checkpoint",
    "restore",
    "restore_rng_state",
    "remove_stale_temporaries",
    "save_checkpoint",
    "tensor_digest",
]

log = logging.getLogger(__name__)

#: Version of the checkpoint layout written by :func:`save_checkpoint`. Files with a higher
#: number (written by a newer impasto) are refused with a clear message.
FORMAT_VERSION = 1

_REQUIRED = {"kind": str, "step": int, "images_seen": int, "models": dict, "optimizers": dict}
_PLAIN_TYPES = (str, int, float, bool, type(None))


# --------------------------------------------------------------------------------------------
# integrity


def _tensors(obj: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, with its key path, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{path}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{path}/{i}")


def tensor_digest(obj: Any) -> str:
    """SHA-256 (hex) of every tensor in ``obj`` (nested dicts/lists): key path, dtype, shape
    and bytes. Equal for a payload before saving and after loading."""
    h = hashlib.sha256()
    for path, t in _tensors(obj):
        t = t.detach().cpu().contiguous()
        h.update(f"{path}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _first_non_finite(obj: Any) -> str | None:
    """The key path of the first floating tensor in ``obj`` holding NaN or inf, else None."""
    for path, t in _tensors(obj):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            return path.lstrip("/")
    return None


# --------------------------------------------------------------------------------------------
# plain-data check


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` is made only of data ``weights_only`` loading accepts."""
    if isinstance(obj, torch.Tensor):
        if type(obj) is not torch.Tensor and not isinstance(obj, nn.Parameter):
            raise TypeError(
                f"{where} is a {type(obj).__name__} (a tensor subclass); store a plain tensor"
            )
        return
    t = type(obj)
    if t in _PLAIN_TYPES or isinstance(obj, (torch.dtype, torch.Size)):
        return
    if t in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):  # dict and OrderedDict (state dicts)
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise TypeError(
                    f"{where} has a key {k!r} of type {type(k).__name__}; use str or int keys"
                )
            _check_plain(v, f"{where}[{k!r}]")
        return
    hint = (
        " (convert it with torch.from_numpy() or .tolist())"
        if t.__module__.startswith("numpy")
        else ""
    )
    raise TypeError(
        f"{where} is a {t.__module__}.{t.__qualname__}; a checkpoint holds only tensors, str, int, "
        f"float, bool, None, lists, tuples and dicts{hint}"
    )


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# save / load


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: Mapping[str, Any] | Any,
    step: int,
    images_seen: int,
    models: Mapping[str, Any],
    optimizers: Mapping[str, torch.optim.Optimizer],
    extra: Mapping[str, Any] | None = None,
    rng: bool = True,
    generators: Mapping[str, torch.Generator] | None = None,
) -> Path:
    """Write one checkpoint file (layout in the module doc) atomically; returns its path.

    ``config`` is a dict of JSON data or a config dataclass (stored via
    :func:`~impasto.train.config.config_to_dict`). ``models`` maps names to modules (or any
    object with ``state_dict()``, e.g. :class:`~impasto.train.ema.EMA`); DDP and
    ``torch.compile`` wrappers are unwrapped, so the keys have no ``module.`` prefix. ``rng``
    stores :func:`capture_rng_state` (with the named ``generators``).

    The file is written to a temporary file in the same folder, flushed, ``fsync``-ed and
    renamed over ``path``: on any failure the temporary file is removed and an existing
    checkpoint at ``path`` is left as it was. Raises ``TypeError`` for data that is not plain
    (see the module doc) and :class:`InputError` when the file cannot be written.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string such as 'gan/dcgan', not {kind!r}")
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = config_to_dict(config)
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": dict(config or {}),
        "step": _int("step", step),
        "images_seen": _int("images_seen", images_seen),
        "models": {str(n): unwrap_model(m).state_dict() for n, m in models.items()},
        "optimizers": {str(n): o.state_dict() for n, o in optimizers.items()},
        "rng": capture_rng_state(generators) if rng else None,
        "extra": dict(extra or {}),
        "torch_version": str(torch.__version__),
    }
    for key in ("config", "models", "optimizers", "rng", "extra"):
        _check_plain(payload[key], key)
    payload["digest"] = {"sha256": tensor_digest(
        {k: payload[k] for k in ("models", "optimizers", "rng", "extra")}
    )}

    target = Path(path)
    try:
        with atomic_open(target, "wb") as f:
            torch.save(payload, f)
    except OSError as e:
        raise InputError(f"{target}: cannot write the checkpoint: {reason(e)}") from None
    return target


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Returns its dict (``extra``, ``config`` default to ``{}`` and ``rng`` to None when absent)
    plus ``"path"``: the file name, used in later messages. With ``kind``, a checkpoint of
    another kind is refused. Raises :class:`InputError` (one line naming the file) for a
    missing file, a folder, a truncated or corrupt file, a file that is not an impasto
    checkpoint, one written in a newer format and one of another kind.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(
            f"{p}: is a folder, not a checkpoint file "
            "(resolve a run folder with CheckpointManager.resolve)"
        )
    if not p.exists():
        raise InputError(f"{p}: checkpoint not found")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(f"{p}: cannot read the checkpoint: {reason(e)}") from None
    if not head:
        raise InputError(f"{p}: empty file, not a checkpoint")
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise InputError(f"{p}: not a checkpoint file (not written by torch.save, or corrupt)")
    ckpt = read_torch_file(p, "checkpoint", map_location)

    if isinstance(ckpt, dict) and ckpt.get("format") == "impasto-model":  # train.modelfile
        raise InputError(f"{p} is a '{ckpt.get('kind')}' model file, not a training checkpoint")
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        bare = (
            isinstance(ckpt, dict)
            and ckpt
            and all(isinstance(v, torch.Tensor) for v in ckpt.values())
        )
        hint = "; it looks like a bare state_dict" if bare else ""
        raise InputError(f"{p}: not an impasto checkpoint (no format_version{hint})")
    version = ckpt["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{p}: not an impasto checkpoint (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{p}: checkpoint format {version} is newer than this impasto reads "
            f"(up to {FORMAT_VERSION}); upgrade impasto"
        )
    for key, typ in _REQUIRED.items():
        value = ckpt.get(key)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise InputError(f"{p}: incomplete impasto checkpoint (no valid '{key}')")
    _verify(ckpt, p)
    if kind is not None and ckpt["kind"] != kind:
        raise InputError(f"{p} is a '{ckpt['kind']}' checkpoint, not '{kind}'")
    ckpt.setdefault("config", {})
    ckpt.setdefault("extra", {})
    ckpt.setdefault("rng", None)
    if ckpt["extra"] is None:
        ckpt["extra"] = {}
    ckpt["path"] = str(p)
    return ckpt


def _verify(ckpt: Mapping[str, Any], p: Path) -> None:
    """Refuse a checkpoint whose tensors do not match its digest or are not finite."""
    digest = ckpt.get("digest")
    if isinstance(digest, Mapping) and "sha256" in digest:
        parts = {k: ckpt.get(k) for k in ("models", "optimizers", "rng", "extra")}
        if tensor_digest(parts) != digest["sha256"]:
            raise InputError(
                f"{p}: damaged checkpoint (its contents do not match the checksum written with "
                "it); use an earlier checkpoint"
            )
    bad = _first_non_finite({"models": ckpt.get("models"), "optimizers": ckpt.get("optimizers")})
    if bad is not None:
        raise InputError(
            f"{p}: the checkpoint holds NaN or infinite values ({bad}); the training had "
            "diverged when it was written: use an earlier checkpoint"
        )


def read_torch_file(p: Path, what: str, map_location: Any = "cpu") -> Any:
    """What ``torch.save`` wrote to ``p``, loaded with ``weights_only=True``; every failure is
    one :class:`InputError` line naming the file and ``what`` it should be ("checkpoint",
    "model file"): unreadable, truncated or corrupt, or holding pickled objects."""
    try:
        return load_tensors(p, map_location=map_location)
    except MemoryError:
        raise
    except OSError as e:
        # The file opened fine before: a seek past its end (EINVAL) means it is cut short.
        if e.errno == errno.EIO:
            raise InputError(f"{p}: cannot read the {what}: {reason(e)}") from None
        raise InputError(f"{p}: truncated or corrupt {what} ({reason(e)})") from None
    except pickle.UnpicklingError as e:
        why = refused_pickle(e)
        if why:
            raise InputError(f"{p}: not an impasto {what}: {why}") from None
        raise InputError(f"{p}: truncated or corrupt {what} "
                         f"(UnpicklingError: {reason(e)})") from None
    except Exception as e:  # noqa: BLE001  (RuntimeError, EOFError, zipfile, struct, ...)
        raise InputError(f"{p}: truncated or corrupt {what} ({_short(e)})") from None


def _short(exc: BaseException) -> str:
    """The first sentence of an exception's message, for one-line errors."""
    if isinstance(exc, EOFError):
        return "unexpected end of file"
    text = reason(exc).split(". ")[0].rstrip(".")
    return one_line(f"{type(exc).__name__}: {text}", 150)


# --------------------------------------------------------------------------------------------
# restore


def _fit_problems(own: Mapping[str, Any], saved: Mapping[str, Any], strict: bool) -> list[str]:
    """Why ``saved`` does not fit a module whose state dict is ``own``, first problem first."""
    problems = []
    for key, mine in own.items():
        if key not in saved:
            if strict:
                problems.append(f"key '{key}' is missing from the checkpoint")
            continue
        theirs = saved[key]
        if (
            isinstance(mine, torch.Tensor)
            and isinstance(theirs, torch.Tensor)
            and mine.shape != theirs.shape
        ):
            problems.append(
                f"key '{key}' has shape {tuple(theirs.shape)} in the checkpoint "
                f"but {tuple(mine.shape)} in the model"
            )
    if strict:
        problems += [f"unexpected key '{k}' in the checkpoint" for k in saved if k not in own]
    return problems


def _mismatch(src: str, what: str, name: str, problems: list[str]) -> InputError:
    more = len(problems) - 1
    tail = f" (and {more} more mismatch{'es' if more > 1 else ''})" if more > 0 else ""
    return InputError(
        one_line(
            f"{src}: {what} '{name}' does not fit the checkpoint (architecture mismatch?): "
            f"{problems[0]}{tail}"
        )
    )


def restore(
    ckpt: Mapping[str, Any],
    models: Mapping[str, Any],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    *,
    strict: bool = True,
    rng: bool = True,
    generators: Mapping[str, torch.Generator] | None = None,
) -> None:
    """Load the saved states into ``models`` and ``optimizers`` (and the RNGs, when ``rng``).

    Every model is checked before any is changed: a state dict that does not fit (missing or
    unexpected keys, a different shape) raises :class:`InputError` naming the model and the
    first mismatching key. With ``strict=False``, missing/unexpected keys and names absent from
    the checkpoint are skipped (shapes must still match). ``generators`` are restored by name
    as saved with ``save_checkpoint(generators=...)``. Models in the checkpoint that are not
    asked for are ignored (e.g. loading only the generator of a GAN).
    """
    src = str(ckpt.get("path", "checkpoint"))
    saved_models = ckpt.get("models") or {}
    saved_opts = ckpt.get("optimizers") or {}

    plan = []
    for name, model in models.items():
        if name not in saved_models:
            if strict:
                have = ", ".join(repr(n) for n in saved_models) or "none"
                raise InputError(f"{src}: no model '{name}' in the checkpoint (it has: {have})")
            log.warning("%s: no model '%s' in the checkpoint; left as it is", src, name)
            continue
        target = unwrap_model(model)
        state = saved_models[name]
        own = None
        if isinstance(target, nn.Module):
            own, theirs = target.state_dict(), state
        elif (
            isinstance(target, EMA)
            and isinstance(state, Mapping)
            and isinstance(state.get("model"), Mapping)
        ):
            own, theirs = target.model.state_dict(), state["model"]
        elif isinstance(target, EMA):
            raise _mismatch(src, "model", name, ["the saved state is not an EMA state"])
        if own is not None:
            problems = _fit_problems(own, theirs, strict or isinstance(target, EMA))
            if problems:
                raise _mismatch(src, "model", name, problems)
        plan.append((name, target, state))
    for name, target, state in plan:
        try:
            if isinstance(target, nn.Module):
                target.load_state_dict(state, strict=strict)
            else:
                target.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise _mismatch(src, "model", name, [reason(e)]) from None

    for name, opt in (optimizers or {}).items():
        if name not in saved_opts:
            if strict:
                have = ", ".join(repr(n) for n in saved_opts) or "none"
                raise InputError(f"{src}: no optimizer '{name}' in the checkpoint (it has: {have})")
            log.warning("%s: no optimizer '%s' in the checkpoint; left as it is", src, name)
            continue
        try:
            opt.load_state_dict(saved_opts[name])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise _mismatch(src, "optimizer", name, [reason(e)]) from None

    if rng:
        state = ckpt.get("rng")
        if state is None:
            if strict:
                raise InputError(
                    f"{src}: the checkpoint holds no random number generator state "
                    "(saved with rng=False)"
                )
            log.warning("%s: no random number generator state in the checkpoint", src)
            return
        try:
            restore_rng_state(state, generators, strict=strict)
        except InputError as e:
            raise InputError(f"{src}: {e}") from None


# The run-folder half of checkpointing lives in train.manager; its names stay importable from
# here. Imported last: train.manager imports save_checkpoint from this module.
from impasto.train.manager import (
    CheckpointManager,
    remove_stale_temporaries,
    resolve_checkpoint,
)
