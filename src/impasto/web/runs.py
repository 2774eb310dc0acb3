"""The Runs tab's work, without the page: the training runs under ``--runs`` (every family: the
run folders that :class:`~impasto.train.run.Run` writes), what each holds, its loss curves as a
PNG, and TensorBoard on request.

A run folder holds ``config.json`` (the run's settings), ``stats.jsonl`` (one JSON object of
scalars per logged step, :class:`~impasto.train.runlog.RunLogger`; metrics such as
``metric/fid`` or ``val_acc`` are rows of it too), ``images/<tag>-<step>.png`` (sample grids),
``ckpt-<step>.pt`` with ``latest.json`` and, when a metric is tracked, ``best.pt`` with
``best.json``. Everything is read through :func:`~impasto.web.catalog.resolve_under`: a name
from the page, or a file inside a run (a link, ``latest.json``'s file), that leads outside
``--runs`` is refused. A damaged or partial folder gives one line per problem, never an
exception.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.web.catalog import MAX_DEPTH, resolve_under

__all__ = ["RunReport", "RunSummary", "RunsBrowser", "TensorBoard", "default_scalars",
           "plot_curves"]

log = logging.getLogger(__name__)

MARKERS = ("stats.jsonl", "latest.json", "config.json", "best.json")  # what makes a run folder
INSIDE = ("images", "checkpoints", "tb", "logs")  # a run's own folders: not runs themselves
MAX_RUNS = 200
MAX_SAMPLES = 6  # the latest picture of each tag, at most this many tags
MAX_PANELS = 12  # curves drawn at once
TAIL_BYTES = 65536  # the end of a stats.jsonl read for the runs table
#: Scalars that count things rather than measure the training (not offered by default).
BOOKKEEPING = frozenset({"step", "time", "epoch", "images_per_s", "kimg", "phase_index",
                         "batch_size", "fading", "alpha", "resolution"})
_SAMPLE = re.compile(r"^(.*)-(\d+)\.png$")


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table: ``name`` (relative to ``--runs``), ``kind`` (the latest
    checkpoint's, ``"gan/pggan"`` say; ``""`` before the first checkpoint), ``step`` (the last
    logged or checkpointed), ``total`` (the config's ``steps``, None when it has none),
    ``updated`` (seconds since the epoch) and ``note`` (the first problem, or ``""``)."""

    name: str
    kind: str
    step: int | None
    total: int | None
    updated: float | None
    note: str = ""


@dataclass
class RunReport:
    """What the Runs tab shows of one run: its summary, ``config`` (``config.json``),
    ``rows`` (``stats.jsonl``), ``scalars`` (the numeric columns, in first-seen order),
    ``metrics`` (name -> (step, last value) of ``metric/*`` and ``val_*``), ``best``
    (``best.json``), ``samples`` ((path, caption): the latest picture of each tag) and
    ``problems`` (one line each)."""

    summary: RunSummary
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    scalars: list[str] = field(default_factory=list)
    metrics: dict[str, tuple[int, float]] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    samples: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def default_scalars(names: list[str]) -> list[str]:
    """The curves drawn first: losses, then metrics and validation scores."""
    losses = [n for n in names if "loss" in n and n not in BOOKKEEPING]
    rest = [n for n in names if n.startswith(("metric/", "val_")) and n not in losses]
    return (losses + rest)[:MAX_PANELS] or [n for n in names if n not in BOOKKEEPING][:4]


class RunsBrowser:
    """The run folders under ``root`` (None: no runs folder)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = None if root is None else Path(root).resolve()
        self._kinds: dict[tuple[str, int, int], str] = {}  # (checkpoint, mtime, size) -> kind
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The run folders, by their path relative to the root (at most :data:`MAX_DEPTH`
        folders down, hidden folders and links skipped)."""
        if self.root is None:
            return []
        found: list[str] = []
        for folder, dirs, files in _walk(self.root):
            here = Path(folder)
            if here != self.root and (any(m in files for m in MARKERS)
                                      or any(_is_ckpt(f) for f in files)):
                found.append(here.relative_to(self.root).as_posix())
                dirs[:] = [d for d in dirs if d not in INSIDE]
                if len(found) >= MAX_RUNS:
                    log.warning("more than %d runs under %s: the rest are not listed",
                                MAX_RUNS, self.root)
                    break
        return found

    def has_event_files(self) -> bool:
        """Whether any run under the root has TensorBoard event files (``events.out.tfevents.*``:
        runs trained with TensorBoard logging on)."""
        return any(any(f.startswith("events.out.tfevents.") for f in files)
                   for _, _, files in _walk(self.root)) if self.root is not None else False

    def summaries(self) -> list[RunSummary]:
        """Every run's summary (one damaged run does not hide the others)."""
        out = []
        for name in self.names():
            try:
                out.append(self.report(name, rows=False).summary)
            except (InputError, OSError) as e:  # unreadable folder, a race with its removal
                out.append(RunSummary(name, "", None, None, None, self._short(_reason(e))))
        return out

    def folder(self, name: str | None) -> Path:
        """The run folder ``name`` (relative to the root), refused outside it."""
        if self.root is None:
            raise InputError("no runs folder was given (impasto serve --runs DIR)")
        if not name:
            raise InputError("choose a run")
        path = resolve_under(self.root, name)
        if not path.is_dir() or path == self.root:
            raise InputError(f"{name!r}: not a run folder")
        return path

    def report(self, name: str | None, *, rows: bool = True) -> RunReport:
        """What the run ``name`` holds (see :class:`RunReport`); ``rows``: read the whole log,
        its scalars, metrics and samples (the runs table needs only the summary: its last
        step, from the log's end, whatever its length)."""
        folder = self.folder(name)
        assert self.root is not None and name
        problems: list[str] = []
        config = self._json(folder, "config.json", problems) or {}
        latest = self._json(folder, "latest.json", [], quiet=True) or {}
        best = self._json(folder, "best.json", problems)
        kind = self._kind(folder, problems)
        data: list[dict[str, Any]] = []
        stats = folder / "stats.jsonl"
        if not stats.exists():
            problems.append("no stats.jsonl: nothing logged yet")
        elif rows:
            data = self._stats(folder, problems)
        else:  # the table: only the last step, from the end of a log of any length
            data = self._tail(folder, problems)
        step = _last_step(data, latest)
        total = config.get("steps") if isinstance(config.get("steps"), int) else None
        updated = _mtime(stats if stats.exists() else folder)
        summary = RunSummary(name, kind, step, total, updated, problems[0] if problems else "")
        report = RunReport(summary, config if isinstance(config, dict) else {}, best=best,
                           problems=problems)
        if not rows:
            return report
        report.rows = data
        report.scalars = _scalars(data)
        report.metrics = _metrics(data)
        report.samples = self._samples(folder, problems)
        return report

    # -- reading, inside the root only

    def _inside(self, path: Path) -> Path:
        assert self.root is not None
        return resolve_under(self.root, path.relative_to(self.root).as_posix())

    def _short(self, text: str, folder: Path | None = None) -> str:
        """A message without the server's folders: paths relative to the run folder, or to
        the runs folder."""
        if folder is not None:
            text = text.replace(f"{folder}{os.sep}", "")
        return text.replace(f"{self.root}{os.sep}", "")

    def _json(self, folder: Path, name: str, problems: list[str], *,
              quiet: bool = False) -> Any:
        path = folder / name
        if not path.exists() and not path.is_symlink():
            return None
        try:
            value = json.loads(self._inside(path).read_text(encoding="utf-8"))
        except InputError as e:
            problems.append(self._short(str(e)))
            return None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            if not quiet:
                problems.append(f"{name}: not valid JSON ({_reason(e)})")
            return None
        if not isinstance(value, dict):
            if not quiet:
                problems.append(f"{name}: not a JSON object")
            return None
        return value

    def _stats(self, folder: Path, problems: list[str]) -> list[dict[str, Any]]:
        from impasto.train.runlog import read_stats

        try:
            return read_stats(self._inside(folder / "stats.jsonl"))
        except InputError as e:  # "stats.jsonl: line 3 is not a JSON object", say
            problems.append(self._short(str(e), folder))
            return []

    def _tail(self, folder: Path, problems: list[str]) -> list[dict[str, Any]]:
        """The last complete row of ``stats.jsonl`` with a step (read from its last
        :data:`TAIL_BYTES`), as a one-row list; empty when there is none."""
        try:
            with self._inside(folder / "stats.jsonl").open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
                lines = f.read().decode("utf-8", errors="replace").split("\n")
        except InputError as e:
            problems.append(self._short(str(e)))
            return []
        except OSError as e:
            problems.append(f"stats.jsonl: cannot read it ({_reason(e)})")
            return []
        for line in reversed(lines[1:] if len(lines) > 1 else lines):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                return [row]
        return []

    def _kind(self, folder: Path, problems: list[str]) -> str:
        """The kind of the run's latest checkpoint (cached by file, time and size)."""
        from impasto._fileutil import load_tensors
        from impasto.train.manager import resolve_checkpoint

        if not any(_is_ckpt(p.name) for p in folder.iterdir()):
            return ""
        try:
            ckpt = self._inside(resolve_checkpoint(folder))
            st = ckpt.stat()
        except (InputError, OSError) as e:
            problems.append(self._short(str(e), folder))
            return ""
        key = (str(ckpt), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._kinds:
                return self._kinds[key]
        try:  # mmap: only the small pickle is read, not the tensors
            kind = load_tensors(ckpt, map_location="cpu", mmap=True).get("kind", "")
        except Exception as e:  # noqa: BLE001  (a damaged checkpoint: one line, go on)
            problems.append(f"{ckpt.name}: unreadable checkpoint ({_reason(e)})")
            return ""
        from impasto.train.modelfile import model_kind

        kind = (model_kind(kind) or kind) if isinstance(kind, str) else ""
        with self._lock:
            self._kinds[key] = kind
        return kind

    def _samples(self, folder: Path, problems: list[str]) -> list[tuple[Path, str]]:
        """The latest ``images/<tag>-<step>.png`` of each tag."""
        images = folder / "images"
        if not images.is_dir():
            return []
        latest: dict[str, tuple[int, Path]] = {}
        for p in images.iterdir():
            m = _SAMPLE.match(p.name)
            if m and (m.group(1) not in latest or int(m.group(2)) > latest[m.group(1)][0]):
                latest[m.group(1)] = (int(m.group(2)), p)
        out = []
        for tag in sorted(latest)[:MAX_SAMPLES]:
            step, p = latest[tag]
            try:
                out.append((self._inside(p), f"{tag}, step {step}"))
            except InputError as e:
                problems.append(self._short(str(e)))
        return out


def plot_curves(rows: list[dict[str, Any]], keys: list[str], out: Path, *,
                title: str = "") -> Path | None:
    """Each scalar of ``keys`` against the step, one small panel each (a log scale where the
    values are positive and span more than two decades; NaN and infinities left out), as a
    PNG at ``out`` (written atomically). None when no key has a value. Needs matplotlib
    (``pip install 'impasto[web]'``): without it, :class:`InputError`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("the loss curves need matplotlib: pip install 'impasto[web]'") from None
    from impasto._fileutil import atomic_open

    series = []
    for key in keys[:MAX_PANELS]:
        pts = [(r["step"], float(r[key])) for r in rows
               if isinstance(r.get("step"), int) and _number(r.get(key))]
        if pts:
            series.append((key, pts))
    if not series:
        return None
    cols = min(3, len(series))
    lines = math.ceil(len(series) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.3 * lines + (0.3 if title else 0)), dpi=80,
                 layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=10)
    for i, (key, pts) in enumerate(series):
        ax = fig.add_subplot(lines, cols, i + 1)
        xs, ys = zip(*pts)
        ax.plot(xs, ys, linewidth=1.2, marker="." if len(pts) < 30 else None)
        if min(ys) > 0 and max(ys) / min(ys) > 100:
            ax.set_yscale("log")
        ax.set_title(f"{key}  (last {ys[-1]:.4g})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
        ax.grid(alpha=0.3)
    with atomic_open(out) as f:
        fig.savefig(f, format="png")
    return out


class TensorBoard:
    """One ``tensorboard --logdir ROOT --host 127.0.0.1 --port N`` process, started on request
    and stopped by :meth:`stop`. ``command``: the program to run before the arguments (default
    this Python's ``-m tensorboard.main``); ``log``: where its output goes."""

    def __init__(self, root: Path | None, log: Path, *, command: list[str] | None = None,
                 timeout: float = 60.0) -> None:
        self.root = root
        self.log = log
        self.command = command or [sys.executable, "-m", "tensorboard.main"]
        self.timeout = timeout
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> str:
        """The URL of TensorBoard on the runs folder, started if it is not running;
        :class:`InputError` (one line) when it cannot start."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None and self.url:
                return self.url
            if self.root is None:
                raise InputError("no runs folder was given (impasto serve --runs DIR)")
            if self.command[1:3] == ["-m", "tensorboard.main"]:
                import importlib.util

                if importlib.util.find_spec("tensorboard") is None:
                    raise InputError("TensorBoard is not installed: pip install tensorboard")
            port = _free_port()
            url = f"http://127.0.0.1:{port}/"
            with self.log.open("wb") as out:
                try:
                    self._proc = subprocess.Popen(
                        [*self.command, "--logdir", str(self.root), "--host", "127.0.0.1",
                         "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL)
                except OSError as e:
                    raise InputError(f"TensorBoard could not start: {_reason(e)}") from None
            deadline = time.monotonic() + self.timeout
            while True:
                if self._proc.poll() is not None:
                    self._proc = None
                    raise InputError(f"TensorBoard could not start: {self._why()}")
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self._stop()
                    raise InputError(f"TensorBoard did not answer within {self.timeout:.0f} s "
                                     f"({self._why()})")
                time.sleep(0.2)
            self.url = url
            return url

    def _why(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        errors = [ln for ln in lines if "rror" in ln] or lines
        return " ".join(errors[-1].split())[:300] if errors else "it printed nothing"

    def stop(self) -> None:
        """Stop TensorBoard, if it runs."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc, self.url = self._proc, None, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _walk(root: Path) -> Any:
    """``os.walk`` of ``root``, :data:`MAX_DEPTH` folders down, links and hidden folders
    skipped."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        yield folder, dirs, files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_ckpt(name: str) -> bool:
    return name.startswith("ckpt-") and name.endswith(".pt")


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _scalars(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("step", "time") and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                seen.setdefault(k)
    return list(seen)


def _metrics(rows: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith(("metric/", "val_")) and isinstance(v, (int, float)) \
                    and isinstance(r.get("step"), int):
                out[k] = (r["step"], float(v))
    return out


def _last_step(rows: list[dict[str, Any]], latest: dict[str, Any]) -> int | None:
    steps = [r["step"] for r in rows if isinstance(r.get("step"), int)]
    saved = latest.get("step") if isinstance(latest.get("step"), int) else None
    candidates = [s for s in (steps[-1] if steps else None, saved) if s is not None]
    return max(candidates) if candidates else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    from impasto._fileutil import reason

    return reason(exc)
