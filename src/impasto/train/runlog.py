"""Training logs in a run folder: ``stats.jsonl`` always, TensorBoard when it is installed.

``RunLogger(run)`` appends one JSON object per :meth:`~RunLogger.scalars` call to
``run/stats.jsonl`` (``{"step": 120, "time": 1718000000.5, "d_loss": 0.71, ...}``; ``time``
is the wall clock in seconds since the epoch; each line is flushed as it is written, so a
crash loses nothing; NaN and infinities are written as ``NaN``/``Infinity``, which
:func:`read_stats` reads back) and writes the same scalars, and image grids, to TensorBoard
event files in ``run/`` (``tensorboard --logdir run``). Without the ``tensorboard`` package a
warning is logged once and ``stats.jsonl`` is still written.

In a multi-process run only rank 0 writes; on other ranks every method does nothing. After a
resume, ``RunLogger(run, resume_step=step)`` drops the lines logged after ``step`` by the
interrupted run (and tells TensorBoard to do the same), so the curves do not double back.
"""

from __future__ import annotations

import json
import math
import logging
import numbers
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from impasto.errors import InputError
from impasto._fileutil import reason, write_text_atomic

__all__ = ["RunLogger", "read_stats"]

log = logging.getLogger(__name__)

STATS_FILE = "stats.jsonl"
_warned_no_tensorboard = False


def _warn_no_tensorboard(exc: BaseException) -> None:
    global _warned_no_tensorboard
    if not _warned_no_tensorboard:
        _warned_no_tensorboard = True
        log.warning("TensorBoard logging is off (%s); stats.jsonl is still written", reason(exc))


class RunLogger:
    """Scalars to ``stats.jsonl`` (and TensorBoard), image grids to TensorBoard (and PNG files).

    ``tensorboard=False`` skips TensorBoard. ``rank`` != 0 makes every method a no-op (nothing
    is created). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        tensorboard: bool = True,
        rank: int = 0,
        resume_step: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.active = rank == 0
        self.stats_path = self.folder / STATS_FILE
        self._file = None
        self._writer = None
        if not self.active:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.folder}: cannot create the run folder: {reason(e)}") from None
        if resume_step is not None and self.stats_path.is_file():
            kept = [
                r
                for r in read_stats(self.stats_path)
                if not (isinstance(r.get("step"), int) and r["step"] > resume_step)
            ]
            write_text_atomic(self.stats_path, "".join(_dumps(r) + "\n" for r in kept))
        try:
            self._file = open(self.stats_path, "a", encoding="utf-8", newline="\n")
        except OSError as e:
            raise InputError(f"{self.stats_path}: cannot write: {reason(e)}") from None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                _warn_no_tensorboard(e)
            else:
                purge = None if resume_step is None else int(resume_step) + 1
                self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge)

    @property
    def tensorboard(self) -> bool:
        """True when TensorBoard event files are being written."""
        return self._writer is not None

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """Log ``values`` (numbers or one-element tensors) at ``step``: one line of stats.jsonl."""
        if not self.active:
            return
        if self._file is None:
            raise RuntimeError("RunLogger is closed")
        row: dict[str, Any] = {"step": int(step), "time": time.time()}
        for key, value in values.items():
            if key in ("step", "time"):
                raise ValueError(f"'{key}' is a reserved name in stats.jsonl")
            row[str(key)] = _number(key, value)
        self._file.write(_dumps(row) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("step", "time"):
                    self._writer.add_scalar(key, value, int(step))

    def images(
        self,
        step: int,
        tag: str,
        tensor: torch.Tensor,
        nrow: int = 8,
        *,
        value_range: tuple[float, float] | None = None,
        save_png: bool = False,
    ) -> torch.Tensor | None:
        """Log a batch ``(N, C, H, W)`` (C = 1 or 3) as one grid image of ``nrow`` per row.

        ``value_range`` is ``(-1, 1)`` or ``(0, 1)`` (any ``(lo, hi)``); by default ``(-1, 1)``
        when the batch has negative values, else ``(0, 1)``. Values are clamped into it. The
        grid goes to TensorBoard and, with ``save_png``, to ``images/<tag>-<step>.png`` in the
        run folder (via :func:`impasto.io.save_image`). Returns the grid ``(3, H', W')`` in
        ``[0, 1]`` (None on ranks other than 0).
        """
        if not self.active:
            return None
        from torchvision.utils import make_grid

        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[1] not in (1, 3):
            raise ValueError(f"images expects (N, 1 or 3, H, W), got shape {tuple(tensor.shape)}")
        x = tensor.detach().to(device="cpu", dtype=torch.float32)
        if value_range is None:
            value_range = (-1.0, 1.0) if bool((x < 0).any()) else (0.0, 1.0)
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(
                f"value_range must be (low, high) with low < high, not {value_range!r}"
            )
        x = ((x - lo) / (hi - lo)).nan_to_num(0.0).clamp_(0.0, 1.0)
        grid = make_grid(x, nrow=max(1, int(nrow)), padding=2, pad_value=0.0)
        if self._writer is not None:
            self._writer.add_image(tag, grid, int(step), dataformats="CHW")
        if save_png:
            from impasto.io import save_image

            safe = re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("._") or "images"
            save_image(grid, self.folder / "images" / f"{safe}-{int(step):09d}.png")
        return grid

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the files; later calls do nothing."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(key: str, value: Any) -> int | float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"scalar '{key}' is a tensor of shape {tuple(value.shape)}, not one value"
            )
        value = value.detach().item()
    elif hasattr(value, "item") and not isinstance(value, numbers.Number):  # numpy 0-d arrays
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"scalar '{key}' is a {type(value).__name__}, not a number")


def _dumps(row: Mapping[str, Any]) -> str:
    """One JSON line; NaN and infinities (which JSON cannot hold) become the strings "nan",
    "inf" and "-inf", so every line stays valid JSON for any reader."""
    plain = {k: (v if not isinstance(v, float) or math.isfinite(v)
                 else "nan" if math.isnan(v) else "inf" if v > 0 else "-inf")
             for k, v in row.items()}
    return json.dumps(plain, ensure_ascii=False, allow_nan=False)


def read_stats(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a ``stats.jsonl`` file (or of the one in a run folder), in order.

    ``"nan"``, ``"inf"`` and ``"-inf"`` are read back as floats. A last line cut short by a
    crash is skipped; any other line that is not a JSON object
    raises :class:`InputError` naming the file and line. A missing file is an InputError too.
    """
    p = Path(path)
    if p.is_dir():
        p = p / STATS_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: stats file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the stats file: {reason(e)}") from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            if i == len(lines):  # no newline after it: a write cut short
                continue
            raise InputError(f"{p}: line {i} is not a JSON object")
        rows.append({k: _NON_FINITE.get(v, v) if isinstance(v, str) else v
                     for k, v in row.items()})
    return rows


#: How :func:`_dumps` writes the numbers JSON cannot hold, read back by :func:`read_stats`.
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
