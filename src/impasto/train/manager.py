"""A run folder of checkpoints: numbered files, ``latest.json``, ``best.pt``, ``--resume``.

:class:`CheckpointManager` writes ``{prefix}-<step>.pt`` with
:func:`~impasto.train.checkpoint.save_checkpoint`, points ``latest.json`` at it and prunes older
files; :func:`resolve_checkpoint` turns ``--resume PATH`` (a file or a run folder) into a file;
:func:`remove_stale_temporaries` clears what a killed atomic write left behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from impasto._fileutil import reason, write_text_atomic
from impasto.errors import InputError
from impasto.train.checkpoint import _int, save_checkpoint

__all__ = ["CheckpointManager", "remove_stale_temporaries", "resolve_checkpoint"]

# The logger these messages had before the module was split off train.checkpoint.
log = logging.getLogger("impasto.train.checkpoint")

# Files that atomic_open leaves when a process is killed mid-write: ``.<name>.<random>.tmp``.
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``folder`` (only
    impasto's own pattern ``.<name>.<random>.tmp``, only in that folder); returns them."""
    removed = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if _TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except OSError as e:
                log.warning("cannot delete stale temporary file %s: %s", p, reason(e))
    return removed



def _numbered(folder: Path, prefix: str) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``{prefix}-<step>.pt`` files in ``folder``, by step."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.pt$")
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        m = pattern.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _latest_in(folder: Path, prefix: str) -> Path | None:
    info = _read_json(folder / "latest.json")
    if isinstance(info, dict) and isinstance(info.get("file"), str):
        name = info["file"]
        if name and "/" not in name and "\\" not in name and name not in (".", ".."):
            candidate = folder / name
            if candidate.is_file():
                return candidate
    found = _numbered(folder, prefix)
    return found[-1][1] if found else None


def resolve_checkpoint(path_or_run_folder: str | os.PathLike[str], *, prefix: str = "ckpt") -> Path:
    """The checkpoint file that ``--resume PATH`` means.

    A file is returned as it is. For a run folder: the file named by its ``latest.json``, or
    else its highest-numbered ``{prefix}-<step>.pt``. Raises :class:`InputError` for a path that
    does not exist and for a folder without checkpoints.
    """
    p = Path(path_or_run_folder)
    if p.is_dir():
        found = _latest_in(p, prefix)
        if found is None:
            raise InputError(
                f"{p}: no checkpoint in this folder (no latest.json and no {prefix}-*.pt)"
            )
        return found
    if p.exists():
        return p
    raise InputError(f"{p}: no such checkpoint file or run folder")


class CheckpointManager:
    """Numbered checkpoints in a run folder, the last ``keep_last`` kept, plus ``best.pt``.

    :meth:`save` writes ``{prefix}-000001234.pt`` (the step, zero-padded to 9 digits), then
    ``latest.json`` (``{"file": ..., "step": ...}``, written atomically; no symlink, so it
    works on every file system), and only then deletes older numbered files beyond the last
    ``keep_last`` (None keeps all). "Last" is by step number, and the file just written is
    always kept (a resumed run that went back never deletes its new checkpoint).

    With ``best_metric`` (e.g. ``"fid"``) and ``mode`` (``"min"`` or ``"max"``),
    :meth:`save_best` writes ``best.pt`` only when the value improves on the best so far
    (remembered in ``best.json``, so it survives a resume) and stores the value in the
    checkpoint's ``extra`` as ``best_metric``/``best_value``.

    Only the main process (rank 0) should save; every rank may :meth:`resolve`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        keep_last: int | None = 3,
        prefix: str = "ckpt",
        best_metric: str | None = None,
        mode: str = "min",
    ) -> None:
        if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1
        ):
            raise ValueError(f"keep_last must be a positive integer or None, not {keep_last!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        if not prefix or "/" in prefix or "\\" in prefix:
            raise ValueError(f"prefix must be a plain file name prefix, not {prefix!r}")
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.prefix = prefix
        self.best_metric = best_metric
        self.mode = mode
        self._best: float | None = None
        self._best_loaded = False

    # -- numbered checkpoints

    def path_for(self, step: int) -> Path:
        return self.folder / f"{self.prefix}-{_int('step', step):09d}.pt"

    def checkpoints(self) -> list[Path]:
        """The numbered checkpoint files in the folder, oldest step first."""
        return [p for _, p in _numbered(self.folder, self.prefix)]

    def save(self, step: int, **kw: Any) -> Path:
        """:func:`save_checkpoint` to ``{prefix}-<step>.pt`` (``kw``: kind, config, images_seen,
        models, optimizers, extra, rng, generators), update ``latest.json``, prune old files."""
        path = save_checkpoint(self.path_for(step), step=step, **kw)
        remove_stale_temporaries(self.folder)
        write_text_atomic(
            self.folder / "latest.json", json.dumps({"file": path.name, "step": int(step)}) + "\n"
        )
        if self.keep_last is not None:
            others = [(s, p) for s, p in _numbered(self.folder, self.prefix) if p.name != path.name]
            keep = (
                {p.name for _, p in others[len(others) - (self.keep_last - 1) :]}
                if self.keep_last > 1
                else set()
            )
            for _, p in others:
                if p.name not in keep:
                    try:
                        p.unlink()
                    except OSError as e:
                        log.warning("cannot delete old checkpoint %s: %s", p, reason(e))
        return path

    def latest_path(self) -> Path | None:
        """The newest checkpoint (``latest.json``, else the highest step), or None."""
        if not self.folder.is_dir():
            return None
        return _latest_in(self.folder, self.prefix)

    def resolve(self, path_or_run_folder: str | os.PathLike[str]) -> Path:
        """See :func:`resolve_checkpoint` (with this manager's prefix)."""
        return resolve_checkpoint(path_or_run_folder, prefix=self.prefix)

    # -- best

    @property
    def best_value(self) -> float | None:
        """The best value of ``best_metric`` so far (from ``best.json`` after a resume), or None."""
        if not self._best_loaded:
            self._best_loaded = True
            info = _read_json(self.folder / "best.json")
            if (
                isinstance(info, dict)
                and info.get("metric") == self.best_metric
                and isinstance(info.get("value"), (int, float))
                and (self.folder / "best.pt").is_file()
            ):
                self._best = float(info["value"])
        return self._best

    def save_best(self, value: float | torch.Tensor, **kw: Any) -> bool:
        """Write ``best.pt`` (and ``best.json``) if ``value`` beats the best so far; returns
        whether it did. NaN never improves. ``kw`` as for :meth:`save` plus ``step``."""
        if self.best_metric is None:
            raise ValueError("save_best needs CheckpointManager(best_metric=...)")
        v = float(value.item() if isinstance(value, torch.Tensor) else value)
        if not math.isfinite(v):
            return False
        best = self.best_value
        if best is not None and not (v < best if self.mode == "min" else v > best):
            return False
        extra = dict(kw.pop("extra", None) or {})
        extra.update(best_metric=self.best_metric, best_value=v)
        path = save_checkpoint(self.folder / "best.pt", extra=extra, **kw)
        info = {
            "metric": self.best_metric,
            "mode": self.mode,
            "value": v,
            "step": kw.get("step"),
            "file": path.name,
        }
        write_text_atomic(self.folder / "best.json", json.dumps(info) + "\n")
        self._best = v
        return True
