"""Model files: one format for the trained network of every family.

A model file is what a pipeline needs to run a trained network, and nothing of its training
(no optimiser, no random state). :func:`save_model` writes, atomically, either a ``.pt`` file:
the dict (loadable with ``torch.load(..., weights_only=True)``)::

    format          "impasto-model"
    format_version  int (FORMAT_VERSION; files with a higher number are refused)
    kind            "<family>/<arch>", e.g. "fast-style/transformer", "adain/decoder",
                    "gan/dcgan", "gan/pggan", "classify/lenet"
    config          dict of JSON data: what rebuilds the network
    state_dict      {name: tensor}: the network's weights
    extra           dict of plain data (tensors allowed): thumbnails, class names, provenance

or, for a path ending in ``.safetensors``, a safetensors file: the tensors of ``state_dict``
under ``state_dict/<name>``, tensors of ``extra`` under ``extra/<n>``, and in the header's
metadata ``format``, ``format_version``, ``kind``, and ``config`` and ``extra`` as JSON (a
tensor of ``extra`` appears there as ``{"__tensor__": "extra/<n>"}``; ``extra`` then goes
through JSON, so tuples come back as lists and dict keys as strings).

:func:`load_model` reads both (told apart by their first bytes, not by the name) and also the
files of the release before this format, converted on the fly (:attr:`ModelFile.legacy` names
the old kind):

==========================================  ===========================  =======================
old file (its ``kind``)                      new kind                     weights taken from
==========================================  ===========================  =======================
per-style model file (``fast-style``)        ``fast-style/transformer``   ``models["net"]``
fast-style training checkpoint               ``fast-style/transformer``   ``models["net"]``
AdaIN decoder file (``adain-decoder``)       ``adain/decoder``            ``models["decoder"]``
AdaIN training checkpoint (``adain/train``)  ``adain/decoder``            ``models["decoder"]``
GAN checkpoint (``gan/<arch>``, pggan too)   ``gan/<arch>``               ``G_ema``'s average
classifier checkpoint (``classifier/<a>``)   ``classify/<a>``             ``models["model"]``
==========================================  ===========================  =======================

Training checkpoints of this release (``classify/<a>`` and the other kinds above) are read the
same way; a checkpoint's digest and finite values are checked as
:func:`~impasto.train.load_checkpoint` checks them.

Every problem with a file (missing, a folder, not a model file, truncated or corrupt, another
kind, a newer format) raises :class:`~impasto.errors.InputError` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from impasto._fileutil import (
    atomic_open,
    reason,
)
from impasto.errors import InputError
from impasto.train.checkpoint import FORMAT_VERSION as CHECKPOINT_FORMAT_VERSION
from impasto.train.checkpoint import (
    _check_plain,
    _short,
    _verify,
    load_checkpoint,
    read_torch_file,
)
from impasto.train.config import config_to_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFile",
    "WrongKindError",
    "load_model",
    "model_kind",
    "read_model",
    "save_model",
]

#: The ``format`` tag of a model file.
FORMAT = "impasto-model"
#: Version of the model-file layout written by :func:`save_model`.
FORMAT_VERSION = 1

_KIND = re.compile(r"^[a-z][a-z0-9-]*/[a-z0-9][a-z0-9_.-]*$")
_TENSOR = "__tensor__"

#: Kinds of the release before this format that do not follow ``<family>/<arch>``.
_OLD_KINDS = {
    "fast-style": "fast-style/transformer",
    "fast-style-train": "fast-style/transformer",
    "adain-decoder": "adain/decoder",
    "adain/train": "adain/decoder",
}
#: Old family names: ``classifier/<arch>`` became ``classify/<arch>``.
_OLD_FAMILIES = {"classifier": "classify"}


def model_kind(kind: str) -> str | None:
    """The model-file kind of a checkpoint or model-file ``kind``, old or new: ``"fast-style"``
    -> ``"fast-style/transformer"``, ``"adain/train"`` -> ``"adain/decoder"``,
    ``"classifier/lenet"`` -> ``"classify/lenet"``, ``"gan/dcgan"`` -> itself; None for a
    string that names no kind."""
    if kind in _OLD_KINDS:
        return _OLD_KINDS[kind]
    if not isinstance(kind, str) or not _KIND.match(kind):
        return None
    family, arch = kind.split("/", 1)
    return f"{_OLD_FAMILIES.get(family, family)}/{arch}"


class WrongKindError(InputError):
    """:func:`load_model` found a model of another kind than asked for: ``kind`` is its kind
    (as a model file), ``legacy`` the old kind it was stored under (or None), ``wanted`` the
    kind asked for. Front ends catch it to word their own refusal."""

    def __init__(self, message: str, *, kind: str, legacy: str | None, wanted: str) -> None:
        super().__init__(message)
        self.kind, self.legacy, self.wanted = kind, legacy, wanted


@dataclasses.dataclass
class ModelFile:
    """A model file's content (see the module doc). ``path``: where it was read from (None
    for one built in memory); ``legacy``: the kind of the older file it was converted from,
    None for a file of this format; ``training_checkpoint``: it was read out of a training
    checkpoint (a front end may refuse those where it always has)."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    path: Path | None = None
    legacy: str | None = None
    training_checkpoint: bool = False

    @property
    def family(self) -> str:
        return self.kind.split("/", 1)[0]

    @property
    def arch(self) -> str:
        return self.kind.split("/", 1)[1]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """:func:`save_model` of this content (in this format, whatever it was read from)."""
        return save_model(path, kind=self.kind, config=self.config, state_dict=self.state_dict,
                          extra=self.extra)


# --------------------------------------------------------------------------------------------
# writing


def save_model(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: Any,
    state_dict: Mapping[str, torch.Tensor],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model file atomically (``.safetensors`` by the name, else ``.pt``); returns its
    path.

    ``kind``: ``"<family>/<arch>"`` (lower case). ``config``: a dict of JSON data or a
    dataclass (stored as :func:`~impasto.train.config_to_dict` gives it). ``state_dict``:
    tensors (stored detached, on the CPU, contiguous, in their own dtype). ``extra``: plain
    data. Bad arguments raise ``ValueError``/``TypeError``; a file that cannot be written,
    :class:`InputError`.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"a model kind is '<family>/<arch>' in lower case, not {kind!r}")
    config = _json_dict(config_to_dict(config), "config")
    state = {}
    for name, t in state_dict.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} is not a str -> tensor pair")
        state[name] = t.detach().to("cpu").contiguous()
    extra = dict(extra or {})
    _check_plain(state, "state_dict")
    _check_plain(extra, "extra")
    target = Path(path)
    if target.suffix.lower() == ".safetensors":
        data = _safetensors_bytes(kind, config, state, extra)
    else:
        data = None
    try:
        with atomic_open(target, "wb") as f:
            if data is None:
                torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                            "config": config, "state_dict": state, "extra": extra}, f)
            else:
                f.write(data)
    except OSError as e:
        raise InputError(f"{target}: cannot write the model file: {reason(e)}") from None
    return target


def _json_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` as it comes back from JSON (tuples as lists); TypeError if it is not JSON."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON data: {e}") from None


def _safetensors_bytes(kind: str, config: dict, state: dict, extra: dict) -> bytes:
    from safetensors.torch import save

    tensors = {f"state_dict/{k}": v.clone() for k, v in state.items()}

    def pull(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            name = f"extra/{sum(k.startswith('extra/') for k in tensors)}"
            tensors[name] = obj.detach().to("cpu").contiguous().clone()
            return {_TENSOR: name}
        if isinstance(obj, Mapping):
            return {str(k): pull(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [pull(v) for v in obj]
        if isinstance(obj, (torch.dtype, torch.Size)):
            raise TypeError(f"extra holds a {type(obj).__name__}, which safetensors cannot keep")
        return obj

    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind,
            "config": json.dumps(config), "extra": json.dumps(pull(extra))}
    return save(tensors, metadata=meta)


# --------------------------------------------------------------------------------------------
# reading


def load_model(
    path: str | os.PathLike[str], *, kind: str | None = None, map_location: Any = "cpu"
) -> ModelFile:
    """Read a model file of this format (``.pt`` or safetensors) or of the release before it
    (see the module doc). ``kind``: the kind expected, in full (``"gan/dcgan"``) or as a
    family (``"gan"``); another one is refused naming both. Raises :class:`InputError`."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a model file")
    if not p.exists():
        raise InputError(f"{p}: model file not found")
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise InputError(f"{p}: cannot read the model file: {reason(e)}") from None
    if not head:
        raise InputError(f"{p}: empty file, not a model file")
    if head[:4] == b"PK\x03\x04":  # torch.save writes a zip archive
        return _from_dict(read_torch_file(p, "model file", map_location), p, kind)
    if len(head) == 9 and head[8:9] == b"{":  # a safetensors header: u64 length, JSON
        return _read_safetensors(p, map_location, kind)
    raise InputError(f"{p}: not an impasto model file (neither a torch.save nor a "
                     "safetensors file)")


def read_model(path: str | os.PathLike[str], family: str, noun: str) -> ModelFile:
    """:func:`load_model` for a front end that takes model files and training checkpoints
    alike: the model of ``family`` (``"gan"``, ``"classify"``) in the file ``path``, with the
    refusals worded for what the file is. A file of another kind: ``"<path> is a '<kind>'
    checkpoint, not <noun>"`` (or ``model file``; ``noun`` e.g. ``"a GAN's"``); a file that
    is no model file: the checkpoint reader's words (most files given are checkpoints), unless
    it is no checkpoint either for the reason that it is a model file (then the model
    reader's)."""
    try:
        return load_model(path, kind=family)
    except WrongKindError as e:
        what = "checkpoint" if e.legacy else "model file"
        raise InputError(f"{path} is a '{e.legacy or e.kind}' {what}, not {noun}") from None
    except InputError as e:
        try:
            load_checkpoint(path)
        except InputError as not_checkpoint:
            if "model file" not in str(not_checkpoint):
                raise not_checkpoint from None
        raise e from None


def _check_kind(p: Path, found: str, legacy: str | None, wanted: str | None) -> None:
    """Refuse a model of kind ``found`` (stored as ``legacy``) where ``wanted`` is asked."""
    if wanted is None or found == wanted or ("/" not in wanted and
                                             found.startswith(f"{wanted}/")):
        return
    what = f" (an old '{legacy}' file)" if legacy and legacy != found else ""
    raise WrongKindError(f"{p} is a '{found}' model{what}, not '{wanted}'", kind=found,
                         legacy=legacy, wanted=wanted)


def _version(value: Any, p: Path, what: str, newest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{p}: not an impasto model file ({what} {value!r})")
    if value > newest:
        raise InputError(f"{p}: {what} {value} is newer than this impasto reads (up to "
                         f"{newest}); upgrade impasto")
    return value


def _checked(p: Path, kind: Any, config: Any, state: Any, extra: Any, version: int,
             wanted: str | None, legacy: str | None = None,
             training_checkpoint: bool = False) -> ModelFile:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InputError(f"{p}: not a valid model file (kind {kind!r})")
    _check_kind(p, kind, legacy, wanted)
    if not isinstance(config, dict):
        raise InputError(f"{p}: not a valid model file (no config)")
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(f"{p}: not a valid model file (its weights are not a state dict)")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise InputError(f"{p}: not a valid model file (extra is not a dict)")
    return ModelFile(kind=kind, config=config, state_dict=dict(state), extra=extra,
                     format_version=version, path=p, legacy=legacy,
                     training_checkpoint=training_checkpoint)


def _from_dict(obj: Any, p: Path, wanted: str | None) -> ModelFile:
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        version = _version(obj.get("format_version"), p, "model file format", FORMAT_VERSION)
        return _checked(p, obj.get("kind"), obj.get("config"), obj.get("state_dict"),
                        obj.get("extra"), version, wanted)
    if isinstance(obj, dict) and "format_version" in obj and isinstance(obj.get("kind"), str):
        _version(obj["format_version"], p, "checkpoint format", CHECKPOINT_FORMAT_VERSION)
        return _from_checkpoint(obj, p, wanted)
    bare = isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())
    hint = "; it looks like a bare state_dict" if bare else ""
    raise InputError(f"{p}: not an impasto model file (no format tag{hint})")


def _read_safetensors(p: Path, map_location: Any, wanted: str | None) -> ModelFile:
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - a dependency
        raise InputError(f"{p}: reading safetensors files needs the 'safetensors' "
                         "package") from None
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # noqa: BLE001  (SafetensorError, OSError, ...)
        raise InputError(f"{p}: truncated or corrupt model file ({_short(e)})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{p}: not an impasto model file (a safetensors file without the "
                         f"'{FORMAT}' tag)")
    try:
        version_number = int(meta.get("format_version", ""))
    except ValueError:
        version_number = meta.get("format_version")
    version = _version(version_number, p, "model file format", FORMAT_VERSION)
    if map_location not in (None, "cpu"):
        tensors = {k: v.to(map_location) for k, v in tensors.items()}

    def push(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {_TENSOR} and obj[_TENSOR] in tensors:
                return tensors[obj[_TENSOR]]
            return {k: push(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [push(v) for v in obj]
        return obj

    try:
        config = json.loads(meta.get("config", "null"))
        extra = push(json.loads(meta.get("extra", "{}")))
    except ValueError:
        raise InputError(f"{p}: not a valid model file (its metadata is not JSON)") from None
    state = {k[len("state_dict/"):]: v for k, v in tensors.items() if k.startswith("state_dict/")}
    return _checked(p, meta.get("kind"), config, state, extra, version, wanted)


# --------------------------------------------------------------------------------------------
# the files of the release before this format


def _from_checkpoint(ckpt: dict[str, Any], p: Path, wanted: str | None) -> ModelFile:
    """The model held by an impasto checkpoint or an old model file (see the module doc)."""
    old = ckpt["kind"]
    new = model_kind(old)
    _check_kind(p, new or old, old, wanted)  # before looking inside a file of another kind
    _verify(ckpt, p)  # its digest and finite weights, as load_checkpoint checks them
    convert = _CONVERTERS.get(new.split("/", 1)[0]) if new else None
    models, extra = ckpt.get("models"), ckpt.get("extra") or {}
    if convert is None or not isinstance(models, dict) or not isinstance(extra, dict):
        raise InputError(f"{p}: a '{old}' checkpoint holds no model this impasto can read")
    try:
        config, state, more, is_checkpoint = convert(ckpt, models, extra, p)
    except InputError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError):
        raise InputError(f"{p}: an incomplete '{old}' file (no network config or weights "
                         "where expected)") from None
    for key in ("step", "images_seen"):
        if isinstance(ckpt.get(key), int):
            more.setdefault(key, ckpt[key])
    return _checked(p, new, config, state, more, FORMAT_VERSION, wanted, legacy=old,
                    training_checkpoint=is_checkpoint)


def _fast_style(ckpt, models, extra, p):
    if "metadata" in extra:  # a model file: its version hides in a JSON string
        try:
            meta = json.loads(extra["metadata"] or "{}")
        except (TypeError, ValueError):
            raise InputError(f"{p}: the fast-style model's metadata is not JSON") from None
        if not isinstance(meta, dict):
            raise InputError(f"{p}: the fast-style model's metadata is not an object")
        version = meta.get("format_version", 1)
        if not isinstance(version, int) or version > 1:
            raise InputError(f"{p}: fast-style model format {version!r} is newer than this "
                             "impasto reads (up to 1); upgrade impasto")
        config = meta.get("net") or ckpt["config"]
        more = {"metadata": {k: v for k, v in meta.items()
                             if k not in ("kind", "format_version", "net")}}
        thumb = extra.get("thumbnail")
        if isinstance(thumb, torch.Tensor) and thumb.dtype == torch.uint8 and thumb.ndim == 3:
            more["thumbnail"] = thumb
    else:  # a training checkpoint
        config = extra["net"]
        name = extra.get("style_name")
        more = {"metadata": {"style": {"name": name} if name else None,
                             "training": ckpt.get("config") or {}}}
    return dict(config), models["net"], more, "metadata" not in extra


def _adain(ckpt, models, extra, p):
    if "decoder_format" in extra:  # a decoder file
        version = extra["decoder_format"]
        if not isinstance(version, int) or version > 1:
            raise InputError(f"{p}: AdaIN decoder format {version!r} is not one this impasto "
                             "reads (up to 1)")
        meta = ckpt["config"]
        config = {"decoder": dict(meta["decoder"]), "encoder": dict(meta["encoder"])}
        more = {"training": meta.get("training") or {}, "styles": list(extra.get("styles", []))}
    else:  # a training checkpoint
        config = {"decoder": dict(extra["decoder"]), "encoder": dict(extra["encoder"])}
        more = {"training": ckpt.get("config") or {}, "styles": list(extra.get("styles") or [])}
    return config, models["decoder"], more, "decoder_format" not in extra


def _gan(ckpt, models, extra, p):
    ema = models["G_ema"]
    state = ema["model"] if isinstance(ema, Mapping) and "model" in ema else None
    if state is None:
        raise InputError(f"{p}: the 'G_ema' entry of the checkpoint is not an EMA state")
    more: dict[str, Any] = {"training": ckpt.get("config") or {}}
    if isinstance(extra.get("classes"), list):
        more["classes"] = list(extra["classes"])
    if "stage" in extra:  # progressive GAN: the stage it reached renders by default
        more["stage"] = dict(extra["stage"])
        schedule = (ckpt.get("config") or {}).get("schedule") or {}
        more["start_resolution"] = int(schedule.get("start_resolution", 4))
    return dict(extra["net"]), state, more, True


def _classify(ckpt, models, extra, p):
    more: dict[str, Any] = {"training": ckpt.get("config") or {}}
    for key in ("classes", "val"):
        if extra.get(key) is not None:
            more[key] = extra[key]
    return dict(extra["net"]), models["model"], more, True


_CONVERTERS = {"fast-style": _fast_style, "adain": _adain, "gan": _gan, "classify": _classify}
