"""The progressive GAN's training loop, :func:`train`, on the shared run skeleton
(:class:`~impasto.train.run.Run`).

One step is one D step (WGAN-GP + drift, :class:`~impasto.gan.progressive.PgganLoss`) and one G
step at the stage the schedule gives for the real images seen so far; the stage's α blends G's
output, D's input and the reals (:func:`~impasto.gan.progressive.prepare_reals`) alike. At the
first step of every phase both optimisers restart from a fresh Adam state (the official code's
``reset_opt_for_new_lod``; ``reset_optimizers=False`` keeps it), only the parameters the stage
uses are left trainable (the blocks of later resolutions and the toRGB/fromRGB layers of earlier
ones sit idle) and, under ``torchrun``, G and D are wrapped in DDP afresh, so DDP's reducer sees
a gradient for every parameter it tracks. When the batch size changes, the loader of the new
size goes on at the same place in the epoch.

Samples of G_ema at the current stage are written every ``sample_every`` steps and at the end
of every phase, checkpoints every ``ckpt_every`` steps, at the end of every phase, at the end
and on abort. The tracked metric is measured only in the target resolution's stable phase.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from impasto.device import autocast, resolve_device, resolve_precision
from impasto.gan.common import (
    CHECKPOINT_PREFIX,
    STREAM_LATENTS,
    MetricTracker,
    check_resume_fits,
    log_sample_grid,
    loss_phases,
    place_networks,
    random_streams,
    refuse_output_folder,
    sample_grid_inputs,
    training_data,
    write_model_file,
)
from impasto.gan.progressive.config import PgganTrainConfig
from impasto.gan.progressive.loss import PgganLoss, prepare_reals
from impasto.gan.progressive.sampling import CHECKPOINT_KIND
from impasto.gan.progressive.schedule import Stage, stage_at
from impasto.gan.training import GanProgress, GanRunResult
from impasto.nets.gan import sample_latents
from impasto.nets.pggan import PgganGenerator, build_pggan
from impasto.train import (
    Batches,
    DistInfo,
    all_reduce_grads,
    broadcast_buffers,
    grad_norm,
    training_session,
)
from impasto.train.run import Run

__all__ = ["PgganProgress", "PgganRunResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class PgganProgress(GanProgress):
    """What the ``progress`` callback receives (as :class:`~impasto.gan.GanProgress`, and
    the stage): once before the first step (``stats`` empty; the stage is the next step's)
    and after every step (the stage of that step), on rank 0."""

    total_images: int
    resolution: int
    phase: str
    alpha: float
    batch_size: int


@dataclass
class PgganRunResult(GanRunResult):
    """What :func:`train` returns; ``stage`` is the stage of the last step, and the networks
    render at it."""

    stage: Stage


def train(
    config: PgganTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[PgganProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
) -> PgganRunResult:
    """Train a progressive GAN as ``config`` says; returns when the schedule ends or on abort.

    ``resume``: a checkpoint file or run folder to continue exactly where it stopped (the
    network settings must match; the schedule may be changed, e.g. lengthened with
    ``total_kimg``, and then places the stage where the new schedule has it). Without
    ``resume`` a run folder holding checkpoints is refused. ``progress(info)`` is called on
    rank 0 before the first step and after each; ``abort()`` is polled after each step and,
    when True, a checkpoint is written and the run returns with ``aborted=True``.

    Raises :class:`InputError` for bad settings, data or checkpoints before anything is
    written, and :class:`~impasto.train.NonFiniteLossError` when a loss becomes NaN or inf.
    """
    if not isinstance(config, PgganTrainConfig):
        raise TypeError(f"train expects a PgganTrainConfig, not {type(config).__name__}")
    config.validate()
    config = config.resolved()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort)


def _train(
    config: PgganTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[PgganProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> PgganRunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Run(config, info, device, kind=CHECKPOINT_KIND, resume=resume,
              prefix=CHECKPOINT_PREFIX, best_metric=config.metric or None, mode="min",
              progress=progress, abort=abort)
    refuse_output_folder(config)
    net_config = config.net_config()
    if run.ckpt is not None:
        check_resume_fits(run.ckpt, net_config, what="progressive GAN", needs=("stage",))

    # -- the schedule and the data ---------------------------------------------------------------
    schedule = config.schedule
    phases = schedule.phases(config.resolution)
    total_images = schedule.total_images(config.resolution)
    dataset, sampler, make_loader = training_data(config, info)
    # One loader per batch size of the schedule, made now so a batch larger than the data
    # fails before anything is written.
    loaders = {bs: make_loader(bs) for bs in sorted({p.batch_size for p in phases})}

    # -- networks, optimisers, random streams -------------------------------------------------
    torch.manual_seed(config.seed)
    G, D = build_pggan(net_config)
    memory_format, ema = place_networks(G, D, config, device)
    betas = (float(config.betas[0]), float(config.betas[1]))  # Adam refuses (0, 0.99)
    opt_g = torch.optim.Adam(G.parameters(), lr=float(config.lr_g), betas=betas, eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=float(config.lr_d), betas=betas, eps=1e-8)
    generators, reseed = random_streams(config.seed, rank, device, {"latents": STREAM_LATENTS})
    gen_latents = generators["latents"]
    last = stage_at(phases, 0)  # the stage of the last step: saved, and what the nets render
    run.track(models={"G": G, "D": D, "G_ema": ema}, optimizers={"G": opt_g, "D": opt_d},
              generators=generators,
              extra=lambda: {"net": net_config.to_dict(), "stage": last.to_dict()})
    run.restore(reseed=reseed)
    wired = -1  # the phase whose loss objects (and DDP wrappers) are made
    if run.ckpt is not None:
        saved = run.ckpt["extra"]["stage"]
        last = Stage(**{k: saved[k] for k in Stage.__dataclass_fields__})
    prev_phase = last.phase_index if run.ckpt is not None else -1
    total_steps = run.step + schedule.total_steps(config.resolution, world, run.images_seen)

    # -- the loss phases, through DDP wrappers made afresh at every phase ----------------------
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))

    def wire(stage: Stage) -> tuple[PgganLoss, PgganLoss, PgganLoss]:
        """Set the stage, train only its parameters, wrap G and D for DDP; the loss phases."""
        for net in (G, D):
            net.set_stage(stage.resolution, stage.net_alpha)
            net.train_active_only()
        return loss_phases(G, D, info, device, lambda g, d: PgganLoss(
            g, d, gp_weight=config.gp_weight, drift_weight=config.drift_weight, autocast=amp))

    fixed_z = sample_grid_inputs(config)[0].to(device)
    measure = MetricTracker(run, dataset, config, 0, amp)
    shown = stage_at(phases, run.images_seen)  # what progress reports: the next step's stage

    def progress_info(r: Run[PgganProgress]) -> PgganProgress:
        return PgganProgress(
            r.step, r.start_step, r.total_steps, r.images_seen, r.epoch_now(), dict(r.stats),
            r.rate, total_images, shown.resolution, shown.phase, shown.alpha, shown.batch_size,
        )

    def render(G_: nn.Module, stage: Stage) -> PgganGenerator:
        assert isinstance(G_, PgganGenerator)
        G_.set_stage(stage.resolution, stage.net_alpha)
        return G_

    with run.session(total_steps):
        run.report(progress_info)
        while run.step < total_steps:
            stage = stage_at(phases, run.images_seen)
            if stage.phase_index != prev_phase:
                # A new phase: fresh Adam state (the official reset_opt_for_new_lod) and,
                # when the batch size changes, the loader of the new size at the same place.
                if config.reset_optimizers and prev_phase >= 0:
                    opt_g.state.clear()
                    opt_d.state.clear()
                prev_phase = stage.phase_index
            bs = stage.batch_size
            if run.batches is None or run.batches.loader is not loaders[bs]:
                at = (run.batches.epoch, run.batches.pos) if run.batches else (run.epoch, run.pos)
                run.batches = Batches(loaders[bs], sampler, *at)
            if stage.phase_index != wired:
                loss_d, loss_pen, loss_g = wire(stage)
                wired = stage.phase_index
            alpha = stage.net_alpha
            G.set_stage(stage.resolution, alpha)
            D.set_stage(stage.resolution, alpha)
            log_now = run.logging_next
            norms: dict[str, float] = {}

            # -- D phase
            real, _ = run.batches.next()
            real = prepare_reals(real.to(device, non_blocking=True), stage.resolution, alpha)
            real = real.contiguous(memory_format=memory_format)
            z = sample_latents(bs, config.z_dim, gen_latents, device=device)
            opt_d.zero_grad(set_to_none=True)
            stats = loss_d.d_step(real, None, z)
            fake = loss_d.last_fake
            loss_d.last_fake = None
            stats |= loss_pen.penalty_step(real, fake)
            if info.is_distributed:
                all_reduce_grads(D, world)
            if log_now:
                norms["grad_norm_d"] = grad_norm(D)
            opt_d.step()
            # -- G phase
            z = sample_latents(bs, config.z_dim, gen_latents, device=device)
            opt_g.zero_grad(set_to_none=True)
            stats |= loss_g.g_step(z)
            if log_now:
                norms["grad_norm_g"] = grad_norm(G)
            opt_g.step()
            last = shown = stage

            stop = run.end_step(stats, images=bs * world, scalars=lambda: {
                **norms, "resolution": stage.resolution, "alpha": stage.alpha,
                "fading": int(stage.fading), "phase_index": stage.phase_index, "batch_size": bs,
                "lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"],
                "kimg": run.images_seen / 1000.0,
            })
            ema.update(G, images_seen=run.images_seen, images=bs * world)
            done = run.step >= total_steps
            phase_end = done or stage_at(phases, run.images_seen).phase_index != stage.phase_index
            if (run.due(config.sample_every) or phase_end) and run.logger is not None:
                with torch.no_grad():
                    log_sample_grid(run, render(ema.model, stage)(fixed_z))
            # Only the target's stable phase: SWD of lower or fading stages is not comparable.
            measure_now = (
                bool(config.metric) and stage.resolution == config.resolution
                and not stage.fading and (run.due(config.metric_every) or stop)
            )
            value = measure(render(ema.model, stage)) if measure_now else None  # rank 0 only
            run.checkpoint(force=phase_end or stop or measure_now, metric=value)
            run.report(progress_info)
            if stop:
                break
        if info.is_distributed:
            broadcast_buffers(G, D, ema.model)

    for net in (G, D, ema.model):
        net.set_stage(last.resolution, last.net_alpha)  # type: ignore[operator]
    G.requires_grad_(True)
    D.requires_grad_(True)
    output = write_model_file(run, config)
    return PgganRunResult(
        run=run.dir, step=run.step, total_steps=total_steps, images_seen=run.images_seen,
        aborted=run.stopped, checkpoint=run.last_checkpoint if info.is_main else None,
        output=output,
        stats=run.stats, seconds=run.seconds, config=config, stage=last,
        G=G, D=D, G_ema=ema.model, opt_g=opt_g, opt_d=opt_d,
    )
