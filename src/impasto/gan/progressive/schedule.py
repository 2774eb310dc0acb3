"""The schedule of progressive growing (Karras et al. 2018): phases, stages and α.

Training starts at 4x4 (``start_resolution``) and runs ``stable_kimg`` thousand real images
there; then each next resolution is faded in over ``fade_kimg`` and trained stable for
``stable_kimg``, up to the target, whose stable phase lasts until ``total_kimg`` (by default
``stable_kimg``). The stage is a pure function of the number of real images shown to D (as in
the paper's code), so a resumed run is where it left off. In a fade, α = (images shown in the
fade) / (images of the fade), so it rises linearly from 0 (the first step; a little above 0
when the last step of the previous phase ran past its end) to just below 1; in stable phases
the networks run without the blend. ``batch_sizes`` gives one batch size per resolution from
4x4 (per process under ``torchrun``). :meth:`PgganSchedule.paper` is the paper's (800 + 800
kimg per resolution, batch 16 up to 128x128, then 14, 6, 3); :meth:`PgganSchedule.cpu` a
short one with larger batches at low resolution, for small models on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from impasto.errors import InputError
from impasto.nets.pggan import check_pggan_resolution, pggan_resolutions
from impasto.train.config import check_int as _int
from impasto.train.config import check_number as _number

__all__ = [
    "CPU_BATCH_SIZES",
    "PAPER_BATCH_SIZES",
    "SCHEDULE_PRESETS",
    "Phase",
    "PgganSchedule",
    "Stage",
    "stage_at",
]

#: The paper's batch sizes for 4, 8, ..., 1024 (appendix A.1: 16 up to 128x128, then 14, 6, 3).
PAPER_BATCH_SIZES: tuple[int, ...] = (16, 16, 16, 16, 16, 16, 14, 6, 3)
#: The CPU preset's batch sizes: larger batches where the networks are small (a step at 4x4
#: costs little more with 64 images than with 16), the paper's 16 from 64x64 on.
CPU_BATCH_SIZES: tuple[int, ...] = (64, 64, 32, 32, 16, 16, 8, 4, 2)


class Phase(NamedTuple):
    """One phase of a schedule: images ``[start, start + length)`` (``length`` None: the last
    phase, open-ended), at ``resolution``, ``kind`` ``"stable"`` or ``"fade"``."""

    index: int
    resolution: int
    kind: str
    start: int
    length: int | None
    batch_size: int


@dataclass(frozen=True)
class Stage:
    """Where training stands: the resolution, the phase (``"stable"``/``"fade"``), α (1.0 when
    stable), the index of the phase in the schedule and its batch size."""

    resolution: int
    phase: str
    alpha: float
    phase_index: int
    batch_size: int

    @property
    def fading(self) -> bool:
        return self.phase == "fade"

    @property
    def net_alpha(self) -> float | None:
        """α for :meth:`~impasto.nets.pggan.PgganGenerator.set_stage` (None when stable)."""
        return self.alpha if self.fading else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _kimg(name: str, value: Any) -> None:
    _number(name, value)  # a finite number >= 0


@dataclass
class PgganSchedule:
    """How long each phase lasts and the batch size of each resolution (see the module doc).

    stable_kimg, fade_kimg: thousands of real images per stable and per fade phase (>= 0; 0
        fades skip the blend).
    batch_sizes: one per resolution from 4x4 up to (at least) the target (longer lists are
        fine: the paper's has nine, for 4 to 1024).
    total_kimg: the length of the run; None: the end of the target's first ``stable_kimg``.
        A longer run extends the target's stable phase, a shorter one stops early.
    start_resolution: the resolution training starts at (the paper: 4).
    """

    stable_kimg: float = 800.0
    fade_kimg: float = 800.0
    batch_sizes: tuple[int, ...] = PAPER_BATCH_SIZES
    total_kimg: float | None = None
    start_resolution: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.batch_sizes, list):
            self.batch_sizes = tuple(self.batch_sizes)
        self.validate()

    @classmethod
    def paper(cls) -> PgganSchedule:
        """Karras et al. 2018 (CelebA-HQ): 800 kimg per phase, batch 16 up to 128x128."""
        return cls(800.0, 800.0, PAPER_BATCH_SIZES)

    @classmethod
    def cpu(cls) -> PgganSchedule:
        """A short schedule for small models on a CPU: 20 kimg per phase, batches of 64 at
        4x4 and 8x8, 32 at 16 and 32, 16 at 64 and 128 (the whole 4 -> 64 run is 180 kimg).
        With a fixed EMA decay, pair it with ``ema_beta=0.99`` (see the module doc)."""
        return cls(20.0, 20.0, CPU_BATCH_SIZES)

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) for the first bad value (no target needed)."""
        _kimg("stable_kimg", self.stable_kimg)
        _kimg("fade_kimg", self.fade_kimg)
        if self.total_kimg is not None:
            _number("total_kimg", self.total_kimg, positive=True)
        if not isinstance(self.batch_sizes, tuple) or not self.batch_sizes:
            raise InputError(
                f"batch_sizes must be a list of whole numbers, one per resolution from 4x4, "
                f"not {self.batch_sizes!r}"
            )
        for b in self.batch_sizes:
            _int("every batch size", b, 1)
        check_pggan_resolution(self.start_resolution, "start resolution")

    def check(self, resolution: int) -> None:
        """Check the schedule against the target ``resolution`` (enough batch sizes, a start
        resolution not above it); :class:`InputError` otherwise."""
        self.validate()
        levels = pggan_resolutions(resolution)
        if self.start_resolution > resolution:
            raise InputError(
                f"start resolution {self.start_resolution} is above the target resolution "
                f"{resolution}"
            )
        if len(self.batch_sizes) < len(levels):
            raise InputError(
                f"batch_sizes has {len(self.batch_sizes)} entries for {len(levels)} resolutions "
                f"({levels[0]} to {levels[-1]}); give one batch size per resolution from 4x4"
            )

    def batch_size(self, resolution: int) -> int:
        """The batch size at ``resolution``."""
        return self.batch_sizes[int(math.log2(resolution)) - 2]

    def phases(self, resolution: int) -> list[Phase]:
        """The phases of a run to ``resolution``, in order (zero-length phases left out; the
        last, the target's stable phase, is open-ended)."""
        self.check(resolution)
        stable = round(self.stable_kimg * 1000)
        fade = round(self.fade_kimg * 1000)
        out: list[Phase] = []
        start = 0
        levels = pggan_resolutions(resolution, self.start_resolution)
        for i, r in enumerate(levels):
            bs = self.batch_size(r)
            if i > 0 and fade > 0:
                out.append(Phase(len(out), r, "fade", start, fade, bs))
                start += fade
            last = i == len(levels) - 1
            if last:
                out.append(Phase(len(out), r, "stable", start, None, bs))
            elif stable > 0:
                out.append(Phase(len(out), r, "stable", start, stable, bs))
                start += stable
        return out

    def total_images(self, resolution: int) -> int:
        """Real images of the whole run (``total_kimg``, or up to the end of the target's
        first ``stable_kimg``)."""
        if self.total_kimg is not None:
            return max(1, round(self.total_kimg * 1000))
        last = self.phases(resolution)[-1]
        return max(1, last.start + round(self.stable_kimg * 1000))

    def stage_at(self, images_seen: int, resolution: int) -> Stage:
        """The stage of the step that starts after ``images_seen`` real images."""
        return stage_at(self.phases(resolution), images_seen)

    def total_steps(self, resolution: int, world_size: int = 1, images_seen: int = 0) -> int:
        """Generator steps of the whole run (each shows D one batch per process), or of what
        is left of it after ``images_seen`` real images."""
        phases = self.phases(resolution)
        total = self.total_images(resolution)
        n, steps = int(images_seen), 0
        for p in phases:
            end = total if p.length is None else min(total, p.start + p.length)
            if n >= end:
                continue
            per = p.batch_size * max(1, world_size)
            count = math.ceil((end - n) / per)
            steps += count
            n += count * per
            if n >= total:
                break
        return steps


def stage_at(phases: list[Phase], images_seen: int) -> Stage:
    """The stage of the step that starts after ``images_seen`` real images, in ``phases``
    (:meth:`PgganSchedule.phases`)."""
    for p in phases:
        if p.length is None or images_seen < p.start + p.length:
            if p.kind == "fade":
                assert p.length
                alpha = min(1.0, max(0.0, (images_seen - p.start) / p.length))
            else:
                alpha = 1.0
            return Stage(p.resolution, p.kind, alpha, p.index, p.batch_size)
    raise AssertionError("the last phase is open-ended")


#: Named schedules for the command line (``--schedule``).
SCHEDULE_PRESETS: dict[str, Callable[[], PgganSchedule]] = {
    "paper": PgganSchedule.paper,
    "cpu": PgganSchedule.cpu,
}

