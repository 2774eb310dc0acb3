"""The settings every training config shares, and their checks.

:class:`RuntimeConfig` and :class:`LoggingConfig` are the bases of every ``*TrainConfig``;
:func:`check_runtime_fields`, :func:`check_logging_fields` and :func:`check_data_and_run` check
them with one-line :class:`~impasto.errors.InputError` errors. How configs become JSON and
back (:func:`config_to_dict`, :func:`config_from_dict`, :func:`save_config`, :func:`load_config`)
and the field checks (:func:`check_int`, ...) live one layer down, in :mod:`impasto.config_io`,
and are re-exported here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from impasto.config_io import (
    bad_value,
    check_bool,
    check_int,
    check_number,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from impasto.device import DEVICES, PRECISIONS
from impasto.errors import InputError

__all__ = [
    "LoggingConfig",
    "RuntimeConfig",
    "bad_value",
    "check_bool",
    "check_data_and_run",
    "check_int",
    "check_logging_fields",
    "check_number",
    "check_runtime_fields",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]


def check_data_and_run(cfg: Any) -> None:
    """Check that ``cfg.data`` names the training images and ``cfg.run`` the run folder
    (non-empty strings)."""
    if not isinstance(cfg.data, str) or not cfg.data:
        raise InputError("data must name the training images (a folder or a file)")
    if not isinstance(cfg.run, str) or not cfg.run:
        raise InputError("run must name the run folder")


def check_runtime_fields(cfg: Any) -> None:
    """Check the runtime fields the training configs share, in this order: ``precision``
    (one of :data:`~impasto.device.PRECISIONS`), ``channels_last``, ``deterministic``,
    ``seed`` (0 to 2**63 - 1), ``device`` (one of :data:`~impasto.device.DEVICES`),
    ``num_workers`` (0 to 64)."""
    if cfg.precision not in PRECISIONS:
        raise InputError(
            f"unknown precision {cfg.precision!r}; choose from {', '.join(PRECISIONS)}"
        )
    check_bool("channels_last", cfg.channels_last)
    check_bool("deterministic", cfg.deterministic)
    check_int("seed", cfg.seed, 0, 2**63 - 1)
    if cfg.device not in DEVICES:
        raise InputError(f"unknown device {cfg.device!r}; choose from {', '.join(DEVICES)}")
    check_int("num_workers", cfg.num_workers, 0, 64)


# --------------------------------------------------------------------------------------------
# the settings every training config shares


@dataclasses.dataclass(kw_only=True)
class RuntimeConfig:
    """Where and how a run computes; a base of every ``*TrainConfig`` (keyword-only fields).

    precision: ``"auto"`` (bf16 where the hardware is fast at it), ``"fp32"`` or ``"bf16"``.
    channels_last: NHWC memory format for the networks and their inputs.
    deterministic: ``torch.use_deterministic_algorithms(True)`` and data loading in the main
        process; with a fixed ``seed``, reruns and resumes are bit-identical.
    seed: the one seed every random stream of the run derives from.
    device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``. num_workers: data loader processes.
    """

    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0


@dataclasses.dataclass(kw_only=True)
class LoggingConfig:
    """How a run reports and keeps itself; a base of every ``*TrainConfig``.

    log_every, ckpt_every: intervals in optimiser steps (0: only at the end).
    keep_last: numbered checkpoints kept. tensorboard: also write TensorBoard event files.
    """

    log_every: int = 50
    ckpt_every: int = 1000
    keep_last: int = 3
    tensorboard: bool = True


def check_logging_fields(cfg: Any) -> None:
    """Check the fields of :class:`LoggingConfig`."""
    for name in ("log_every", "ckpt_every"):
        check_int(name, getattr(cfg, name), 0)
    check_int("keep_last", cfg.keep_last, 1)
    check_bool("tensorboard", cfg.tensorboard)
