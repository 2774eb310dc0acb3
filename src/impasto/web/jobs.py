"""The studio's job queue: heavy work (a Gatys refinement, a video) runs on at most ``max_jobs``
worker threads; the rest wait in order and know their place in the queue.

A job is a function ``fn(job) -> result`` that reports its progress with :meth:`Job.report`
and polls :meth:`Job.cancelled` (the pipelines' ``abort`` callback); :meth:`Job.cancel` stops a
waiting job at once and a running one at its next poll. When a job ends, the runner drops its
references and calls ``release`` (the studio frees the accelerator's cached memory there).
Nothing here imports torch or gradio.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Job", "JobLimitError", "JobRunner", "JobStatus"]

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
FINISHED = (DONE, CANCELLED, FAILED)


class JobLimitError(Exception):
    """A session asked for more jobs than it may have waiting or running at once."""


@dataclass(frozen=True)
class JobStatus:
    """What a page shows of a job: ``state`` (queued, running, done, cancelled, failed),
    ``position`` (1 = next to start; 0 when not waiting), ``done``/``total`` steps, ``eta``
    (seconds left, None until known), ``elapsed`` seconds, ``message`` and ``error``."""

    state: str
    position: int
    done: int
    total: int
    eta: float | None
    elapsed: float
    message: str
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class Job:
    """One unit of heavy work (see the module doc). ``owner`` names the session that asked."""

    def __init__(self, runner: JobRunner, fn: Callable[[Job], Any], name: str, owner: str,
                 job_id: int) -> None:
        self.id = job_id
        self.name = name
        self.owner = owner
        self._runner = runner
        self._fn: Callable[[Job], Any] | None = fn
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self.state = QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.preview: Any = None
        self.message = ""
        self._done = 0
        self._total = 0
        self._started: float | None = None
        self._ended: float | None = None
        self._rate_from: tuple[float, int] | None = None  # (time, done) where ETA timing began

    # -- called by the job's function

    def report(self, done: int, total: int, *, preview: Any = None, message: str = "") -> None:
        """Progress: ``done`` of ``total`` steps; ``preview`` (an image to show), ``message``."""
        with self._lock:
            now = time.monotonic()
            if self._rate_from is None or done < self._rate_from[1]:
                self._rate_from = (now, done)
            self._done, self._total = done, total
            if preview is not None:
                self.preview = preview
            if message:
                self.message = message

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called: the pipelines' ``abort`` callback."""
        return self._cancel.is_set()

    # -- called by the page

    def cancel(self) -> None:
        """Stop the job: a waiting one never starts; a running one stops at its next poll of
        :meth:`cancelled`."""
        self._cancel.set()
        self._runner._drop_waiting(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout`` seconds); whether it has."""
        return self._finished.wait(timeout)

    def status(self) -> JobStatus:
        with self._lock:
            now = time.monotonic()
            elapsed = 0.0 if self._started is None else (self._ended or now) - self._started
            eta = None
            if self.state == RUNNING and self._rate_from is not None and self._total:
                t0, d0 = self._rate_from
                if self._done > d0 and now > t0:
                    eta = (now - t0) / (self._done - d0) * (self._total - self._done)
            return JobStatus(self.state, self._runner.position(self), self._done, self._total,
                             eta, elapsed, self.message, self.error)

    # -- called by the runner

    def _run(self) -> None:
        with self._lock:
            if self._cancel.is_set():
                self.state = CANCELLED
            else:
                self.state = RUNNING
                self._started = time.monotonic()
        if self.state == RUNNING:
            fn, self._fn = self._fn, None
            try:
                assert fn is not None
                result = fn(self)
                with self._lock:
                    self.result = result
                    self.state = CANCELLED if self._cancel.is_set() else DONE
            except Exception as e:  # noqa: BLE001  (shown in the page, the server goes on)
                with self._lock:
                    self.state = FAILED
                    self.error = " ".join(str(e).split()) or type(e).__name__
            finally:
                fn = None
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._fn = None
            self._ended = time.monotonic()
            if self.state in (QUEUED, RUNNING):
                self.state = CANCELLED
        self._finished.set()


class JobRunner:
    """Runs jobs on at most ``max_jobs`` threads, first come first served; a session (``owner``)
    may have at most ``per_session`` jobs waiting or running. ``release`` is called after every
    job, on its worker thread."""

    def __init__(self, max_jobs: int = 1, *, per_session: int = 2,
                 release: Callable[[], None] | None = None) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, not {max_jobs}")
        self.max_jobs = max_jobs
        self.per_session = per_session
        self._release = release
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: set[Job] = set()
        self._ids = itertools.count(1)
        self._workers: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[[Job], Any], *, name: str = "job", owner: str = "") -> Job:
        """Queue ``fn``; returns its :class:`Job`. Raises :class:`JobLimitError` when
        ``owner`` already has ``per_session`` jobs waiting or running."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the job runner is shut down")
            mine = sum(j.owner == owner for j in (*self._waiting, *self._active))
            if owner and mine >= self.per_session:
                raise JobLimitError(f"this session already has {mine} job(s) waiting or "
                                    "running; wait for one to finish or cancel it")
            job = Job(self, fn, name, owner, next(self._ids))
            self._waiting.append(job)
            if len(self._workers) < self.max_jobs:
                t = threading.Thread(target=self._work, name=f"impasto-job-{len(self._workers)}",
                                     daemon=True)
                self._workers.append(t)
                t.start()
            self._cond.notify()
            return job

    def position(self, job: Job) -> int:
        """1 for the next job to start, 2 for the one after, ...; 0 for a job not waiting."""
        with self._cond:
            for i, j in enumerate(self._waiting):
                if j is job:
                    return i + 1
            return 0

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._active), len(self._waiting)

    def cancel_owner(self, owner: str) -> None:
        """Cancel every job of a session (it has closed)."""
        with self._cond:
            jobs = [j for j in (*self._waiting, *self._active) if j.owner == owner]
        for j in jobs:
            j.cancel()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every job and stop the workers."""
        with self._cond:
            self._closed = True
            jobs = [*self._waiting, *self._active]
            self._cond.notify_all()
        for j in jobs:
            j.cancel()
        for t in self._workers:
            t.join(timeout)

    def _drop_waiting(self, job: Job) -> None:
        with self._cond:
            try:
                self._waiting.remove(job)
            except ValueError:
                return
        job._finish()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed and not self._waiting:
                    return
                job = self._waiting.popleft()
                self._active.add(job)
            try:
                job._run()
            finally:
                with self._cond:
                    self._active.discard(job)
                job = None  # type: ignore[assignment]  (its frames and tensors go now)
                if self._release is not None:
                    self._release()
