"""Private file helpers shared by every layer (a leaf, like errors): atomic writes, one-line
messages, the one safe ``torch.load``."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from impasto.errors import InputError


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with all whitespace runs (newlines included) collapsed, cut to ``limit`` chars."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reason(exc: BaseException) -> str:
    """A short description of an exception for a one-line message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):  # torch.load(weights_only=True)
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        return refused_pickle(exc) or one_line(found.group(1) if found else text, 200)
    if isinstance(exc, ValueError):  # numpy with allow_pickle=False (it advises unsafe loading)
        if text.startswith("This file contains pickled"):
            return ("no numpy header: another kind of file, or pickled objects, which are not "
                    "loaded for safety")
        if "Object arrays cannot be loaded" in text or "Python objects in dtype" in text:
            return "it holds Python objects (an object array), which are not loaded for safety"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return one_line(first, 200) or type(exc).__name__


def _umask() -> int:
    """The process umask, read without changing it where possible (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); best effort."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a hidden temporary file beside ``path``; on success it is synced and renamed over it.

    The temporary file is made with ``mkstemp`` in the target folder (so the final
    ``os.replace`` is atomic), flushed and ``fsync``-ed before the rename. If the body raises,
    the temporary file is removed and an existing ``path`` is left untouched. Missing parent
    folders are created. ``mode`` is ``"wb"`` or ``"w"`` (UTF-8 text).
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a folder, not a file name")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the folder: {reason(exc)}") from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write in the folder: {reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        if "b" in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding="utf-8", newline="\n")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the usual 0666 & ~umask
                os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def load_tensors(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True, **kwargs)``: tensors and plain data only, never a
    pickled object's code. torch's warning about a legacy (not zip) file's pickle protocol is
    silenced: the caller's one-line message (see :func:`refused_pickle`) says what matters."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pickle protocol", category=UserWarning)
        return torch.load(path, weights_only=True, **kwargs)


def refused_pickle(exc: BaseException) -> str | None:
    """Why :func:`load_tensors` refused a file, when ``exc`` says it holds more than tensors
    and plain data (a pickled class or function: the safe reader runs none), in words for a
    one-line message; None for any other error (a damaged file, say)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds pickled Python objects ({found.group(1)}), not only tensors and plain "
                "data, and is not loaded for safety")
    if re.search(r"Unsupported operand 149\b", text):  # FRAME: pickle protocol 4 or later
        return ("it is a pickle of protocol 4 or later (pickle.dump's, not torch.save's), which "
                "the safe reader does not read, and is not loaded for safety")
    return None  # another unsupported operand: not a pickle at all, say

