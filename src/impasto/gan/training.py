"""The GAN training loop: a plain function, :func:`train`, driven alike by the CLI, tests and
other front ends through ``progress``/``abort`` callbacks.

One step (one generator update) is, with the phases of :class:`~impasto.gan.losses.GanLoss`::

    for each of d_steps:                       # each on a fresh real batch
        opt_d.zero_grad(); d_step(real, y, z); penalty_step(...); opt_d.step()
    opt_g.zero_grad(); g_step(z, y); opt_g.step()
    ema.update(G)

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
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from impasto.data import make_loader, open_dataset
from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.gan.augment import DiffAugment
from impasto.gan.config import GanTrainConfig
from impasto.gan.losses import GanLoss
from impasto.nets.gan import GanNetConfig, build_gan, sample_latents
from impasto.train import (
    EMA,
    Batches,
    CheckpointManager,
    DistInfo,
    EpochSampler,
    RunLogger,
    agree_across_ranks,
    all_reduce_grads,
    broadcast_buffers,
    check_finite,
    derive_seed,
    gather_rng_states,
    grad_norm,
    load_checkpoint,
    loader_workers,
    resolve_checkpoint,
    restore,
    restore_rng_for_rank,
    save_config,
    training_session,
    wrap_ddp,
)

__all__ = [
    "CHECKPOINT_PREFIX",
    "GanProgress",
    "RunResult",
    "checkpoint_kind",
    "sample_grid_inputs",
    "train",
]

log = logging.getLogger(__name__)

#: Checkpoints are ``<run>/ckpt-<step>.pt``.
CHECKPOINT_PREFIX = "ckpt"

# Independent random streams derived from the seed (and the rank).
_STREAM_LATENTS, _STREAM_AUGMENT, _STREAM_TORCH, _STREAM_DATA, _STREAM_SAMPLES = 1, 2, 3, 4, 5
_STREAM_METRIC = 6


def checkpoint_kind(arch: str) -> str:
    """The ``kind`` of a GAN checkpoint: ``"gan/<arch>"``."""
    return f"gan/{arch}"


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
class RunResult:
    """What :func:`train` returns. The networks are the plain modules (no DDP wrapper)."""

    run: Path
    step: int
    total_steps: int
    images_seen: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    stats: dict[str, float]
    seconds: float
    config: GanTrainConfig
    G: nn.Module = field(repr=False)
    D: nn.Module = field(repr=False)
    G_ema: nn.Module = field(repr=False)
    opt_g: torch.optim.Optimizer = field(repr=False)
    opt_d: torch.optim.Optimizer = field(repr=False)


# --------------------------------------------------------------------------------------------
# small helpers


def _check_resume_fits(ckpt: Mapping[str, Any], net: GanNetConfig) -> None:
    src = ckpt.get("path", "checkpoint")
    saved = (ckpt.get("extra") or {}).get("net")
    if not isinstance(saved, Mapping):
        raise InputError(f"{src}: not a GAN training checkpoint (no network config)")
    want = net.to_dict()
    for key, value in want.items():
        if saved.get(key) != value:
            what = key.replace("_", " ")
            if key == "num_classes":
                raise InputError(
                    f"{src} was trained with {saved.get(key)} classes, but this run has {value} "
                    "(check the data and --conditional)"
                )
            raise InputError(
                f"{src} was trained with {what} {saved.get(key)!r}, not {value!r}; "
                "resume with the same network settings"
            )


def _metric_reference(dataset: Any, n: int, seed: int) -> Tensor:
    """``n`` real images (uint8 ``(n, C, R, R)``), a seeded choice, the same on every resume."""
    g = torch.Generator().manual_seed(derive_seed(seed, _STREAM_METRIC))
    order = torch.randperm(len(dataset), generator=g)[: min(n, len(dataset))]
    return torch.stack([dataset.image_u8(int(i)) for i in order])


class _MetricSettings(Protocol):
    """What :func:`_tracked_metric` reads of a run's config (GAN or progressive GAN)."""

    seed: int
    z_dim: int
    metric: str


@torch.no_grad()
def _tracked_metric(
    G: nn.Module,
    real_u8: Tensor,
    config: _MetricSettings,
    num_classes: int,
    device: torch.device,
    amp: Callable[[], Any] | None,
) -> float:
    """The run's tracked metric (lower is better) of ``G`` against the fixed real images.

    Latents come from their own seeded generator, so measuring draws nothing from the
    training's random streams (a measured run and a resumed one stay identical)."""
    from impasto.metrics.swd import swd

    n = real_u8.shape[0]
    g = torch.Generator(device=device).manual_seed(derive_seed(config.seed, _STREAM_METRIC, 1))
    fakes = []
    was_training = G.training
    G.eval()
    try:
        for start in range(0, n, 64):
            k = min(64, n - start)
            z = sample_latents(k, config.z_dim, g, device=device)
            y = (torch.arange(start, start + k, device=device) % num_classes) if num_classes else None
            with amp() if amp else contextlib.nullcontext():
                x = G(z, y) if y is not None else G(z)
            fakes.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    finally:
        G.train(was_training)
    fake_u8 = torch.cat(fakes)
    if config.metric == "swd":
        return float(swd(real_u8, fake_u8, seed=config.seed)["avg"])
    raise ValueError(f"unknown tracked metric {config.metric!r}")


def sample_grid_inputs(
    config: GanTrainConfig, num_classes: int = 0
) -> tuple[Tensor, Tensor | None]:
    """The fixed latents ``(n_samples, z_dim)`` (CPU) and labels (every class in turn, or None)
    of a run's sample grids: the same at every step and after a resume."""
    g = torch.Generator().manual_seed(derive_seed(config.seed, _STREAM_SAMPLES))
    z = sample_latents(config.n_samples, config.z_dim, g)
    y = torch.arange(config.n_samples) % num_classes if num_classes else None
    return z, y


# --------------------------------------------------------------------------------------------
# the loop


def train(
    config: GanTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[GanProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
) -> RunResult:
    """Train a GAN as ``config`` says; returns a :class:`RunResult` when done or aborted.

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


def _train(  # noqa: C901  (one loop, told in order)
    config: GanTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[GanProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> RunResult:
    t_start = time.perf_counter()
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Path(config.run)
    if run.exists() and not run.is_dir():
        raise InputError(f"{run}: is a file, not a run folder")

    # -- the run folder and the checkpoint to resume, checked before anything is built -------
    kind = checkpoint_kind(config.arch)
    manager = CheckpointManager(
        run, keep_last=config.keep_last, prefix=CHECKPOINT_PREFIX,
        best_metric=config.metric or None, mode="min",
    )
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resolve_checkpoint(resume, prefix=CHECKPOINT_PREFIX), kind=kind)
    elif manager.checkpoints() or (run / "latest.json").exists():
        raise InputError(
            f"{run}: this run folder already holds checkpoints; continue it with "
            f"--resume {run}, or choose another run folder"
        )

    # -- data ------------------------------------------------------------------------------
    dataset = open_dataset(
        config.data,
        resolution=config.resolution,
        channels=config.channels,
        hflip=config.hflip,
        seed=config.seed,
    )
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
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(
        dataset, world_size=world, rank=rank, seed=derive_seed(config.seed, _STREAM_DATA)
    )
    loader = make_loader(
        dataset, config.batch_size, seed=config.seed, num_workers=num_workers, sampler=sampler
    )
    total_steps = config.total_steps(world)

    if ckpt is not None:
        _check_resume_fits(ckpt, net_config)

    # -- networks, optimisers, random streams -------------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    G, D = build_gan(net_config)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    G.to(device=device, memory_format=memory_format)
    D.to(device=device, memory_format=memory_format)
    G.train()
    D.train()
    rampup = None if not config.ema_rampup else max(1, round(config.ema_rampup * 1000))
    ema = EMA(G, beta=config.ema_beta, rampup_images=rampup)
    assert config.betas is not None
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas)
    gen_latents = torch.Generator(device=device)
    gen_latents.manual_seed(derive_seed(config.seed, _STREAM_LATENTS, rank))
    gen_augment = torch.Generator(device=device)
    gen_augment.manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, rank))
    torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))  # penalties' draws
    generators = {"latents": gen_latents, "augment": gen_augment, "loader": loader.generator}
    augment = DiffAugment(config.diffaugment, generator=gen_augment) if config.diffaugment else None

    step, images_seen, epoch, pos = 0, 0, 0, 0
    if ckpt is not None:
        restore(ckpt, {"G": G, "D": D, "G_ema": ema}, {"G": opt_g, "D": opt_d}, rng=False)
        extra = ckpt["extra"]
        step, images_seen = ckpt["step"], ckpt["images_seen"]
        epoch, pos = int(extra.get("epoch", 0)), int(extra.get("pos", 0))
        if not restore_rng_for_rank(ckpt, generators, rank=rank, world_size=world):
            # saved by another number of processes: fresh streams from the next epoch
            for g, stream in ((gen_latents, _STREAM_LATENTS), (gen_augment, _STREAM_AUGMENT)):
                g.manual_seed(derive_seed(config.seed, stream, rank, step))
            torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))
            epoch, pos = epoch + (pos > 0), 0
        if step >= total_steps:
            log.warning("%s is at step %d; the run is %d steps long: nothing to do",
                        ckpt["path"], step, total_steps)
    batches = Batches(loader, sampler, epoch, pos)

    # -- distributed wrappers and the loss phases --------------------------------------------
    G_train: nn.Module = G
    D_train: nn.Module = D
    if info.is_distributed:
        G_train, D_train = wrap_ddp(G, device), wrap_ddp(D, device)
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))
    opts = dict(gp_weight=config.gp_weight, r1_gamma=config.r1_gamma, augment=augment,
                autocast=amp)
    assert config.loss is not None
    loss_d = GanLoss(G, D_train, config.loss, **opts)  # D's phase through DDP(D)
    loss_pen = GanLoss(G, D, config.loss, **opts)  # penalties on the plain D
    loss_g = GanLoss(G_train, D, config.loss, **opts)  # G's phase through DDP(G), D frozen
    penalties = loss_pen.penalties
    d_steps = config.d_steps or 1
    batch_size = config.batch_size

    # -- rank 0: run folder, logs ---------------------------------------------------------------
    logger: RunLogger | None = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.json")
        logger = RunLogger(
            run, tensorboard=config.tensorboard, resume_step=step if ckpt is not None else None
        )
    fixed_z, fixed_y = sample_grid_inputs(config, num_classes)
    fixed_z = fixed_z.to(device)
    fixed_y = fixed_y.to(device) if fixed_y is not None else None
    last_ckpt: Path | None = Path(ckpt["path"]) if ckpt is not None else None

    def save() -> None:
        nonlocal last_ckpt
        extra: dict[str, Any] = {
            "net": net_config.to_dict(),
            "classes": list(dataset.classes) if num_classes else [],
            "epoch": batches.epoch,
            "pos": batches.pos,
            "world_size": world,
            **gather_rng_states(generators, world),  # every rank's, so each resumes its own
        }
        if info.is_main:
            kw = dict(
                kind=kind,
                config=config,
                images_seen=images_seen,
                models={"G": G, "D": D, "G_ema": ema},
                optimizers={"G": opt_g, "D": opt_d},
                extra=extra,
                generators=generators,
            )
            last_ckpt = manager.save(step, **kw)
            if metric_value is not None and metric_step == step:
                if manager.save_best(metric_value, step=step, **kw):
                    log.info("step %d: best %s so far (%.4g)", step, config.metric, metric_value)

    def samples() -> None:
        if logger is None:
            return
        with torch.no_grad():
            images = ema.model(fixed_z, fixed_y)
        nrow = max(1, math.ceil(math.sqrt(config.n_samples)))
        logger.images(step, "samples", images, nrow=nrow, value_range=(-1.0, 1.0), save_png=True)

    def due(every: int) -> bool:
        return every > 0 and step % every == 0

    # -- the tracked metric: fixed real images against G_ema's images from fixed latents ---------
    metric_value: float | None = None
    metric_step = -1
    metric_real: Tensor | None = None
    if config.metric and info.is_main:
        metric_real = _metric_reference(dataset, config.metric_samples, config.seed)

    def measure() -> None:
        nonlocal metric_value, metric_step
        if metric_real is None or logger is None:
            return
        metric_value = _tracked_metric(ema.model, metric_real, config, num_classes, device, amp)
        metric_step = step
        logger.scalars(step, {f"metric/{config.metric}": metric_value})

    stats: dict[str, float] = {}
    rate: float | None = None
    t_log, images_log = time.perf_counter(), images_seen
    start_step = step
    aborted = False
    if progress is not None and info.is_main:
        progress(GanProgress(step, start_step, total_steps, images_seen, batches.epoch, {}, None))

    try:
        while step < total_steps:
            log_now = config.log_every > 0 and (
                (step + 1) % config.log_every == 0 or step + 1 == total_steps
            )
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
                images_seen += batch_size * world
            # -- G phase
            z = sample_latents(batch_size, config.z_dim, gen_latents, device=device)
            opt_g.zero_grad(set_to_none=True)
            stats |= loss_g.g_step(z, y)
            if log_now:
                norms["grad_norm_g"] = grad_norm(G)
            opt_g.step()
            step += 1

            # -- agree across ranks on the losses (for the NaN check and logs) and on abort
            stop = bool(abort()) if abort is not None else False
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            check_finite(stats, step, checkpoint=last_ckpt)
            ema.update(G, images_seen=images_seen)

            # -- rank 0: logs and samples; every rank: checkpoints (they gather RNG states)
            if logger is not None and log_now:
                now = time.perf_counter()
                rate = (images_seen - images_log) / max(now - t_log, 1e-9)
                t_log, images_log = now, images_seen
                logger.scalars(step, {
                    **stats,
                    **norms,
                    "lr_g": opt_g.param_groups[0]["lr"],
                    "lr_d": opt_d.param_groups[0]["lr"],
                    "images_per_s": rate,
                    "kimg": images_seen / 1000.0,
                    "epoch": batches.epoch,
                })
            if due(config.sample_every) or step == total_steps:
                samples()
            measure_now = bool(config.metric) and (
                due(config.metric_every) or step == total_steps or stop
            )
            if measure_now:
                measure()  # rank 0 only
            if due(config.ckpt_every) or step == total_steps or stop or measure_now:
                save()
            if progress is not None and info.is_main:
                progress(GanProgress(
                    step, start_step, total_steps, images_seen, batches.epoch, dict(stats), rate
                ))
            if stop:
                aborted = True
                break
        if info.is_distributed:
            broadcast_buffers(G, D, ema.model)
    finally:
        if logger is not None:
            logger.close()

    return RunResult(
        run=run,
        step=step,
        total_steps=total_steps,
        images_seen=images_seen,
        aborted=aborted,
        checkpoint=last_ckpt if info.is_main else None,
        stats=stats,
        seconds=time.perf_counter() - t_start,
        config=config,
        G=G,
        D=D,
        G_ema=ema.model,
        opt_g=opt_g,
        opt_d=opt_d,
    )
