"""Progressive growing of GANs (Karras et al. 2018): the schedule, the loss, the training loop.

::

    from impasto.gan.progressive import PgganSchedule, PgganTrainConfig, train

    config = PgganTrainConfig(data="faces/", run="runs/pg", resolution=64, channels=1,
                              widths=(128, 128, 64, 32, 16), schedule=PgganSchedule.cpu())
    result = train(config, progress=print)             # returns when the schedule is done
    train(config, resume="runs/pg")                    # or continue a stopped run exactly

**Schedule** (:class:`PgganSchedule`). Training starts at 4x4 (``start_resolution``) and runs
``stable_kimg`` thousand real images there; then each next resolution is faded in over
``fade_kimg`` and trained stable for ``stable_kimg``, up to the target, whose stable phase lasts
until ``total_kimg`` (by default ``stable_kimg``). The stage is a pure function of the number
of real images shown to D (as in the paper's code), so a resumed run is where it left off. In a
fade, α = (images shown in the fade) / (images of the fade), so it rises linearly from 0 (the
first step; a little above 0 when the last step of the previous phase ran past its end) to
just below 1; in stable phases the networks run without the blend. ``batch_sizes`` gives one
batch size per resolution from 4x4 (per process under ``torchrun``). :meth:`PgganSchedule.paper`
is the paper's (800 + 800 kimg per resolution, batch 16 up to 128x128, then 14, 6, 3);
:meth:`PgganSchedule.cpu` a short one with larger batches at low resolution, for small models
on a CPU.

**Reals** follow the same fade (:func:`prepare_reals`): the data are read at the target
resolution, box-filtered down to the current one and, during a fade, blended by α with their
2x box-downsampled, nearest-upsampled versions, exactly as G's output is blended.

**Loss** (:class:`PgganLoss`): WGAN-GP with λ = 10 (Gulrajani et al. 2017) plus the drift
term ``0.001 * E[D(x)^2]`` on the real scores, one D step per G step; Adam with β = (0, 0.99),
learning rate 1e-3 for both networks; an EMA of G's weights with β = 0.999 for samples.
That average spans about 1000 steps: right for the paper's phases (~50,000 steps each), too
long for short CPU schedules, where it is still mostly the random initial weights of the block
just faded in; there use ``ema_beta=0.99`` (measured on the Olivetti faces at 8x8: after 120
kimg the raw G and the 0.99-EMA made faces, the 0.999-EMA noise).

**Optimiser state when a resolution is added.** The official code
(``tkarras/progressive_growing_of_gans``, ``train.py``, ``reset_opt_for_new_lod=True``) resets
both optimisers' internal state (Adam's moment estimates) whenever the level of detail crosses
an integer, that is at the start of every fade *and* of every stable phase: the new layers
change the gradient statistics the moments describe. impasto does the same (fresh Adam state at
the first step of every phase; ``reset_optimizers=False`` keeps it instead). The official code
checks the schedule every 4 minibatches (``minibatch_repeats``); here α and the phase are
updated at every step.

**Runtime** as :func:`impasto.gan.train`: bf16 autocast (``precision``; the gradient penalty
and every loss in float32), channels_last, deterministic mode, DDP under ``torchrun`` (rank 0
logs and checkpoints; at every phase change only the parameters the stage uses are left
trainable (:meth:`~impasto.nets.pggan.PgganGenerator.train_active_only`: the blocks of later
resolutions and the toRGB/fromRGB layers of earlier ones sit idle) and G and D are wrapped in
DDP afresh, so DDP's reducer sees a gradient for every parameter it tracks), exact resume,
a NaN guard, ``stats.jsonl`` and TensorBoard with the resolution, α, the phase and the batch
size, and a sample grid of the EMA generator at the current resolution (at every
``sample_every`` steps and at the end of every phase).

**Checkpoints** (``kind`` ``"gan/pggan"``) hold G, D, the EMA of G, both optimisers, images
seen, every RNG state, the config, the format version and, in ``extra``: the network config,
the stage of the last step (resolution, phase, α, phase index, batch size) and the data
position. They are written atomically at ``ckpt_every`` steps, at the end of every phase, at
the end and on abort; the last ``keep_last`` are kept.

**The tracked metric** (``metric="swd"``, as :class:`~impasto.gan.GanTrainConfig`'s): the
multi-scale SWD between ``metric_samples`` images of G_ema (fixed latents, 8-bit) and as many
fixed real images (a seeded choice), logged as ``metric/swd``; ``best.pt`` (with ``best.json``)
keeps the checkpoint of the lowest value. SWD needs images of at least 16x16, and values at
different resolutions are not comparable (the pyramid has another number of levels, the images
another amount of detail), so it is measured only while the stage is the target resolution,
stable: at every ``metric_every`` steps and at the end of the run (a run that stops before
that phase measures nothing; the fades and lower resolutions are never measured). Measuring
draws from its own seeded generators only (rank 0 measures; every rank makes the same
checkpoint calls), so a run gives the same weights with and without it, and a resume keeps
``best.json``'s best value.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.data import make_loader, open_dataset
from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.gan.config import check_run_fields
from impasto.gan.losses import GanLoss, d_loss_wgan
from impasto.gan.training import _metric_reference, _tracked_metric
from impasto.nets.gan import sample_latents
from impasto.nets.pggan import (
    PgganGenerator,
    PgganNetConfig,
    build_pggan,
    check_pggan_resolution,
    downsample2x,
    pggan_resolutions,
    upsample2x,
)
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
from impasto.train.config import check_bool as _bool
from impasto.train.config import check_data_and_run
from impasto.train.config import check_int as _int
from impasto.train.config import check_number as _number

__all__ = [
    "CHECKPOINT_KIND",
    "PAPER_BATCH_SIZES",
    "SCHEDULE_PRESETS",
    "Phase",
    "PgganLoss",
    "PgganProgress",
    "PgganRunResult",
    "PgganSchedule",
    "PgganTrainConfig",
    "Stage",
    "generator_from_checkpoint",
    "prepare_reals",
    "reached_resolutions",
    "train",
]

log = logging.getLogger(__name__)

#: The ``kind`` of progressive GAN checkpoints.
CHECKPOINT_KIND = "gan/pggan"
CHECKPOINT_PREFIX = "ckpt"

#: The paper's batch sizes for 4, 8, ..., 1024 (appendix A.1: 16 up to 128x128, then 14, 6, 3).
PAPER_BATCH_SIZES: tuple[int, ...] = (16, 16, 16, 16, 16, 16, 14, 6, 3)
#: The CPU preset's batch sizes: larger batches where the networks are small (a step at 4x4
#: costs little more with 64 images than with 16), the paper's 16 from 64x64 on.
CPU_BATCH_SIZES: tuple[int, ...] = (64, 64, 32, 32, 16, 16, 8, 4, 2)

# Random streams (as in impasto.gan.training).
_STREAM_LATENTS, _STREAM_TORCH, _STREAM_DATA, _STREAM_SAMPLES = 1, 3, 4, 5
# The smallest image side SWD measures (impasto.metrics.swd.MIN_RESOLUTION; not imported here,
# so that reading a config does not load the metrics package).
_SWD_MIN_RESOLUTION = 16


# --------------------------------------------------------------------------------------------
# the schedule


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
        Pair it with ``ema_beta=0.99`` (see the module doc)."""
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
        return _stage_at(self.phases(resolution), images_seen)

    def total_steps(self, resolution: int, world_size: int = 1) -> int:
        """Generator steps of the whole run (each shows D one batch per process)."""
        phases = self.phases(resolution)
        total = self.total_images(resolution)
        n = steps = 0
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


def _stage_at(phases: list[Phase], images_seen: int) -> Stage:
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


# --------------------------------------------------------------------------------------------
# the config


@dataclass
class PgganTrainConfig:
    """Settings of a progressive GAN run, saved as ``config.json`` in the run folder.

    Data and networks: ``data``, ``run`` (as :class:`~impasto.gan.GanTrainConfig`),
    ``resolution`` (the target, a power of two from 4 to 1024; the data are read at it),
    ``channels`` (1 or 3), ``z_dim``, ``widths`` (feature maps per resolution from 4x4; None:
    the paper's ``min(fmap_base / (r / 2), fmap_max)``), ``fmap_base``, ``fmap_max``,
    ``mbstd_group_size`` (0 or 1: off).

    Schedule: ``schedule`` (:class:`PgganSchedule`).

    Objective and optimiser (the paper's values): ``gp_weight`` 10, ``drift_weight`` 0.001,
    ``lr_g`` = ``lr_d`` = 1e-3, ``betas`` (0, 0.99), ``reset_optimizers`` (fresh Adam state at
    every phase, as the official code), ``ema_beta`` 0.999, ``ema_rampup`` (None, or kimg over
    which the EMA decay ramps up from 0).

    Runtime and logging as :class:`~impasto.gan.GanTrainConfig`: ``hflip``, ``precision``,
    ``channels_last``, ``deterministic``, ``seed``, ``device``, ``num_workers``,
    ``log_every``, ``sample_every``, ``ckpt_every``, ``keep_last``, ``n_samples``,
    ``tensorboard``. ``arch`` is always ``"pggan"`` (it tells run folders apart).

    Tracked metric as :class:`~impasto.gan.GanTrainConfig`: ``metric`` (``""`` off, or
    ``"swd"``; needs a target resolution of at least 16), ``metric_every`` (steps; 0: at the
    end only), ``metric_samples``. It is measured only in the target resolution's stable phase
    (see the module doc).
    """

    data: str = ""
    run: str = "runs/pggan"
    resolution: int = 64
    channels: int = 3
    arch: str = "pggan"
    z_dim: int = 512
    widths: tuple[int, ...] | None = None
    fmap_base: int = 8192
    fmap_max: int = 512
    mbstd_group_size: int = 4
    schedule: PgganSchedule = field(default_factory=PgganSchedule.paper)
    gp_weight: float = 10.0
    drift_weight: float = 0.001
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    reset_optimizers: bool = True
    ema_beta: float = 0.999
    ema_rampup: float | None = None
    hflip: bool = False
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_last: int = 3
    n_samples: int = 64
    tensorboard: bool = True
    metric: str = ""
    metric_every: int = 0
    metric_samples: int = 512

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)  # type: ignore[assignment]
        if isinstance(self.widths, list):
            self.widths = tuple(self.widths)
        if isinstance(self.schedule, Mapping):
            self.schedule = PgganSchedule(**self.schedule)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) for the first bad value; does no I/O."""
        check_data_and_run(self)
        if self.arch != "pggan":
            raise InputError(f"a PgganTrainConfig trains arch 'pggan', not {self.arch!r}")
        self.net_config()  # resolution, channels, widths, z_dim, ...
        if not isinstance(self.schedule, PgganSchedule):
            raise InputError(f"schedule must be a PgganSchedule, not {self.schedule!r}")
        self.schedule.check(self.resolution)
        _number("gp_weight", self.gp_weight)
        _number("drift_weight", self.drift_weight)
        _number("lr_g", self.lr_g, positive=True)
        _number("lr_d", self.lr_d, positive=True)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise InputError(f"betas must be two numbers (beta1, beta2), not {self.betas!r}")
        for i, b in enumerate(self.betas):
            _number(f"betas[{i}]", b, below=1.0)
        _bool("reset_optimizers", self.reset_optimizers)
        _number("ema_beta", self.ema_beta, below=1.0)
        if self.ema_rampup is not None:
            _number("ema_rampup", self.ema_rampup)
        check_run_fields(self)
        if self.metric == "swd" and self.resolution < _SWD_MIN_RESOLUTION:
            raise InputError(
                f"metric 'swd' needs a target resolution of at least {_SWD_MIN_RESOLUTION}, "
                f"not {self.resolution}"
            )

    def net_config(self) -> PgganNetConfig:
        """The networks' :class:`~impasto.nets.pggan.PgganNetConfig`."""
        return PgganNetConfig(
            resolution=self.resolution, channels=self.channels, z_dim=self.z_dim,
            widths=self.widths, fmap_base=self.fmap_base, fmap_max=self.fmap_max,
            mbstd_group_size=self.mbstd_group_size,
        )


# --------------------------------------------------------------------------------------------
# reals and the loss


def prepare_reals(real: Tensor, resolution: int, alpha: float | None = None) -> Tensor:
    """Real images ``(N, C, T, T)`` (the dataset's resolution ``T``) as D sees them at a stage:
    box-filtered down to ``(N, C, R, R)`` and, when fading (``alpha`` not None), blended
    ``lerp(up(down(x)), x, alpha)`` with their 2x box-downsampled, nearest-upsampled versions
    (the paper's code, ``process_reals``). ``alpha=1`` gives the plain downsampled images,
    ``alpha=0`` the previous resolution's, upsampled."""
    factor = real.shape[-1] // resolution
    if factor * resolution != real.shape[-1] or real.shape[-1] != real.shape[-2]:
        raise InputError(
            f"cannot bring images of {real.shape[-2]}x{real.shape[-1]} to {resolution}x{resolution}"
        )
    x = F.avg_pool2d(real, factor) if factor > 1 else real
    if alpha is not None:
        x = torch.lerp(upsample2x(downsample2x(x)), x, float(alpha))
    return x


class PgganLoss(GanLoss):
    """The paper's objective as the phases of :class:`~impasto.gan.GanLoss`: WGAN-GP (kind
    ``"wgan-gp"``, weight ``gp_weight``) plus the drift term ``drift_weight * E[D(x)^2]`` on
    the real scores, added to D's main phase (Karras et al. 2018, appendix A.1; the official
    code's ``wgan_epsilon``).

    :meth:`d_step` also keeps the fake batch it made as :attr:`last_fake` (detached), so the
    penalty phase need not run G again.
    """

    def __init__(self, G: nn.Module, D: nn.Module, *, gp_weight: float = 10.0,
                 drift_weight: float = 0.001, autocast: Callable[[], Any] | None = None) -> None:
        super().__init__(G, D, "wgan-gp", gp_weight=gp_weight, autocast=autocast)
        self.drift_weight = float(drift_weight)
        self.last_fake: Tensor | None = None

    def d_step(self, real: Tensor, y: Tensor | None = None, z: Tensor | None = None
               ) -> dict[str, float]:
        """D's loss ``mean(D(G(z))) - mean(D(x)) + drift_weight * mean(D(x)^2)``; backward.
        Returns ``d_loss``, ``d_real``, ``d_fake`` and ``drift`` (``mean(D(x)^2)``)."""
        z = self._latents(z, real.shape[0], real.device)
        with self._ctx():
            with torch.no_grad():
                fake = self.G(z) if y is None else self.G(z, y)
            real_logits = self.run_D(real, y)
            fake_logits = self.run_D(fake.detach(), y)
        drift = real_logits.float().square().mean()
        loss = d_loss_wgan(real_logits, fake_logits) + self.drift_weight * drift
        loss.backward()
        self.last_fake = fake.detach()
        stats = torch.stack([
            loss.detach(), real_logits.detach().float().mean(),
            fake_logits.detach().float().mean(), drift.detach(),
        ]).tolist()
        return dict(zip(("d_loss", "d_real", "d_fake", "drift"), stats))


# --------------------------------------------------------------------------------------------
# progress and results


@dataclass
class PgganProgress:
    """What the ``progress`` callback receives: once before the first step (``stats`` empty;
    the stage is the next step's) and after every step (the stage of that step), on rank 0."""

    step: int
    start_step: int
    total_steps: int
    images_seen: int
    total_images: int
    epoch: int
    resolution: int
    phase: str
    alpha: float
    batch_size: int
    stats: dict[str, float]
    images_per_s: float | None


@dataclass
class PgganRunResult:
    """What :func:`train` returns; ``stage`` is the stage of the last step."""

    run: Path
    step: int
    total_steps: int
    images_seen: int
    aborted: bool
    checkpoint: Path | None
    stats: dict[str, float]
    seconds: float
    config: PgganTrainConfig
    stage: Stage
    G: PgganGenerator = field(repr=False)
    D: nn.Module = field(repr=False)
    G_ema: PgganGenerator = field(repr=False)
    opt_g: torch.optim.Optimizer = field(repr=False)
    opt_d: torch.optim.Optimizer = field(repr=False)


# --------------------------------------------------------------------------------------------
# the loop


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
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort)


def _check_resume_fits(ckpt: Mapping[str, Any], net: PgganNetConfig) -> None:
    src = ckpt.get("path", "checkpoint")
    extra = ckpt.get("extra") or {}
    saved = extra.get("net")
    if not isinstance(saved, Mapping) or not isinstance(extra.get("stage"), Mapping):
        raise InputError(f"{src}: not a progressive GAN training checkpoint (no network config)")
    for key, value in net.to_dict().items():
        have = saved.get(key)
        if isinstance(have, tuple):
            have = list(have)
        if have != value:
            raise InputError(
                f"{src} was trained with {key.replace('_', ' ')} {have!r}, not {value!r}; "
                "resume with the same network settings"
            )


def _train(  # noqa: C901  (one loop, told in order)
    config: PgganTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[PgganProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> PgganRunResult:
    t_start = time.perf_counter()
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Path(config.run)
    if run.exists() and not run.is_dir():
        raise InputError(f"{run}: is a file, not a run folder")

    # -- the run folder and the checkpoint to resume ------------------------------------------
    manager = CheckpointManager(
        run, keep_last=config.keep_last, prefix=CHECKPOINT_PREFIX,
        best_metric=config.metric or None, mode="min",
    )
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(
            resolve_checkpoint(resume, prefix=CHECKPOINT_PREFIX), kind=CHECKPOINT_KIND
        )
    elif manager.checkpoints() or (run / "latest.json").exists():
        raise InputError(
            f"{run}: this run folder already holds checkpoints; continue it with "
            f"--resume {run}, or choose another run folder"
        )
    net_config = config.net_config()
    if ckpt is not None:
        _check_resume_fits(ckpt, net_config)

    # -- the schedule and the data ---------------------------------------------------------------
    schedule = config.schedule
    phases = schedule.phases(config.resolution)
    total_images = schedule.total_images(config.resolution)
    total_steps = schedule.total_steps(config.resolution, world)
    dataset = open_dataset(
        config.data, resolution=config.resolution, channels=config.channels,
        hflip=config.hflip, seed=config.seed,
    )
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(
        dataset, world_size=world, rank=rank, seed=derive_seed(config.seed, _STREAM_DATA)
    )
    # One loader per batch size of the schedule, made now so a batch larger than the data
    # fails before anything is written.
    loaders = {
        bs: make_loader(dataset, bs, seed=config.seed, num_workers=num_workers, sampler=sampler)
        for bs in sorted({p.batch_size for p in phases})
    }

    # -- networks, optimisers, random streams -------------------------------------------------
    torch.manual_seed(config.seed)
    G, D = build_pggan(net_config)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    G.to(device=device, memory_format=memory_format)
    D.to(device=device, memory_format=memory_format)
    G.train()
    D.train()
    rampup = None if not config.ema_rampup else max(1, round(config.ema_rampup * 1000))
    ema = EMA(G, beta=config.ema_beta, rampup_images=rampup)

    betas = (float(config.betas[0]), float(config.betas[1]))  # Adam refuses (0, 0.99)

    def optimizers() -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return (
            torch.optim.Adam(G.parameters(), lr=float(config.lr_g), betas=betas, eps=1e-8),
            torch.optim.Adam(D.parameters(), lr=float(config.lr_d), betas=betas, eps=1e-8),
        )

    opt_g, opt_d = optimizers()
    gen_latents = torch.Generator(device=device)
    gen_latents.manual_seed(derive_seed(config.seed, _STREAM_LATENTS, rank))
    torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))  # the penalty's draws
    generators = {"latents": gen_latents}

    step, images_seen, epoch, pos, prev_phase = 0, 0, 0, 0, -1
    last_stage = _stage_at(phases, 0)
    if ckpt is not None:
        restore(ckpt, {"G": G, "D": D, "G_ema": ema}, {"G": opt_g, "D": opt_d}, rng=False)
        extra = ckpt["extra"]
        step, images_seen = ckpt["step"], ckpt["images_seen"]
        epoch, pos = int(extra.get("epoch", 0)), int(extra.get("pos", 0))
        saved_stage = extra["stage"]
        prev_phase = int(saved_stage.get("phase_index", -1))
        last_stage = Stage(**{k: saved_stage[k] for k in Stage.__dataclass_fields__})
        if not restore_rng_for_rank(ckpt, generators, rank=rank, world_size=world):
            # saved by another number of processes: fresh streams from the next epoch
            gen_latents.manual_seed(derive_seed(config.seed, _STREAM_LATENTS, rank, step))
            torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))
            epoch, pos = epoch + (pos > 0), 0
        if images_seen >= total_images:
            log.warning("%s has seen %d images; the run is %d long: nothing to do",
                        ckpt["path"], images_seen, total_images)

    # -- the loss phases, through DDP wrappers made afresh at every phase ----------------------
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))
    opts = dict(gp_weight=config.gp_weight, drift_weight=config.drift_weight, autocast=amp)

    def wire(stage: Stage) -> tuple[PgganLoss, PgganLoss, PgganLoss]:
        """Set the stage, train only its parameters, wrap G and D for DDP; the loss phases."""
        for net in (G, D):
            net.set_stage(stage.resolution, stage.net_alpha)
            net.train_active_only()
        G_train: nn.Module = G
        D_train: nn.Module = D
        if info.is_distributed:
            G_train, D_train = wrap_ddp(G, device), wrap_ddp(D, device)
        return (
            PgganLoss(G, D_train, **opts),  # D's phase through DDP(D)
            PgganLoss(G, D, **opts),  # the penalty on the plain D
            PgganLoss(G_train, D, **opts),  # G's phase through DDP(G), D frozen
        )

    wired = -1

    # -- rank 0: run folder, logs ---------------------------------------------------------------
    logger: RunLogger | None = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.json")
        logger = RunLogger(
            run, tensorboard=config.tensorboard, resume_step=step if ckpt is not None else None
        )
    g_fixed = torch.Generator().manual_seed(derive_seed(config.seed, _STREAM_SAMPLES))
    fixed_z = sample_latents(config.n_samples, config.z_dim, g_fixed).to(device)
    last_ckpt: Path | None = Path(ckpt["path"]) if ckpt is not None else None
    batches: Batches | None = None

    def save() -> None:
        nonlocal last_ckpt
        data_at = batches if batches is not None else None
        extra: dict[str, Any] = {
            "net": net_config.to_dict(),
            "stage": last_stage.to_dict(),
            "epoch": data_at.epoch if data_at is not None else epoch,
            "pos": data_at.pos if data_at is not None else pos,
            "world_size": world,
            **gather_rng_states(generators, world),
        }
        if info.is_main:
            kw = dict(
                kind=CHECKPOINT_KIND, config=config, images_seen=images_seen,
                models={"G": G, "D": D, "G_ema": ema}, optimizers={"G": opt_g, "D": opt_d},
                extra=extra, generators=generators,
            )
            last_ckpt = manager.save(step, **kw)
            if metric_value is not None and metric_step == step:
                if manager.save_best(metric_value, step=step, **kw):
                    log.info("step %d: best %s so far (%.4g)", step, config.metric, metric_value)

    def samples() -> None:
        if logger is None:
            return
        net = ema.model
        assert isinstance(net, PgganGenerator)
        net.set_stage(last_stage.resolution, last_stage.net_alpha)
        with torch.no_grad():
            images = net(fixed_z)
        nrow = max(1, math.ceil(math.sqrt(config.n_samples)))
        logger.images(step, "samples", images, nrow=nrow, value_range=(-1.0, 1.0), save_png=True)

    def due(every: int) -> bool:
        return every > 0 and step % every == 0

    # -- the tracked metric (rank 0): G_ema at the target resolution, stable, against fixed
    # real images read at the first measurement (nothing is held during the lower stages) ------
    metric_value: float | None = None
    metric_step = -1
    metric_real: Tensor | None = None

    def measure() -> None:
        nonlocal metric_value, metric_step, metric_real
        if not config.metric or logger is None:
            return
        if metric_real is None:
            metric_real = _metric_reference(dataset, config.metric_samples, config.seed)
        net = ema.model
        assert isinstance(net, PgganGenerator)
        net.set_stage(config.resolution, None)
        metric_value = _tracked_metric(net, metric_real, config, 0, device, amp)
        metric_step = step
        logger.scalars(step, {f"metric/{config.metric}": metric_value})

    def report(stage: Stage, stats: dict[str, float], rate: float | None) -> None:
        if progress is not None and info.is_main:
            progress(PgganProgress(
                step, start_step, total_steps, images_seen, total_images,
                batches.epoch if batches is not None else epoch, stage.resolution, stage.phase,
                stage.alpha, stage.batch_size, stats, rate,
            ))

    stats: dict[str, float] = {}
    rate: float | None = None
    t_log, images_log = time.perf_counter(), images_seen
    start_step = step
    aborted = False
    report(_stage_at(phases, images_seen), {}, None)

    try:
        while images_seen < total_images:
            stage = _stage_at(phases, images_seen)
            if stage.phase_index != prev_phase:
                # A new phase: fresh Adam state (the official reset_opt_for_new_lod) and,
                # when the batch size changes, the loader of the new size at the same place.
                if config.reset_optimizers and prev_phase >= 0:
                    opt_g, opt_d = optimizers()
                prev_phase = stage.phase_index
            bs = stage.batch_size
            if batches is None or batches.loader is not loaders[bs]:
                at = (batches.epoch, batches.pos) if batches is not None else (epoch, pos)
                batches = Batches(loaders[bs], sampler, *at)
            if stage.phase_index != wired:
                loss_d, loss_pen, loss_g = wire(stage)
                wired = stage.phase_index
            alpha = stage.net_alpha
            G.set_stage(stage.resolution, alpha)
            D.set_stage(stage.resolution, alpha)
            log_now = config.log_every > 0 and (
                (step + 1) % config.log_every == 0 or images_seen + bs * world >= total_images
            )
            norms: dict[str, float] = {}

            # -- D phase
            real, _ = batches.next()
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
            images_seen += bs * world
            # -- G phase
            z = sample_latents(bs, config.z_dim, gen_latents, device=device)
            opt_g.zero_grad(set_to_none=True)
            stats |= loss_g.g_step(z)
            if log_now:
                norms["grad_norm_g"] = grad_norm(G)
            opt_g.step()
            step += 1
            last_stage = stage

            stop = bool(abort()) if abort is not None else False
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            check_finite(stats, step, checkpoint=last_ckpt)
            ema.update(G, images_seen=images_seen)

            done = images_seen >= total_images
            phase_end = done or _stage_at(phases, images_seen).phase_index != stage.phase_index
            if logger is not None and log_now:
                now = time.perf_counter()
                rate = (images_seen - images_log) / max(now - t_log, 1e-9)
                t_log, images_log = now, images_seen
                logger.scalars(step, {
                    **stats, **norms,
                    "resolution": stage.resolution,
                    "alpha": stage.alpha,
                    "fading": int(stage.fading),
                    "phase_index": stage.phase_index,
                    "batch_size": bs,
                    "lr_g": opt_g.param_groups[0]["lr"],
                    "lr_d": opt_d.param_groups[0]["lr"],
                    "images_per_s": rate,
                    "kimg": images_seen / 1000.0,
                    "epoch": batches.epoch,
                })
            if due(config.sample_every) or phase_end:
                samples()
            # Only the target's stable phase: SWD of lower or fading stages is not comparable.
            measure_now = (
                bool(config.metric)
                and stage.resolution == config.resolution
                and not stage.fading
                and (due(config.metric_every) or done or stop)
            )
            if measure_now:
                measure()  # rank 0 only
            if due(config.ckpt_every) or phase_end or stop or measure_now:
                save()
            report(stage, dict(stats), rate)
            if stop:
                aborted = True
                break
        if info.is_distributed:
            broadcast_buffers(G, D, ema.model)
    finally:
        if logger is not None:
            logger.close()

    for net in (G, D, ema.model):
        net.set_stage(last_stage.resolution, last_stage.net_alpha)  # type: ignore[operator]
    G.requires_grad_(True)
    D.requires_grad_(True)
    return PgganRunResult(
        run=run, step=step, total_steps=total_steps, images_seen=images_seen, aborted=aborted,
        checkpoint=last_ckpt if info.is_main else None, stats=stats,
        seconds=time.perf_counter() - t_start, config=config, stage=last_stage,
        G=G, D=D, G_ema=ema.model,  # type: ignore[arg-type]
        opt_g=opt_g, opt_d=opt_d,
    )


# --------------------------------------------------------------------------------------------
# sampling from checkpoints


def reached_resolutions(ckpt: Mapping[str, Any]) -> tuple[int, ...]:
    """The resolutions a PGGAN checkpoint has trained at, from its start resolution to its
    current one (the last may be fading in)."""
    extra = ckpt.get("extra") or {}
    start = ((ckpt.get("config") or {}).get("schedule") or {}).get("start_resolution", 4)
    return pggan_resolutions(int(extra["stage"]["resolution"]), int(start))


def generator_from_checkpoint(
    ckpt: Mapping[str, Any], *, ema: bool = True, resolution: int | None = None
) -> PgganGenerator:
    """The generator of a loaded PGGAN checkpoint (:func:`~impasto.train.load_checkpoint`),
    set to render at ``resolution``.

    ``resolution=None``: the checkpoint's current stage (its resolution, and its α if it was
    fading in). Otherwise any resolution it has reached: the current one (with its α when
    fading) or an earlier one, stable. An earlier resolution's image comes from its toRGB
    layer as it was when that resolution was faded out; the blocks below have trained on
    since, so it shows where the lower layers stand, not the snapshot of that time.
    Raises :class:`InputError` for a checkpoint that is not a PGGAN's and for a resolution
    not reached.
    """
    src = ckpt.get("path", "checkpoint")
    if ckpt.get("kind") != CHECKPOINT_KIND:
        raise InputError(f"{src} is a '{ckpt.get('kind')}' checkpoint, not a progressive GAN's")
    extra = ckpt.get("extra") or {}
    if not isinstance(extra.get("net"), Mapping) or not isinstance(extra.get("stage"), Mapping):
        raise InputError(f"{src}: not a progressive GAN training checkpoint (no network config)")
    config = PgganNetConfig.from_dict(extra["net"])
    stage = extra["stage"]
    current = int(stage["resolution"])
    reached = reached_resolutions(ckpt)
    G, _ = build_pggan(config)
    name = "G_ema" if ema else "G"
    saved = (ckpt.get("models") or {}).get(name)
    if saved is None:
        raise InputError(f"{src}: no '{name}' weights in the checkpoint")
    if ema:
        state = saved.get("model") if isinstance(saved, Mapping) else None
        if state is None:
            raise InputError(f"{src}: the 'G_ema' entry is not an EMA state")
        saved = state
    restore({**ckpt, "models": {"G": saved}}, {"G": G}, rng=False)
    if resolution is None:
        resolution = current
    if resolution not in reached:
        listed = ", ".join(map(str, reached))
        raise InputError(
            f"{src} has not trained at resolution {resolution!r}; it has reached {listed}"
        )
    fading = stage.get("phase") == "fade" and resolution == current
    G.set_stage(resolution, float(stage["alpha"]) if fading else None)
    return G
