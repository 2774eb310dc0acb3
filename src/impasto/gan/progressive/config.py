"""The settings of a progressive GAN run (:class:`PgganTrainConfig`), saved as ``config.json``
in the run folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from impasto.errors import InputError
from impasto.gan.config import (
    GanCommonConfig,
    check_adam_fields,
    check_ema_fields,
    check_run_fields,
    resolved_ema,
)
from impasto.gan.progressive.schedule import PgganSchedule
from impasto.nets.pggan import PgganNetConfig
from impasto.train.config import LoggingConfig, RuntimeConfig, check_data_and_run
from impasto.train.config import check_bool as _bool
from impasto.train.config import check_number as _number

__all__ = ["PgganTrainConfig"]

# The smallest image side SWD measures (impasto.metrics.swd.MIN_RESOLUTION; not imported here,
# so that reading a config does not load the metrics package).
_SWD_MIN_RESOLUTION = 16


@dataclass
class PgganTrainConfig(RuntimeConfig, LoggingConfig, GanCommonConfig):
    """Settings of a progressive GAN run, saved as ``config.json`` in the run folder.

    Data and networks: ``data``, ``run`` (as :class:`~impasto.gan.GanTrainConfig`),
    ``resolution`` (the target, a power of two from 4 to 1024; the data are read at it),
    ``channels`` (1 or 3), ``z_dim``, ``widths`` (feature maps per resolution from 4x4; None:
    the paper's ``min(fmap_base / (r / 2), fmap_max)``), ``fmap_base``, ``fmap_max``,
    ``mbstd_group_size`` (0 or 1: off).

    Schedule: ``schedule`` (:class:`~impasto.gan.progressive.PgganSchedule`).

    Objective and optimiser (the paper's values): ``gp_weight`` 10, ``drift_weight`` 0.001,
    ``lr_g`` = ``lr_d`` = 1e-3, ``betas`` (0, 0.99), ``reset_optimizers`` (fresh Adam state at
    every phase, as the official code). G's weight average (G_ema, which draws the samples):
    ``ema_kimg``, ``ema_beta`` and ``ema_rampup`` as :class:`~impasto.gan.GanTrainConfig`'s
    (by default a half-life of 10 kimg, at most 5% of the images seen; the paper's fixed 0.999
    is ``ema_beta=0.999``, a half-life of about 11 kimg at its batch size 16).

    Runtime and logging (:class:`~impasto.train.config.RuntimeConfig`,
    :class:`~impasto.train.config.LoggingConfig`), ``hflip``, the sample grid and the tracked
    metric (:class:`~impasto.gan.config.GanCommonConfig`) as
    :class:`~impasto.gan.GanTrainConfig`'s; ``metric`` ``"swd"`` needs a target resolution of
    at least 16 and is measured only in the target resolution's stable phase (see
    :mod:`impasto.gan.progressive`). ``arch`` is always ``"pggan"`` (it tells run folders
    apart).
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
    ema_beta: float | None = None
    ema_kimg: float | None = None
    ema_rampup: float | None = None

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
        check_adam_fields(self)
        _bool("reset_optimizers", self.reset_optimizers)
        check_ema_fields(self)
        check_run_fields(self)
        if self.metric == "swd" and self.resolution < _SWD_MIN_RESOLUTION:
            raise InputError(
                f"metric 'swd' needs a target resolution of at least {_SWD_MIN_RESOLUTION}, "
                f"not {self.resolution}"
            )

    def resolved(self) -> PgganTrainConfig:
        """A copy with G's weight average settled (:func:`~impasto.gan.config.resolved_ema`),
        as the run's ``config.json`` records it."""
        return dataclasses.replace(self, **resolved_ema(self))

    def net_config(self) -> PgganNetConfig:
        """The networks' :class:`~impasto.nets.pggan.PgganNetConfig`."""
        return PgganNetConfig(
            resolution=self.resolution, channels=self.channels, z_dim=self.z_dim,
            widths=self.widths, fmap_base=self.fmap_base, fmap_max=self.fmap_max,
            mbstd_group_size=self.mbstd_group_size,
        )

