"""The run skeleton every training loop shares: one :class:`Run` per call of a family's
``train(config, ...)``.

A family writes its data, its networks and its step; the run owns the rest: the run folder
and its refusals, the checkpoint to resume and the state it puts back (with the reseed
fallback when the number of processes changed), ``config.json``, the logger, checkpoints, and
the block that ends every step (agree across ranks, NaN guard, logs, progress, abort)::

    run = Run(config, info, device, kind="gan/dcgan", resume=resume)   # refusals first
    ...                                                # data, networks, optimisers, streams
    run.track(models={"G": G}, optimizers={"G": opt}, generators=generators,
              extra=lambda: {"epoch": batches.epoch, "pos": batches.pos})
    run.restore(reseed=lambda step: ...)               # a fresh run: nothing happens
    batches = Batches(loader, sampler, run.epoch, run.pos)
    with run.session(total_steps):                     # config.json, logger (rank 0)
        run.report(make_progress)                      # the progress callback, before step 1
        while run.step < total_steps:
            stats = ...                                # one optimiser step: tensors or floats
            stop = run.end_step(stats, images=batch_size * world, scalars=lambda: {"lr": lr})
            if run.due(config.sample_every): ...       # the family's own periodic work
            run.checkpoint(force=stop)                 # when due, at the end, on abort
            run.report(make_progress)
            if stop:
                break

Reading a value from the device stalls a GPU until the step's work is done. :meth:`end_step`
therefore reads the losses only every ``read_every`` steps (1 on a CPU, where a read costs
nothing, else the logging interval, or :data:`READ_EVERY` steps when nothing is logged) and at
checkpoints, aborts and the end; nothing else in the step block copies between host and device
(a Python number becomes a device tensor by a fill, not by a blocking copy). Between reads the
NaN guard runs on the device: it remembers the first step whose losses were not finite, and the
next read raises :class:`~impasto.train.NonFiniteLossError` naming that step, before any
checkpoint can be written after it. A checkpoint is also refused when a network's parameters or
buffers hold NaN or infinity (a batch-norm variance can overflow while the losses stay finite).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from impasto.errors import InputError, escape_line
from impasto.train.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint,
    restore,
)
from impasto.train.config import save_config
from impasto.train.distributed import DistInfo
from impasto.train.guard import NonFiniteLossError, check_finite_state
from impasto.train.loop import agree_across_ranks, gather_rng_states, restore_rng_for_rank
from impasto.train.runlog import RunLogger

__all__ = ["Run"]

log = logging.getLogger(__name__)

P = TypeVar("P")

#: Steps between two reads of the losses off a GPU when the run logs nothing (``log_every``
#: 0): the NaN guard's and, under ``torchrun``, an abort's latency.
READ_EVERY = 100


class Run(Generic[P]):
    """The shared part of one training run (see the module doc).

    ``config`` must have ``run`` (the run folder, unless ``run_dir`` is given), ``keep_last``,
    ``log_every``, ``ckpt_every`` and ``tensorboard``. ``kind`` is the checkpoint kind,
    ``"<family>/<arch>"``; checkpoints of the ``legacy_kinds`` (written by older releases) are
    resumed too. ``best_metric``/``mode`` keep ``best.pt`` (see :class:`CheckpointManager`).

    Raises :class:`InputError` before anything is built or written: the run folder is a file,
    it already holds checkpoints and ``resume`` is None, or the checkpoint to resume is missing,
    corrupt or of another kind.
    """

    def __init__(
        self,
        config: Any,
        info: DistInfo,
        device: torch.device,
        *,
        kind: str,
        resume: str | os.PathLike[str] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        prefix: str = "ckpt",
        legacy_kinds: tuple[str, ...] = (),
        best_metric: str | None = None,
        mode: str = "min",
        progress: Callable[[P], None] | None = None,
        abort: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.info = info
        self.device = device
        self.kind = kind
        self.dir = Path(run_dir if run_dir is not None else config.run)
        self._progress = progress
        self._abort = abort
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(escape_line(f"{self.dir}: is a file, not a run folder"))
        self.manager = CheckpointManager(
            self.dir, keep_last=config.keep_last, prefix=prefix, best_metric=best_metric,
            mode=mode,
        )
        self.ckpt: dict[str, Any] | None = None
        if resume is not None:
            ckpt = load_checkpoint(resolve_checkpoint(resume, prefix=prefix))
            if ckpt["kind"] != kind and ckpt["kind"] not in legacy_kinds:
                raise InputError(escape_line(
                    f"{ckpt['path']} is a '{ckpt['kind']}' checkpoint, not '{kind}'"
                ))
            self.ckpt = ckpt
            if info.is_main:  # what a write killed half-way left behind
                remove_stale_temporaries(self.dir)
        elif self.manager.checkpoints() or (self.dir / "latest.json").exists():
            raise InputError(escape_line(
                f"{self.dir}: this run folder already holds checkpoints; continue it with "
                f"--resume {self.dir}, or choose another run folder"
            ))
        #: Optimiser steps done, real images seen (all processes), the data's epoch and the
        #: position in it (from the checkpoint when resuming).
        self.step = 0
        self.images_seen = 0
        self.epoch = 0
        self.pos = 0
        self.start_step = 0
        self.total_steps = 0
        #: The last values read of this step's losses (averaged over processes), and the
        #: images per second over the last logging interval.
        self.stats: dict[str, float] = {}
        self.rate: float | None = None
        self.stopped = False
        self.last_checkpoint: Path | None = Path(self.ckpt["path"]) if self.ckpt else None
        self.logger: RunLogger | None = None
        log_every = int(config.log_every or 0)
        self.read_every = 1 if device.type == "cpu" else (log_every if log_every > 0
                                                          else READ_EVERY)
        self._models: dict[str, nn.Module] = {}
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._generators: dict[str, torch.Generator] = {}
        self._extra: Callable[[], dict[str, Any]] = dict
        self._row: dict[str, float] = {}
        self._pending: tuple[list[str], Tensor] | None = None
        self._bad: tuple[Tensor, Tensor] | None = None  # (first bad step, its loss values)
        self._bad_keys: list[str] = []
        self._stop_asked = False
        self.batches: Any = None
        self._t_log = time.perf_counter()
        self._images_log = 0
        self._t_start = time.perf_counter()

    # -- state ---------------------------------------------------------------------------------

    @property
    def resuming(self) -> bool:
        return self.ckpt is not None

    def track(
        self,
        *,
        models: Mapping[str, Any],
        optimizers: Mapping[str, torch.optim.Optimizer],
        generators: Mapping[str, torch.Generator] | None = None,
        extra: Callable[[], dict[str, Any]] | None = None,
        batches: Any = None,
    ) -> None:
        """What a checkpoint holds: the networks (``nn.Module`` or anything with
        ``state_dict``/``load_state_dict``, an :class:`~impasto.train.EMA`, say), their
        optimisers, the named random streams, and ``extra()``: the family's plain data
        (network config, ...), called at each checkpoint. ``batches`` (a
        :class:`~impasto.train.Batches`, may be set later as :attr:`batches`) gives the data's
        epoch and position, saved in every checkpoint and logged."""
        self._models = dict(models)
        self._optimizers = dict(optimizers)
        self._generators = dict(generators or {})
        if extra is not None:
            self._extra = extra
        if batches is not None:
            self.batches = batches

    def restore(self, *, reseed: Callable[[int], None] | None = None) -> None:
        """Put the checkpoint's state back into the tracked objects (nothing for a fresh run):
        weights, optimisers, ``step``, ``images_seen``, ``epoch``, ``pos`` and this process's
        random streams. A checkpoint written by another number of processes cannot give each
        process its streams: ``reseed(step)`` then seeds them afresh and the data starts from
        the next epoch."""
        ckpt = self.ckpt
        if ckpt is None:
            return
        restore(ckpt, self._models, self._optimizers, rng=False)
        extra = ckpt.get("extra") or {}
        self.step = int(ckpt["step"])
        self.images_seen = int(ckpt.get("images_seen") or 0)
        self.epoch, self.pos = int(extra.get("epoch", 0)), int(extra.get("pos", 0))
        rank, world = self.info.rank, self.info.world_size
        if not restore_rng_for_rank(ckpt, self._generators, rank=rank, world_size=world):
            if reseed is not None:
                reseed(self.step)
            self.epoch, self.pos = self.epoch + (self.pos > 0), 0

    # -- the session ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, total_steps: int) -> Iterator[Run[P]]:
        """The steps of the run: ``config.json`` and the logger on rank 0, closed at the end."""
        self.total_steps = int(total_steps)
        self.start_step = self.step
        self._images_log = self.images_seen
        if self.ckpt is not None and self.step >= self.total_steps:
            log.warning("%s is at step %d; the run is %d steps long: nothing to do",
                        self.ckpt["path"], self.step, self.total_steps)
        if self.info.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.dir / "config.json")
            self.logger = RunLogger(
                self.dir, tensorboard=self.config.tensorboard,
                resume_step=self.step if self.ckpt is not None else None,
            )
        self._t_log = time.perf_counter()
        try:
            yield self
        finally:
            if self.logger is not None:
                self.logger.close()

    @property
    def seconds(self) -> float:
        """Seconds since the run was set up."""
        return time.perf_counter() - self._t_start

    def due(self, every: int | None, *, at_end: bool = True) -> bool:
        """Whether periodic work of interval ``every`` (0: only at the end) is due after this
        step; ``at_end``: also after the last step."""
        return bool(every) and self.step % int(every) == 0 or (
            at_end and self.step >= self.total_steps
        )

    @property
    def logging_now(self) -> bool:
        """Whether this step's losses are logged (every ``log_every`` steps and the last)."""
        return self._logs(self.step)

    @property
    def logging_next(self) -> bool:
        """Whether the next step's losses will be logged: for what a step computes only to
        log it (gradient norms, say) before :meth:`end_step`."""
        return self._logs(self.step + 1)

    def _logs(self, step: int) -> bool:
        every = int(self.config.log_every)
        return every > 0 and (step % every == 0 or step >= self.total_steps)

    # -- the end of a step -----------------------------------------------------------------------

    def end_step(
        self,
        stats: Mapping[str, Tensor | float],
        *,
        images: int = 0,
        scalars: Callable[[], Mapping[str, float]] | None = None,
    ) -> bool:
        """Close one optimiser step: count it (and ``images`` real images, all processes),
        poll ``abort``, check the losses (NaN guard; a read from the device only when due, see
        the module doc), and on logging steps log ``stats`` with ``scalars()`` (the learning
        rate, say), the image rate and the epoch. Returns True when the run must stop (an abort
        on any process); the caller then checkpoints and leaves the loop."""
        self.step += 1
        self.images_seen += int(images)
        stop = bool(self._abort()) if self._abort is not None else False
        keys = list(stats)
        vec = torch.stack([
            v.detach().float().reshape(()).to(self.device) if isinstance(v, Tensor)
            else torch.full((), float(v), device=self.device)  # a fill: no blocking copy
            for v in stats.values()
        ]) if keys else torch.zeros(0, device=self.device)
        self._guard(keys, vec)
        distributed = self.info.is_distributed
        if distributed:  # an abort counts when every process reads (a collective), see below
            stop, self._stop_asked = False, self._stop_asked or stop
        # Every process must read on the same steps: the read is a collective under torchrun.
        read = (stop or self.read_every == 1 or self.step % self.read_every == 0
                or self.step >= self.total_steps or self.logging_now or self._checkpoint_due())
        if not read:
            self._pending = (keys, vec)
            return False
        stop, self._stop_asked = stop or self._stop_asked, False
        self._pending = None
        self.stats, stop = self._read(keys, vec, stop)
        if self.logging_now and self.logger is not None:
            now = time.perf_counter()
            self.rate = (self.images_seen - self._images_log) / max(now - self._t_log, 1e-9)
            self._t_log, self._images_log = now, self.images_seen
            row = {**self.stats, **(scalars() if scalars is not None else {}),
                   "images_per_s": self.rate, "epoch": self.epoch_now()}
            self._row.update(row)
        self.stopped = stop
        return stop

    def epoch_now(self) -> int:
        """The data's epoch: that of :attr:`batches` when set."""
        return int(self.batches.epoch) if self.batches is not None else self.epoch

    def _guard(self, keys: list[str], vec: Tensor) -> None:
        """Remember, on the device, the first step whose losses were not finite."""
        if not keys:
            return
        bad = ~torch.isfinite(vec).all()
        if self._bad is None:
            self._bad = (torch.full((), -1, dtype=torch.long, device=vec.device),
                         torch.zeros_like(vec))
        first, values = self._bad
        if values.shape != vec.shape:  # the set of losses changed: read what was pending
            self._raise_if_bad(keys)
            first, values = torch.full_like(first, -1), torch.zeros_like(vec)
        new = bad & (first < 0)
        self._bad = (first.masked_fill(new, self.step), torch.where(new, vec, values))
        self._bad_keys = keys

    def _raise_if_bad(self, keys: list[str]) -> None:
        if self._bad is None:
            return
        first, values = self._bad
        step = int(first)  # the read
        if step < 0:
            return
        vals = values.cpu().tolist()
        for name, value in zip(self._bad_keys or keys, vals):
            if not math.isfinite(value):
                raise NonFiniteLossError(name, value, step, self.last_checkpoint)

    def _read(self, keys: list[str], vec: Tensor, stop: bool) -> tuple[dict[str, float], bool]:
        self._raise_if_bad(keys)
        stats = dict(zip(keys, vec.double().cpu().tolist()))
        stats, stop = agree_across_ranks(stats, stop, self.device, self.info.is_distributed)
        stats = {k: stats[k] for k in keys}  # the family's order
        bad = [k for k, v in stats.items() if not math.isfinite(v)]
        if bad:  # finite on this process, not on another
            raise NonFiniteLossError(bad[0], stats[bad[0]], self.step, self.last_checkpoint)
        return stats, stop

    def log(self, values: Mapping[str, float]) -> None:
        """Add ``values`` to this step's row of ``stats.jsonl`` (rank 0; written by
        :meth:`report`)."""
        if self.logger is not None:
            self._row.update(values)

    def _checkpoint_due(self) -> bool:
        every = int(self.config.ckpt_every or 0)
        return (every > 0 and self.step % every == 0) or self.step >= self.total_steps

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint(
        self,
        *,
        force: bool = False,
        metric: float | None = None,
        **extra: Any,
    ) -> Path | None:
        """Write a checkpoint when due (every ``ckpt_every`` steps and after the last) or when
        ``force``; every process must call it (it gathers their random streams), rank 0
        writes. ``metric`` also offers it as ``best.pt``. ``extra`` adds plain data to the
        tracked ``extra()``. Returns the path written (rank 0), else None."""
        if not (force or self._checkpoint_due()):
            return None
        return self.save(metric=metric, **extra)

    def save(self, *, metric: float | None = None, **extra: Any) -> Path | None:
        """Write a checkpoint now (see :meth:`checkpoint`). Refused with
        :class:`~impasto.train.NonFiniteLossError` (nothing written) when the losses, ``metric``,
        a number in ``extra`` (an evaluation's loss) or a tracked network's parameters or
        buffers are NaN or infinite: a checkpoint on disk is always a good one."""
        if self._pending is not None:  # losses not read yet: read them first (NaN guard)
            keys, vec = self._pending
            self._pending = None
            self.stats, _ = self._read(keys, vec, False)
        try:
            if metric is not None and not math.isfinite(float(metric)):
                name = self.manager.best_metric or "metric"
                raise NonFiniteLossError(name, float(metric), self.step, self.last_checkpoint)
            bad = _first_non_finite(extra)  # an evaluation's loss, say: val={"val_loss": nan}
            if bad is not None:
                raise NonFiniteLossError(bad[0], bad[1], self.step, self.last_checkpoint)
            for name, model in self._models.items():
                module = getattr(model, "model", model)  # an EMA holds its module
                if isinstance(module, nn.Module):
                    check_finite_state(module, name, self.step, self.last_checkpoint)
        except NonFiniteLossError:
            self.report()  # the step's log row (an evaluation's NaN, say) stays in the logs
            raise
        world = self.info.world_size
        position = ({"epoch": self.batches.epoch, "pos": self.batches.pos}
                    if self.batches is not None else {})
        data = {**self._extra(), **position, **extra, "world_size": world,
                **gather_rng_states(self._generators, world)}
        if not self.info.is_main:
            return None
        kw: dict[str, Any] = dict(
            kind=self.kind, config=self.config, images_seen=self.images_seen,
            models=self._models, optimizers=self._optimizers, extra=data,
            generators=self._generators,
        )
        self.last_checkpoint = self.manager.save(self.step, **kw)
        if metric is not None and self.manager.save_best(metric, step=self.step, **kw):
            log.info("step %d: best %s so far (%.4g)", self.step, self.manager.best_metric,
                     metric)
        return self.last_checkpoint

    # -- progress --------------------------------------------------------------------------------

    def report(self, make_progress: Callable[[Run[P]], P] | None = None) -> None:
        """Write this step's log row (rank 0) and call the ``progress`` callback with
        ``make_progress(run)`` (rank 0). Called once before the first step, and after each."""
        if self._row and self.logger is not None:
            self.logger.scalars(self.step, self._row)
        self._row = {}
        if self._progress is not None and make_progress is not None and self.info.is_main:
            self._progress(make_progress(self))


def _first_non_finite(value: Any, name: str = "") -> tuple[str, float] | None:
    """``(name, value)`` of the first NaN or infinite number in ``value`` (floats and floating
    tensors, inside dicts, lists and tuples; ``name`` is the innermost dict key), else None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_non_finite(item, str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = _first_non_finite(item, name)
            if found is not None:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return name or "value", value
    elif isinstance(value, Tensor) and value.is_floating_point() and value.numel():
        finite = torch.isfinite(value.detach())
        if not bool(finite.all()):
            return name or "value", float(value.detach()[~finite].flatten()[0])
    return None
