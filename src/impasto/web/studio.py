"""The studio without its page: sessions and their folders, the job queue, and the handlers that
the page's events call (plain values in, plain values out, errors as :class:`InputError`), so
that tests drive them without a browser.

Each session gets a folder under the studio's temporary folder for what it uploads and makes;
it is removed when the page is closed (:meth:`Studio.end_session`), when the session has been
idle for ``session_ttl`` seconds, and when the server stops.
"""

from __future__ import annotations

import html
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.web.catalog import Catalog, scan
from impasto.web.generate import Sampler, check_interpolation
from impasto.web.jobs import Job, JobRunner, JobStatus
from impasto.web.runs import (
    RunReport,
    RunsBrowser,
    TensorBoard,
    default_scalars,
    plot_curves,
)
from impasto.web.stylize import (
    NEEDS_PAINTING,
    Result,
    StyleRequest,
    Stylizer,
    parse_weights,
    release_memory,
    sample,
)

__all__ = ["Session", "Studio", "StudioOptions", "Style", "default_max_jobs", "parse_seeds",
           "preset_thumbnails", "progress_html", "style_request"]

log = logging.getLogger(__name__)

#: The built-in styles' thumbnails (tools/gen_preset_thumbnails.py writes them).
PRESET_THUMBNAILS = Path(__file__).with_name("presets")


@dataclass(frozen=True)
class Style:
    """One entry of the style menu: ``label``, ``value`` (``"preset:N"``, ``"model:NAME"``
    or ``""`` for the uploaded paintings) and a thumbnail (PIL image or None)."""

    label: str
    value: str
    thumbnail: Any = None


def preset_thumbnails() -> list[tuple[Any, Any]]:
    """(preset, PIL thumbnail) for each built-in instant style."""
    from PIL import Image

    from impasto.style.instant import PRESETS

    out = []
    for name in PRESETS:
        p = PRESETS.get(name)
        path = PRESET_THUMBNAILS / f"{p.index:02d}-{p.name}.jpg"
        out.append((p, Image.open(path) if path.exists() else None))
    return out


def style_request(style: str | None, paintings: Any, weights: str | None, strength: float,
                  size: float, colour: str) -> StyleRequest:
    """A :class:`StyleRequest` from the page's values (``style`` as :class:`Style`'s value)."""
    paintings = list(paintings or [])
    kind, _, name = (style or "").partition(":")
    return StyleRequest(preset=name if kind == "preset" else None,
                        model=name if kind == "model" else None,
                        paintings=paintings if not kind else [],
                        weights=parse_weights(weights, len(paintings)) if not kind else None,
                        strength=float(strength), size=int(size), preserve_color=colour)


def default_max_jobs() -> int:
    """One heavy job per two cores (at least one)."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class StudioOptions:
    """``runs``: the folder of trained models; ``max_jobs``: heavy jobs at once;
    ``per_session``: jobs one session may have waiting or running; ``session_ttl``: seconds
    after which an idle session's files go; ``device``: where the pipelines run."""

    runs: str | os.PathLike[str] | None = None
    max_jobs: int = field(default_factory=default_max_jobs)
    per_session: int = 1
    session_ttl: float = 4 * 3600
    device: str = "auto"
    temp_dir: str | os.PathLike[str] | None = None


@dataclass
class Session:
    """One open page: its folder, its results (newest last) and its current job."""

    key: str
    folder: Path
    results: list[Result] = field(default_factory=list)
    job: Job | None = None
    last_seen: float = field(default_factory=time.monotonic)
    _count: int = 0

    def next_path(self, stem: str) -> Path:
        self._count += 1
        return self.folder / f"{self._count:03d}-{stem}.png"


class Studio:
    """Everything the page needs (see the module doc). ``stylizer``/``sampler`` may be given
    (tests); by default they are built on the catalog of ``options.runs``."""

    def __init__(self, options: StudioOptions | None = None, *, catalog: Catalog | None = None,
                 stylizer: Stylizer | None = None, sampler: Sampler | None = None) -> None:
        self.options = options or StudioOptions()
        if self.options.max_jobs < 1:
            raise InputError(f"--max-jobs must be at least 1, not {self.options.max_jobs}")
        self.catalog = catalog if catalog is not None else scan(self.options.runs)
        self.stylizer = stylizer or Stylizer(self.catalog, device=self.options.device)
        self.sampler = sampler or Sampler(self.catalog, device=self.options.device)
        self.jobs = JobRunner(self.options.max_jobs, per_session=self.options.per_session,
                              release=release_memory)
        self.root = Path(tempfile.mkdtemp(prefix="impasto-studio-",
                                          dir=self.options.temp_dir))
        self.runs = RunsBrowser(self.catalog.root)
        self.tensorboard = TensorBoard(self.catalog.root, self.root / "tensorboard.log")
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- sessions

    def session(self, key: str) -> Session:
        """The session of a page (``key``: gradio's session hash), made on first use; idle
        sessions are swept on the way."""
        now = time.monotonic()
        with self._lock:
            for k, s in list(self._sessions.items()):
                if k != key and now - s.last_seen > self.options.session_ttl:
                    self._drop(k)
            s = self._sessions.get(key)
            if s is None:
                folder = self.root / secrets.token_hex(8)
                folder.mkdir(mode=0o700)
                s = self._sessions[key] = Session(key, folder)
            s.last_seen = now
            return s

    def end_session(self, key: str) -> None:
        """The page was closed: cancel its jobs and remove its files."""
        self.jobs.cancel_owner(key)
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        s = self._sessions.pop(key, None)
        if s is not None:
            if s.job is not None:
                s.job.cancel()
            shutil.rmtree(s.folder, ignore_errors=True)

    def close(self) -> None:
        """Stop every job and TensorBoard, and remove every session's files."""
        self.jobs.shutdown()
        self.tensorboard.stop()
        with self._lock:
            for k in list(self._sessions):
                self._drop(k)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- Stylize

    def styles(self) -> list[Style]:
        """The style menu: the built-in instant styles (with their thumbnails), the per-style
        networks under ``--runs``, and the uploaded paintings (value ``""``)."""
        out = [Style(f"{p.index} {p.name}", f"preset:{p.index}", thumb)
               for p, thumb in preset_thumbnails()]
        for e in self.catalog.of("fast-style"):
            thumb = None
            if e.thumbnail is not None:
                from impasto.io import to_pil

                thumb = to_pil(e.thumbnail.float().div(255.0))
            out.append(Style(e.label, f"model:{e.name}", thumb))
        return out + [Style("your painting(s): upload below", "", None)]

    def warm_up(self) -> None:
        """Load the instant styles' networks now (in the background at start) so that the
        first result comes at once."""
        try:
            self.stylizer.instant()
        except InputError as e:
            log.warning("the instant styles are not available: %s", e)

    def sample_photo(self, key: str, name: str) -> Path:
        """A packaged sample photo written into the session's folder (its name is what the
        metadata records)."""
        from impasto.io import save_image

        s = self.session(key)
        return save_image(sample(name), s.folder / f"{name.split(' ')[0]}.png")

    def stylize_now(self, key: str, content: str | None, req: StyleRequest) -> Result:
        """The result at once, added to the session's gallery."""
        content = _need_content(content)
        s = self.session(key)
        result = self.stylizer.quick(content, Path(content).name, req, s.next_path("instant"))
        s.results.append(result)
        return result

    def start_refine(self, key: str, content: str | None, start: str | None,
                     req: StyleRequest, iterations: int) -> Job:
        """Queue a Gatys refinement from ``start`` (the result shown; None: the photo)."""
        content = _need_content(content)
        req.check()
        if not req.paintings:
            raise InputError(NEEDS_PAINTING)
        s = self.session(key)
        out = s.next_path("refined")

        def work(job: Job) -> Result | None:
            return self.stylizer.refine(job, content, Path(content).name, start, req,
                                        iterations, out)

        s.job = self.jobs.submit(work, name="refine", owner=key)
        return s.job

    def start_video(self, key: str, clip: str | None, req: StyleRequest,
                    temporal: float | None = None) -> Job:
        """Queue the stylisation of a video clip (an .mp4 with its frame rate and sound);
        ``temporal``: the strength of the flow-guided blend against flicker (None: off)."""
        if not clip:
            raise InputError("upload a video clip first")
        req.check()
        from impasto.temporal.blend import temporal_config

        temporal_config(temporal)  # a bad strength or no OpenCV: one line, before queueing
        s = self.session(key)
        out = s.next_path("video").with_suffix(".mp4")

        def work(job: Job) -> Result | None:
            return self.stylizer.video(job, clip, req, out, temporal=temporal)

        s.job = self.jobs.submit(work, name="video", owner=key)
        return s.job

    def finish(self, key: str, job: Job) -> Result | None:
        """The result of a finished refinement, added to the session's gallery."""
        s = self.session(key)
        if s.job is job:
            s.job = None
        result = job.result
        job.result = job.preview = None
        if isinstance(result, Result):
            if result.image is not None:  # pictures go to the session's gallery
                s.results.append(result)
            return result
        return None

    def cancel(self, key: str) -> bool:
        """Cancel the session's job; whether there was one."""
        s = self.session(key)
        if s.job is None:
            return False
        s.job.cancel()
        return True

    # -- Generate

    def gan_choices(self) -> list[str]:
        return [e.name for e in self.catalog.of("gan")]

    def generate(self, key: str, name: str | None, *, seed: int, truncation: float | None,
                 side: int, class_: str | None) -> Path:
        if not name:
            raise InputError("choose a GAN (a model file or run folder under --runs)")
        s = self.session(key)
        return self.sampler.grid(name, seed=seed, truncation=truncation, side=side,
                                 class_=class_, out=s.next_path(f"samples-seed{seed}"))

    def start_interpolation(self, key: str, name: str | None, *, seeds: str | None,
                            frames: int, fps: float, truncation: float | None,
                            class_: str | None, loop: bool) -> Job:
        """Queue an interpolation video (an .mp4 in the session's folder) between ``seeds``
        (``"0, 1, 2"``) of the GAN ``name``."""
        if not name:
            raise InputError("choose a GAN (a model file or run folder under --runs)")
        values = parse_seeds(seeds)
        check_interpolation(values, frames, fps, truncation)
        if class_:
            self.sampler.generator(name).class_index(class_)
        else:
            self.sampler.generator(name)  # a bad name fails now, in the page
        s = self.session(key)
        out = s.next_path(f"interpolation-seeds{'-'.join(map(str, values[:4]))}")
        out = out.with_suffix(".mp4")

        def work(job: Job) -> Result | None:
            path = self.sampler.interpolation(job, name, seeds=values, frames=frames, fps=fps,
                                              truncation=truncation, class_=class_, loop=loop,
                                              out=out)
            if path is None:
                return None
            caption = (f"{frames} frames at {fps:g} fps ({frames / fps:.1f} s), slerp through "
                       f"seeds {', '.join(map(str, values))}" + (", looped" if loop else ""))
            return Result(path, None, "interpolation", caption)

        s.job = self.jobs.submit(work, name="interpolation", owner=key)
        return s.job

    # -- Runs

    def run_view(self, key: str, name: str | None,
                 scalars: list[str] | None = None) -> tuple[RunReport, Path | None]:
        """The run ``name`` under ``--runs`` and its curves (``scalars``; None: the losses and
        metrics) as a PNG in the session's folder (None when there is nothing to draw, or
        matplotlib is missing: then a line in the report's problems)."""
        report = self.runs.report(name)
        keys = default_scalars(report.scalars) if scalars is None else [
            k for k in scalars if k in report.scalars]
        s = self.session(key)
        try:
            curves = plot_curves(report.rows, keys, s.next_path("curves"),
                                 title=report.summary.name)
        except InputError as e:
            report.problems.append(str(e))
            curves = None
        return report, curves


def parse_seeds(text: str | None) -> list[int]:
    """Seeds from the page: ``"0, 1, 2"`` or ``"0 1 2"`` -> ``[0, 1, 2]`` (two at least)."""
    parts = [t for t in (text or "").replace(",", " ").split() if t]
    try:
        seeds = [int(t) for t in parts]
    except ValueError:
        raise InputError(f"seeds must be whole numbers separated by commas, not {text!r}"
                         ) from None
    if len(seeds) < 2:
        raise InputError("give at least two seeds, such as 0, 1")
    if len(seeds) > 64 or any(not 0 <= s < 2**63 for s in seeds):
        raise InputError("give 2 to 64 seeds, whole numbers from 0")
    return seeds


def _need_content(content: str | None) -> str:
    if not content:
        raise InputError("upload a photo or pick a sample first")
    return content


def progress_html(status: JobStatus | None, unit: str = "iterations") -> str:
    """The progress bar and line of a job (what the page shows under the result); ``unit``:
    what its steps are."""
    if status is None:
        return ""
    if status.state == "queued":
        text = f"waiting: place {status.position} in the queue"
    elif status.state == "running":
        eta = "" if status.eta is None else f" · about {_duration(status.eta)} left"
        text = f"{status.done}/{status.total} {unit}{eta} · {status.message}"
    elif status.state == "done":
        text = f"{status.done} {unit} done in {_duration(status.elapsed)}"
    elif status.state == "cancelled":
        text = f"cancelled after {status.done} {unit}; its memory is freed"
    else:
        text = f"failed: {status.error}"
    value = f'value="{status.done}" max="{max(status.total, 1)}"' if status.total else ""
    return (f'<div class="impasto-progress" data-state="{status.state}">'
            f'<progress {value}></progress> <span>{html.escape(text)}</span></div>')


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60} s"
