"""The typed settings of one GAN training run, saved as ``config.json`` in the run folder.

:class:`GanTrainConfig` holds everything :func:`impasto.gan.train` needs: the data, the networks
(:class:`~impasto.nets.gan.GanNetConfig` is derived from it), the loss and optimiser, the length
of the run, the runtime (device, precision, memory format, determinism) and the intervals of
logging, sampling and checkpointing. Fields left ``None`` take the defaults of the architecture
and loss (see :meth:`GanTrainConfig.resolved`), which are written out in full to the run's
``config.json`` and checkpoints, so a run always records what it actually did.

Every value is checked on construction; a bad one raises :class:`~impasto.errors.InputError`
with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto.data import check_resolution
from impasto.errors import InputError
from impasto.gan.augment import DiffAugment
from impasto.gan.losses import GAN_LOSS_KINDS
from impasto.nets.gan import GanNetConfig, gan_arch
from impasto.train.config import bad_value as _bad
from impasto.train.config import check_bool as _bool
from impasto.train.config import check_int as _int
from impasto.train.config import check_number as _number
from impasto.train.config import (
    LoggingConfig,
    RuntimeConfig,
    check_data_and_run,
    check_logging_fields,
    check_runtime_fields,
)

__all__ = [
    "ARCH_DEFAULTS",
    "DEFAULT_EMA_KIMG",
    "DEFAULT_KIMG",
    "EMA_RAMPUP_RATIO",
    "FIXED_EMA_BETA",
    "GanCommonConfig",
    "TRACKED_METRICS",
    "GanTrainConfig",
    "check_adam_fields",
    "check_ema_fields",
    "check_run_fields",
    "resolved_ema",
]

#: Length of a run when neither ``kimg`` nor ``steps`` is given: thousands of real images shown
#: to the discriminator.
DEFAULT_KIMG = 500.0

#: Half-life of G's weight average, in thousands of images shown to D, when neither
#: ``ema_beta`` nor ``ema_kimg`` is given (StyleGAN2-ADA's ``ema_kimg`` of its paper configs;
#: about what PGGAN's decay 0.999 gives at its batch size 16).
DEFAULT_EMA_KIMG = 10.0

#: With a half-life (``ema_kimg``), the average reaches back at most this fraction of the images
#: seen so far (StyleGAN2-ADA's ``ema_rampup``), so it follows G early in a run.
EMA_RAMPUP_RATIO = 0.05

#: The fixed decay of runs that give ``ema_rampup`` alone (the default before ``ema_kimg``).
FIXED_EMA_BETA = 0.999

#: Metrics a run can track for its best checkpoint (``""``: none). Lower is better for each.
TRACKED_METRICS = ("", "swd")

#: Per-architecture defaults: (loss, learning rate of G and D, Adam betas, D steps per G step).
#: DCGAN: Radford et al. 2015 (Adam 2e-4, beta1 0.5, cross-entropy). SNGAN: Miyato et al. 2018,
#: hinge loss, Adam 2e-4 with betas (0, 0.9) and five D updates per G update (their standard
#: CIFAR setting; ``kimg`` counts real images shown to D, so five D steps cost little more per
#: kimg than one).
ARCH_DEFAULTS: dict[str, tuple[str, float, tuple[float, float], int]] = {
    "dcgan": ("nonsaturating", 2e-4, (0.5, 0.999), 1),
    "sngan": ("hinge", 2e-4, (0.0, 0.9), 5),
}
#: WGAN-GP (Gulrajani et al. 2017) on any architecture: Adam 1e-4, betas (0, 0.9), 5 D steps.
_WGAN_GP_DEFAULTS = (1e-4, (0.0, 0.9), 5)


def check_run_fields(cfg: Any) -> None:
    """Check the fields :class:`GanTrainConfig` and the PGGAN's config share, from ``hflip``
    to ``output`` (runtime, intervals, samples, tracked metric, model file), in that order."""
    _bool("hflip", cfg.hflip)
    check_runtime_fields(cfg)
    check_logging_fields(cfg)
    _int("sample_every", cfg.sample_every, 0)
    _int("n_samples", cfg.n_samples, 1, 1024)
    if cfg.metric not in TRACKED_METRICS:
        raise InputError(
            f"unknown tracked metric {cfg.metric!r}; choose from "
            f"{', '.join(repr(m) for m in TRACKED_METRICS)}"
        )
    _int("metric_every", cfg.metric_every, 0)
    _int("metric_samples", cfg.metric_samples, 16, 100_000)
    if cfg.output is not None:
        if not isinstance(cfg.output, str) or not cfg.output:
            raise _bad("output", "a model file name", cfg.output)
        if Path(cfg.output).absolute() == Path(cfg.run).absolute():
            raise InputError(f"the run folder and the model file are the same path "
                             f"({cfg.output}); give the model file another name")


def check_adam_fields(cfg: Any, *, optional: bool = False) -> None:
    """Check ``lr_g``, ``lr_d`` (positive) and ``betas`` (two numbers below 1); ``optional``:
    None is fine too (the architecture's default)."""
    for name in ("lr_g", "lr_d"):
        if getattr(cfg, name) is not None or not optional:
            _number(name, getattr(cfg, name), positive=True)
    if cfg.betas is None and optional:
        return
    if not isinstance(cfg.betas, tuple) or len(cfg.betas) != 2:
        raise _bad("betas", "two numbers (beta1, beta2)", cfg.betas)
    for i, b in enumerate(cfg.betas):
        _number(f"betas[{i}]", b, below=1.0)


def check_ema_fields(cfg: Any) -> None:
    """Check ``ema_beta`` (below 1, or None), ``ema_kimg`` (positive, or None) and
    ``ema_rampup`` (kimg >= 0, or None): a fixed decay or a half-life, not both, and a linear
    ramp-up only of a fixed decay."""
    if cfg.ema_beta is not None:
        _number("ema_beta", cfg.ema_beta, below=1.0)
    if cfg.ema_kimg is not None:
        _number("ema_kimg", cfg.ema_kimg, positive=True)
    if cfg.ema_rampup is not None:
        _number("ema_rampup", cfg.ema_rampup)
    if cfg.ema_beta is not None and cfg.ema_kimg is not None:
        raise InputError("give G's weight average a fixed decay (ema_beta) or a half-life "
                         "(ema_kimg), not both")
    if cfg.ema_kimg is not None and cfg.ema_rampup:
        raise InputError(f"ema_rampup ramps up a fixed ema_beta; a half-life (ema_kimg) ramps "
                         f"up by itself (at most {EMA_RAMPUP_RATIO:g} of the images seen)")


def resolved_ema(cfg: Any) -> dict[str, float | None]:
    """``ema_beta`` and ``ema_kimg`` as a run uses them: as given, else the fixed
    :data:`FIXED_EMA_BETA` when ``ema_rampup`` is given alone, else the half-life
    :data:`DEFAULT_EMA_KIMG`."""
    beta, kimg = cfg.ema_beta, cfg.ema_kimg
    if beta is None and kimg is None:
        if cfg.ema_rampup:
            beta = FIXED_EMA_BETA
        else:
            kimg = DEFAULT_EMA_KIMG
    return {"ema_beta": beta, "ema_kimg": kimg}


@dataclass(kw_only=True)
class GanCommonConfig:
    """The settings every GAN config has besides runtime and logging (checked, with those, by
    :func:`check_run_fields`): ``hflip``, the sample grid (``sample_every``, ``n_samples``) and
    the tracked metric (``metric``, ``metric_every``, ``metric_samples``) and the model file
    written at the end (``output``); see :class:`GanTrainConfig`."""

    hflip: bool = False
    sample_every: int = 500
    n_samples: int = 64
    metric: str = ""
    metric_every: int = 0
    metric_samples: int = 512
    output: str | None = None


@dataclass
class GanTrainConfig(RuntimeConfig, LoggingConfig, GanCommonConfig):
    """Settings of a GAN training run (see the module doc).

    Data and networks:
        data: the training images: a folder (sub-folders = classes), a ``.zip``, an IDX file,
            a ``.npy``/``.npz`` array or a ``.pt`` cache (see :func:`impasto.data.open_dataset`).
        run: the run folder (config.json, stats.jsonl, TensorBoard events, checkpoints,
            ``images/samples-ema-<step>.png``).
        resolution: image side, one the architecture supports (32, 64 or 128).
        channels: 1 (grey) or 3 (RGB).
        arch: ``"dcgan"`` or ``"sngan"`` (:data:`impasto.nets.gan.GAN_ARCHS`).
        z_dim, base_width: latent size; channel width at the full-resolution end of G and D.
        d_norm: DCGAN discriminator norm (``"batch"``, ``"layer"``, ``"none"``); None picks
            ``"layer"`` for WGAN-GP (its per-sample penalty and batch norm do not mix) and
            the architecture's default otherwise.
        conditional: class-conditional G and D (needs labelled data). G's label acts only through
            per-class batch-norm gains and biases that start at 1 and 0 and move about ``lr_g``
            per step, so G follows the label only after a few thousand steps at 2e-4 (see
            ``docs/gan.md``, "Conditional runs").

    Objective and optimiser (None = the defaults of :data:`ARCH_DEFAULTS`):
        loss: ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``.
        gp_weight: WGAN-GP weight. r1_gamma: R1 weight on real images (0 = off).
        d_steps: discriminator updates (each on a fresh real batch) per generator update.
        lr_g, lr_d, betas: Adam settings of G and D.

    Length, averaging, augmentation:
        batch_size: images per discriminator step per process.
        kimg / steps: length of the run, in thousands of real images shown to D (over all
            processes) or in generator steps; give at most one (default ``DEFAULT_KIMG``).
        ema_kimg: half-life of the exponential moving average of G's weights that draws
            the samples (G_ema), in thousands of real images shown to D; it is at most
            ``EMA_RAMPUP_RATIO`` (5%) of the images seen so far, so G_ema follows G early
            in a run (Karras et al. 2020, StyleGAN2-ADA). Default :data:`DEFAULT_EMA_KIMG`
            when ``ema_beta`` is not given.
        ema_beta: instead of a half-life, a fixed decay per generator step (runs before
            ``ema_kimg`` existed used 0.999: their config.json says so, and they resume
            with it); give one of ``ema_beta`` and ``ema_kimg``.
        ema_rampup: with a fixed decay, None (off) or the kimg over which it ramps up
            linearly from 0 to ``ema_beta`` (given alone, ``ema_beta`` is 0.999).
        diffaugment: DiffAugment policy, e.g. ``"color,translation,cutout"``; ``""`` is off.
        hflip: mirror about half the training images each epoch.

    Runtime:
        precision: ``"auto"`` (bf16 autocast where the hardware is fast at it), ``"fp32"`` or
            ``"bf16"``. Losses and penalties are computed in float32 in every case.
        channels_last: NHWC memory format for the networks and their inputs (default on: with
            bf16 it is what oneDNN and tensor cores are fastest at; see
            ``benchmarks/gan_throughput.py``).
        deterministic: ``torch.use_deterministic_algorithms(True)`` for the run, data loading
            in the main process; with a fixed ``seed``, reruns and resumes are bit-identical.
        seed, device (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``), num_workers.
        log_every, sample_every, ckpt_every: intervals in generator steps (0: only at the end).
        keep_last: how many numbered checkpoints to keep. n_samples: size of the fixed sample
            grid. tensorboard: also write TensorBoard event files.
        metric: the tracked metric, ``""`` (off) or ``"swd"`` (the average multi-scale sliced
            Wasserstein distance x10^3 between ``metric_samples`` images of G_ema, from fixed
            latents, and as many fixed real images; no pretrained network needed). It is
            logged as ``metric/<name>`` every ``metric_every`` steps and when the run ends or
            is aborted (0: only then), and ``best.pt`` keeps the checkpoint with the lowest
            value so far.
        output: a model file (:func:`impasto.gan.export_model`: G_ema, its network config
            and classes) written on rank 0 from the last checkpoint when the run ends or is
            aborted; None: none (the run folder has the checkpoints).
    """

    data: str = ""
    run: str = "runs/gan"
    resolution: int = 32
    channels: int = 3
    arch: str = "dcgan"
    z_dim: int = 128
    base_width: int = 64
    d_norm: str | None = None
    conditional: bool = False
    loss: str | None = None
    gp_weight: float = 10.0
    r1_gamma: float = 0.0
    d_steps: int | None = None
    lr_g: float | None = None
    lr_d: float | None = None
    betas: tuple[float, float] | None = None
    batch_size: int = 64
    kimg: float | None = None
    steps: int | None = None
    ema_beta: float | None = None
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    diffaugment: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.validate()

    # ----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) for the first bad value; does no I/O."""
        check_data_and_run(self)
        spec = gan_arch(self.arch, GanNetConfig)  # pggan has PgganTrainConfig
        check_resolution(self.resolution, spec.resolutions, self.arch)
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise _bad("channels", "1 (grey) or 3 (RGB)", self.channels)
        _int("z_dim", self.z_dim, 1)
        _int("base_width", self.base_width, 1)
        _bool("conditional", self.conditional)
        if self.loss is not None and self.loss not in GAN_LOSS_KINDS:
            raise InputError(
                f"unknown GAN loss {self.loss!r}; choose from {', '.join(GAN_LOSS_KINDS)}"
            )
        self.net_config(0)  # checks d_norm against the architecture
        _number("gp_weight", self.gp_weight)
        _number("r1_gamma", self.r1_gamma)
        if self.d_steps is not None:
            _int("d_steps", self.d_steps, 1, 100)
        check_adam_fields(self, optional=True)
        _int("batch_size", self.batch_size, 1)
        if self.kimg is not None and self.steps is not None:
            raise InputError("give the length of the run as kimg or as steps, not both")
        if self.kimg is not None:
            _number("kimg", self.kimg, positive=True)
        if self.steps is not None:
            _int("steps", self.steps, 1)
        check_ema_fields(self)
        if not isinstance(self.diffaugment, str):
            raise _bad(
                "diffaugment", "a policy string such as 'color,translation'", self.diffaugment
            )
        DiffAugment(self.diffaugment)  # raises InputError for an unknown policy
        check_run_fields(self)

    # ----------------------------------------------------------------------------------------

    def resolved(self) -> GanTrainConfig:
        """A copy with every ``None`` default filled in from the architecture and loss."""
        loss, lr, betas, d_steps = ARCH_DEFAULTS[self.arch]
        loss = self.loss or loss
        if loss == "wgan-gp":
            lr, betas, d_steps = _WGAN_GP_DEFAULTS
        d_norm = self.d_norm
        if d_norm is None and self.arch == "dcgan" and loss == "wgan-gp":
            d_norm = "layer"
        if d_norm is None:
            d_norm = GanNetConfig(self.arch, self.resolution).d_norm
        kimg, steps = self.kimg, self.steps
        if kimg is None and steps is None:
            kimg = DEFAULT_KIMG
        return dataclasses.replace(
            self,
            loss=loss,
            d_norm=d_norm,
            lr_g=self.lr_g if self.lr_g is not None else lr,
            lr_d=self.lr_d if self.lr_d is not None else lr,
            betas=self.betas if self.betas is not None else betas,
            d_steps=self.d_steps if self.d_steps is not None else d_steps,
            kimg=kimg,
            steps=steps,
            **resolved_ema(self),
        )

    def net_config(self, num_classes: int = 0) -> GanNetConfig:
        """The :class:`GanNetConfig` of the networks (``num_classes`` from the dataset when
        ``conditional``, else 0)."""
        return GanNetConfig(
            self.arch,
            self.resolution,
            self.channels,
            z_dim=self.z_dim,
            base_width=self.base_width,
            num_classes=num_classes if self.conditional else 0,
            d_norm=self.d_norm,
        )

    def total_steps(self, world_size: int = 1) -> int:
        """Generator steps of the whole run (``steps``, or ``kimg`` over the images that one
        step shows D: ``batch_size * d_steps * world_size``). Call on :meth:`resolved`."""
        if self.steps is not None:
            return self.steps
        d_steps = self.d_steps or 1
        per_step = self.batch_size * d_steps * max(1, world_size)
        kimg = self.kimg if self.kimg is not None else DEFAULT_KIMG
        return max(1, math.ceil(kimg * 1000 / per_step))
