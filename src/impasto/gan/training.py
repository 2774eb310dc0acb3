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
    DistInfo,
    EpochSampler,
    all_reduce_grads,
    broadcast_buffers,
    derive_seed,
    grad_norm,
    loader_workers,
    training_session,
    wrap_ddp,
)
from impasto.train.run import Run

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


def _train(
    config: GanTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[GanProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> RunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Run(config, info, device, kind=checkpoint_kind(config.arch), resume=resume,
              prefix=CHECKPOINT_PREFIX, best_metric=config.metric or None, mode="min",
              progress=progress, abort=abort)

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
    if run.ckpt is not None:
        _check_resume_fits(run.ckpt, net_config)

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

    def reseed(step: int) -> None:  # resumed with another number of processes
        for g, stream in ((gen_latents, _STREAM_LATENTS), (gen_augment, _STREAM_AUGMENT)):
            g.manual_seed(derive_seed(config.seed, stream, rank, step))
        torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))

    classes = list(dataset.classes) if num_classes else []
    run.track(models={"G": G, "D": D, "G_ema": ema}, optimizers={"G": opt_g, "D": opt_d},
              generators=generators,
              extra=lambda: {"net": net_config.to_dict(), "classes": classes})
    run.restore(reseed=reseed)
    batches = run.batches = Batches(loader, sampler, run.epoch, run.pos)

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

    fixed_z, fixed_y = sample_grid_inputs(config, num_classes)
    fixed_z = fixed_z.to(device)
    fixed_y = fixed_y.to(device) if fixed_y is not None else None

    def samples() -> None:
        if run.logger is None:
            return
        with torch.no_grad():
            images = ema.model(fixed_z, fixed_y)
        nrow = max(1, math.ceil(math.sqrt(config.n_samples)))
        run.logger.images(run.step, "samples", images, nrow=nrow, value_range=(-1.0, 1.0),
                          save_png=True)

    # -- the tracked metric: fixed real images against G_ema's images from fixed latents ---------
    metric_real: Tensor | None = None
    if config.metric and info.is_main:
        metric_real = _metric_reference(dataset, config.metric_samples, config.seed)

    def measure() -> float | None:
        if metric_real is None:
            return None
        value = _tracked_metric(ema.model, metric_real, config, num_classes, device, amp)
        run.log({f"metric/{config.metric}": value})
        return value

    def progress_info(r: Run[GanProgress]) -> GanProgress:
        return GanProgress(r.step, r.start_step, r.total_steps, r.images_seen, batches.epoch,
                           dict(r.stats), r.rate)

    with run.session(total_steps):
        run.report(progress_info)
        while run.step < total_steps:
            log_now = config.log_every > 0 and (
                (run.step + 1) % config.log_every == 0 or run.step + 1 == total_steps
            )
            norms: dict[str, Tensor] = {}
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

            stop = run.end_step(stats, images=batch_size * d_steps * world, scalars=lambda: {
                **norms, "lr_g": opt_g.param_groups[0]["lr"], "lr_d": opt_d.param_groups[0]["lr"],
                "kimg": run.images_seen / 1000.0,
            })
            ema.update(G, images_seen=run.images_seen)
            if run.due(config.sample_every):
                samples()  # rank 0 only
            value = None
            if config.metric and (run.due(config.metric_every) or stop):
                value = measure()  # rank 0 only
            run.checkpoint(force=stop or bool(config.metric) and (
                run.due(config.metric_every) or stop), metric=value)
            run.report(progress_info)
            if stop:
                break
        if info.is_distributed:
            broadcast_buffers(G, D, ema.model)

    return RunResult(
        run=run.dir,
        step=run.step,
        total_steps=total_steps,
        images_seen=run.images_seen,
        aborted=run.stopped,
        checkpoint=run.last_checkpoint if info.is_main else None,
        stats=run.stats,
        seconds=run.seconds,
        config=config,
        G=G,
        D=D,
        G_ema=ema.model,
        opt_g=opt_g,
        opt_d=opt_d,
    )
