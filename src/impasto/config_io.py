"""Typed configs (dataclasses) as JSON: a model file's and a run's settings.

A run folder holds ``config.json`` written by :func:`save_config`; :func:`load_config` rebuilds
the same dataclass from it, nested dataclasses and tuples included, so a resumed or evaluated
run uses exactly the settings it was trained with::

    @dataclass
    class OptimConfig:
        lr: float = 2e-4
        betas: tuple[float, float] = (0.5, 0.999)

    @dataclass
    class DCGANConfig:
        resolution: int = 64
        optim: OptimConfig = field(default_factory=OptimConfig)

    save_config(cfg, run / "config.json")
    cfg = load_config(DCGANConfig, run / "config.json")

Conversion rules (:func:`config_to_dict`): dataclasses become dicts of their ``init`` fields,
tuples and lists become lists, ``pathlib`` paths become strings, enums their value; everything
else must already be JSON data (str, int, float, bool, None, dicts with str keys).
:func:`config_from_dict` follows the field annotations back: nested dataclasses, ``tuple[X, ...]``
and fixed ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]``, ``X | None``, ``Literal[...]``,
``Path`` and enums; an int is accepted for a float field. Unknown keys and values of the wrong
kind raise :class:`~impasto.errors.InputError` naming the field; missing keys take the field's
default (a missing field without a default is an error too).

The configs' own ``validate()`` methods check their fields with :func:`check_int`,
:func:`check_number`, :func:`check_bool` (a one-line :class:`InputError` naming the field,
from :func:`bad_value`). This module is a leaf (it imports only :mod:`impasto.errors` and the
file helpers), so networks' configs (:mod:`impasto.nets`) use it as training's do.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, TypeVar

from impasto.errors import InputError
from impasto._fileutil import reason, write_text_atomic

__all__ = [
    "bad_value",
    "check_bool",
    "check_int",
    "check_number",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# dataclass -> dict


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass instance (or a mapping) as a dict of plain JSON data; see the module doc."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return _to_plain(cfg, "config")
    if isinstance(cfg, Mapping):
        return _to_plain(dict(cfg), "config")
    raise TypeError(
        f"config_to_dict expects a dataclass instance or a dict, not {type(cfg).__name__}"
    )


def _to_plain(value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_plain(getattr(value, f.name), f"{where}.{f.name}")
            for f in dataclasses.fields(value)
            if f.init
        }
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{where} has a key {k!r} that is not a string; JSON needs str keys"
                )
            out[k] = _to_plain(v, f"{where}.{k}")
        return out
    if isinstance(value, enum.Enum):
        return _to_plain(value.value, where)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}, which a JSON config cannot hold")


# --------------------------------------------------------------------------------------------
# dict -> dataclass


def config_from_dict(cls: type[T], d: Mapping[str, Any], *, source: str | None = None) -> T:
    """Rebuild the dataclass ``cls`` from ``d`` (from :func:`config_to_dict` or a JSON file).

    Raises :class:`InputError` for unknown keys (all named), a missing key without a default and
    a value of the wrong kind; ``source`` (e.g. the file name) starts each message.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"config_from_dict expects a dataclass type, not {cls!r}")
    try:
        return _build(cls, d, "")
    except InputError as e:
        if source is not None:
            raise InputError(f"{source}: {e}") from None
        raise


def _where(where: str) -> str:
    return f"config field '{where}'" if where else "config"


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, Mapping):
        raise InputError(f"{_where(where)} must be a JSON object, not {_describe(d)}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    unknown = [str(k) for k in d if k not in names]
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        plural = "s" if len(unknown) > 1 else ""
        inside = f" in {_where(where)}" if where else ""
        raise InputError(
            f"unknown config key{plural} {keys}{inside} (known: {', '.join(sorted(names))})"
        )
    hints = _hints(cls)
    kwargs = {}
    for f in fields:
        sub = f"{where}.{f.name}" if where else f.name
        if f.name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"{_where(sub)} is missing and has no default")
            continue
        kwargs[f.name] = _convert(hints.get(f.name, Any), d[f.name], sub)
    try:
        return cls(**kwargs)
    except InputError:
        raise
    except (TypeError, ValueError) as e:  # a __post_init__ check
        raise InputError(f"{_where(where)}: {reason(e)}") from None


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001  (names only importable under TYPE_CHECKING, ...)
        return {
            f.name: (f.type if not isinstance(f.type, str) else Any)
            for f in dataclasses.fields(cls)
        }


def _describe(value: Any) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _wrong(where: str, expected: str, value: Any) -> InputError:
    return InputError(f"{_where(where)} must be {expected}, not {_describe(value)}")


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: C901  (one branch per kind)
    if tp is Any or isinstance(tp, (str, typing.ForwardRef)) or isinstance(tp, TypeVar):
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, where)
        for option in options:
            try:
                return _convert(option, value, where)
            except InputError:
                continue
        raise _wrong(where, " or ".join(_type_name(a) for a in args), value)
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise _wrong(where, "one of " + ", ".join(json.dumps(a) for a in args), value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, "a list", value)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args == ((),):  # tuple[()]
            args = ()
        if len(value) != len(args):
            raise _wrong(where, f"a list of {len(args)} values", value)
        return tuple(
            _convert(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (list, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, "a list", value)
        item = args[0] if args else Any
        out = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if tp is tuple else out
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _wrong(where, "a JSON object", value)
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if origin is not None:  # another generic (set[X], ...): leave the JSON value as it is
        return value
    if not isinstance(tp, type):
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise _wrong(where, "one of " + ", ".join(repr(m.value) for m in tp), value) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, "true or false", value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(where, "a whole number", value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _wrong(where, "a number", value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, "a string", value)
    if issubclass(tp, PurePath):
        if isinstance(value, str):
            return tp(value)
        raise _wrong(where, "a path string", value)
    return value


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# --------------------------------------------------------------------------------------------
# field checks for the configs' validate()


def bad_value(name: str, expected: str, value: Any) -> InputError:
    """The one-line error ``"<name> must be <expected>, not <value!r>"``."""
    return InputError(f"{name} must be {expected}, not {value!r}")


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None, *,
              expected: str | None = None) -> None:
    """Raise :func:`bad_value` unless ``value`` is an int (not a bool) from ``minimum`` to
    ``maximum`` (if given); ``expected`` replaces the wording ``"a whole number >= 1"``
    (``"... from 1 to 9"`` with a maximum)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_value(name, expected or f"a whole number >= {minimum}", value)
    if maximum is not None and value > maximum:
        raise bad_value(name, expected or f"a whole number from {minimum} to {maximum}", value)


def check_number(name: str, value: Any, *, positive: bool = False, below: float | None = None,
                 expected: str | None = None) -> None:
    """Raise :func:`bad_value` unless ``value`` is a finite int or float (not a bool), ``> 0``
    with ``positive`` (else ``>= 0``) and ``< below`` if given; ``expected`` replaces the
    wording ``"a positive number"`` / ``"a number >= 0"`` (``+ " below 1"``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    ok = ok and (below is None or value < below)
    if not ok:
        if expected is None:
            expected = "a positive number" if positive else "a number >= 0"
            if below is not None:
                expected += f" below {below:g}"
        raise bad_value(name, expected, value)


def check_bool(name: str, value: Any) -> None:
    """Raise :func:`bad_value` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise bad_value(name, "true or false", value)


# --------------------------------------------------------------------------------------------
# files


def save_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` (a dataclass instance or dict) as indented JSON to ``path``, atomically.

    Non-finite floats are written as JSON ``NaN``/``Infinity`` (Python reads them back).
    Returns the path.
    """
    data = config_to_dict(cfg)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    target = Path(path)
    write_text_atomic(target, text)
    return target


def load_config(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read the JSON file ``path`` written by :func:`save_config` back into the dataclass ``cls``.

    Raises :class:`InputError` naming the file for a missing or unreadable file, invalid JSON,
    unknown keys and values of the wrong kind.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a config file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: config file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a JSON config file (not UTF-8 text)") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read the config file: {reason(e)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    return config_from_dict(cls, data, source=str(p))
