"""The GAN training loop: a plain function, :func:`train`, driven alike by the CLI, tests and
other front ends through ``progress``/``abort`` callbacks.

One step (one generator update) is, with the phases of :class:`~impasto.gan.losses.GanLoss`::

    for each of d_steps:                       # each on a fresh real batch
        opt_d.zero_grad(); d_step(real, y, z); penalty_step(...); opt_d.step()
    opt_g.zero_grad(); g_step(z, y); opt_g.step()
    ema.update(G, images_seen, images)         # G_ema: the weights samples are drawn with

Everything random in a step comes from named :class:`torch.Generator`\\ s (latents,
DiffAugment) and the global torch RNG (the WGAN-GP interpolation), all saved in each
checkpoint; the data order is a function of the seed and the epoch, and a resumed run skips the
batches of the current epoch that were already used. So in deterministic mode ``N`` steps, then
a resume for ``N`` more, give bit-identical weights, optimiser states and RNG states to ``2N``
steps straight.

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process trains on its own shard of every epoch
(an :class:`~impasto.train.EpochSampler`: a DistributedSampler's indices), G and D are wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`, and only rank 0 writes logs, samples and
checkpoints. DDP's gradient hooks fire only for the passes run through the wrapper, so:

* D's main phase runs through ``DDP(D)``: real and fake batches are two forward passes and one
  backward, every parameter receives a gradient, and DDP averages them.
* The penalty phase (WGAN-GP, R1) runs on the plain D: its double backward leaves parameters
  without gradient (the last bias, for one), which DDP cannot reduce; its gradients are
  averaged by one explicit all-reduce instead.
* G's phase runs through ``DDP(G)`` and the plain, frozen D (``GanLoss`` turns off
  ``requires_grad`` on D's parameters, which DDP's reducer must not wait for).
* Buffers (batch-norm statistics, spectral-norm vectors) follow rank 0 at every DDP forward
  (``broadcast_buffers``) and are broadcast from rank 0 once more at the end, so every rank
  returns the same networks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.gan.augment import DiffAugment
from impasto.gan.common import (
    CHECKPOINT_PREFIX,
    STREAM_AUGMENT,
    STREAM_LATENTS,
    MetricTracker,
    check_resume_fits,
    checkpoint_kind,
    log_sample_grid,
    loss_phases,
    place_networks,
    random_streams,
    refuse_output_folder,
    sample_grid_inputs,
    training_data,
    write_model_file,
)
from impasto.gan.config import GanTrainConfig
from impasto.gan.losses import GanLoss
from impasto.nets.gan import build_gan, sample_latents
from impasto.train import (
    Batches,
    DistInfo,
    all_reduce_grads,
    broadcast_buffers,
    grad_norm,
    training_session,
)
from impasto.train.run import Run

__all__ = [
    "CHECKPOINT_PREFIX",
    "GanProgress",
    "GanRunResult",
    "RunResult",
    "checkpoint_kind",
    "sample_grid_inputs",
    "train",
]

log = logging.getLogger(__name__)


@dataclass
class GanProgress:
    """What the ``progress`` callback receives: once before the first step (``stats`` empty)
    and after every step, on rank 0 only."""

    step: int  # generator steps done
    start_step: int  # the step this call of train() started from (0, or the resumed step)
    total_steps: int
    images_seen: int  # real images shown to D, all processes
    epoch: int
    stats: dict[str, float]  # this step's losses (averaged over processes)
    images_per_s: float | None  # over the last log interval


@dataclass
class GanRunResult:
    """What :func:`train` returns. The networks are the plain modules (no DDP wrapper)."""

    run: Path
    step: int
    total_steps: int
    images_seen: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    output: Path | None  # the model file written (config.output; rank 0)
    stats: dict[str, float]
    seconds: float
    config: GanTrainConfig
    G: nn.Module = field(repr=False)
    D: nn.Module = field(repr=False)
    G_ema: nn.Module = field(repr=False)
    opt_g: torch.optim.Optimizer = field(repr=False)
    opt_d: torch.optim.Optimizer = field(repr=False)


#: The old name of :class:`GanRunResult` (kept for one release).
RunResult = GanRunResult


# --------------------------------------------------------------------------------------------
# the loop


def train(
    config: GanTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[GanProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
) -> GanRunResult:
    """Train a GAN as ``config`` says; returns a :class:`GanRunResult` when done or aborted.

    ``resume``: a checkpoint file or a run folder (its latest checkpoint) to continue from,
    exactly where it stopped; its network settings must equal ``config``'s (another
    architecture, a missing, truncated or corrupt file raise :class:`InputError`). Without
    ``resume``, a run folder that already holds checkpoints is refused.

    ``progress(info)`` is called on rank 0 before the first step and after every step (this
    function prints nothing). ``abort()`` is polled after every step; when it returns True (on
    any rank), a checkpoint is written and the function returns with ``aborted=True``.

    Raises :class:`InputError` for bad settings or data before anything is written, and
    :class:`~impasto.train.NonFiniteLossError` when a loss becomes NaN or infinite (nothing is
    saved after it: the last checkpoint stays the last good one).
    """
    if not isinstance(config, GanTrainConfig):
        raise TypeError(f"train expects a GanTrainConfig, not {type(config).__name__}")
    config.validate()
    config = config.resolved()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort)


def _train(
    config: GanTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[GanProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> GanRunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Run(config, info, device, kind=checkpoint_kind(config.arch), resume=resume,
              prefix=CHECKPOINT_PREFIX, best_metric=config.metric or None, mode="min",
              progress=progress, abort=abort)
    refuse_output_folder(config)

    # -- data ------------------------------------------------------------------------------
    dataset, sampler, make_loader = training_data(config, info)
    if config.conditional and dataset.num_classes == 0:
        raise InputError(
            f"{config.data}: the images have no labels; a conditional GAN needs labelled data "
            "(one sub-folder per class, or labels in the array file)"
        )
    if config.conditional and dataset.num_classes < 2:
        raise InputError(f"{config.data}: only one class; a conditional GAN needs two or more")
    num_classes = dataset.num_classes if config.conditional else 0
    net_config = config.net_config(num_classes)
    if config.loss == "wgan-gp" and net_config.d_norm == "batch":
        log.warning("WGAN-GP with batch norm in D: the per-sample penalty is ill-defined; "
                    "consider d_norm 'layer'")
    loader = make_loader(config.batch_size)
    total_steps = config.total_steps(world)
    if run.ckpt is not None:
        check_resume_fits(run.ckpt, net_config)

    # -- networks, optimisers, random streams -------------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    G, D = build_gan(net_config)
    memory_format, ema = place_networks(G, D, config, device)
    assert config.betas is not None
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas)
    generators, reseed = random_streams(
        config.seed, rank, device, {"latents": STREAM_LATENTS, "augment": STREAM_AUGMENT})
    gen_latents, gen_augment = generators["latents"], generators["augment"]
    augment = DiffAugment(config.diffaugment, generator=gen_augment) if config.diffaugment else None
    classes = list(dataset.classes) if num_classes else []
    run.track(models={"G": G, "D": D, "G_ema": ema}, optimizers={"G": opt_g, "D": opt_d},
              generators={**generators, "loader": loader.generator},
              extra=lambda: {"net": net_config.to_dict(), "classes": classes})
    run.restore(reseed=reseed)
    batches = run.batches = Batches(loader, sampler, run.epoch, run.pos)

    # -- the loss phases (through DDP wrappers), the sample grid, the tracked metric -----------
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))
    assert config.loss is not None
    loss_d, loss_pen, loss_g = loss_phases(G, D, info, device, lambda g, d: GanLoss(
        g, d, config.loss, gp_weight=config.gp_weight, r1_gamma=config.r1_gamma,
        augment=augment, autocast=amp))
    penalties = loss_pen.penalties
    d_steps = config.d_steps or 1
    batch_size = config.batch_size

    fixed_z, fixed_y = sample_grid_inputs(config, num_classes)
    fixed_z = fixed_z.to(device)
    fixed_y = fixed_y.to(device) if fixed_y is not None else None
    measure = MetricTracker(run, dataset, config, num_classes, amp)

    def progress_info(r: Run[GanProgress]) -> GanProgress:
        return GanProgress(r.step, r.start_step, r.total_steps, r.images_seen, batches.epoch,
                           dict(r.stats), r.rate)

    with run.session(total_steps):
        run.report(progress_info)
        while run.step < total_steps:
            log_now = run.logging_next
            norms: dict[str, float] = {}
            # -- D phase(s)
            for _ in range(d_steps):
                real, labels = batches.next()
                real = real.to(device, non_blocking=True, memory_format=memory_format)
                y = labels.to(device, non_blocking=True) if num_classes else None
                z = sample_latents(batch_size, config.z_dim, gen_latents, device=device)
                opt_d.zero_grad(set_to_none=True)
                stats = loss_d.d_step(real, y, z)
                if penalties:
                    fake = None
                    if "gp" in penalties:
                        with torch.no_grad(), (amp() if amp else contextlib.nullcontext()):
                            fake = G(z, y) if y is not None else G(z)
                    stats |= loss_pen.penalty_step(real, fake, y)
                    if info.is_distributed:
                        all_reduce_grads(D, world)
                if log_now:
                    norms["grad_norm_d"] = grad_norm(D)
                opt_d.step()
            # -- G phase
            z = sample_latents(batch_size, config.z_dim, gen_latents, device=device)
            opt_g.zero_grad(set_to_none=True)
            stats |= loss_g.g_step(z, y)
            if log_now:
                norms["grad_norm_g"] = grad_norm(G)
            opt_g.step()

            step_images = batch_size * d_steps * world
            stop = run.end_step(stats, images=step_images, scalars=lambda: {
                **norms, "lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"],
                "kimg": run.images_seen / 1000.0,
            })
            ema.update(G, images_seen=run.images_seen, images=step_images)
            if run.due(config.sample_every) and run.logger is not None:
                with torch.no_grad():
                    log_sample_grid(run, ema.model(fixed_z, fixed_y))
            measure_now = bool(config.metric) and (run.due(config.metric_every) or stop)
            value = measure(ema.model) if measure_now else None  # rank 0 only
            run.checkpoint(force=stop or measure_now, metric=value)
            run.report(progress_info)
            if stop:
                break
        if info.is_distributed:
            broadcast_buffers(G, D, ema.model)

    output = write_model_file(run, config)
    return GanRunResult(
        run=run.dir,
        step=run.step,
        total_steps=total_steps,
        images_seen=run.images_seen,
        aborted=run.stopped,
        checkpoint=run.last_checkpoint if info.is_main else None,
        output=output,
        stats=run.stats,
        seconds=run.seconds,
        config=config,
        G=G,
        D=D,
        G_ema=ema.model,
        opt_g=opt_g,
        opt_d=opt_d,
    )
