"""The typed settings of one classifier training run, saved as ``config.json`` in the run
folder: :class:`ClassifierTrainConfig`, its defaults, and the learning-rate schedules
(:func:`lr_factor`).

Fields left ``None`` take the defaults of the architecture and optimiser (see
:meth:`ClassifierTrainConfig.resolved`), written out in full to ``config.json`` and the
checkpoints. Every value is checked on construction; a bad one raises
:class:`~impasto.errors.InputError` with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.nets.classifier import CLASSIFIER_ARCHS, ClassifierNetConfig
from impasto.train.config import (
    LoggingConfig,
    RuntimeConfig,
    check_data_and_run,
    check_logging_fields,
    check_number,
    check_runtime_fields,
)
from impasto.train.config import bad_value as _bad
from impasto.train.config import check_bool as _bool
from impasto.train.config import check_int as _int

__all__ = [
    "DEFAULT_EPOCHS",
    "OPTIMIZERS",
    "OPTIMIZER_DEFAULTS",
    "SCHEDULES",
    "WARMUP_DEFAULTS",
    "ClassifierTrainConfig",
    "checkpoint_arch",
    "checkpoint_kind",
    "lr_factor",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
#: Length of a run when neither ``epochs`` nor ``steps`` is given.
DEFAULT_EPOCHS = 10
#: Default learning rate and weight decay per optimiser.
OPTIMIZER_DEFAULTS = {"sgd": (0.1, 5e-4), "adamw": (2e-3, 0.05)}
#: Default warm-up share of the run per schedule.
WARMUP_DEFAULTS = {"onecycle": 0.25, "cosine": 0.05, "constant": 0.0}
#: The family of checkpoint and model-file kinds, and the one of the release before.
FAMILY, LEGACY_FAMILY = "classify", "classifier"


def checkpoint_kind(arch: str) -> str:
    """The ``kind`` of a classifier checkpoint or model file: ``"classify/<arch>"``."""
    return f"{FAMILY}/{arch}"


def checkpoint_arch(kind: str) -> str | None:
    """The architecture of a classifier kind, new (``"classify/lenet"``) or of the release
    before (``"classifier/lenet"``); None for another family's kind."""
    family, _, arch = str(kind).partition("/")
    return arch if family in (FAMILY, LEGACY_FAMILY) and arch else None


def _number(name: str, value: Any, *, below: float | None = None, positive: bool = False) -> None:
    """:func:`check_number` in this config's words ("a number > 0", "... >= 0 and below 1")."""
    what = f"a number {'>' if positive else '>='} 0"
    if below is not None:
        what += f" and below {below:g}"
    check_number(name, value, positive=positive, below=below, expected=what)


@dataclass
class ClassifierTrainConfig(RuntimeConfig, LoggingConfig):
    """Settings of a classifier training run, saved as ``config.json`` in the run folder.

    Data:
        data: the labelled training images (see :func:`impasto.data.open_dataset`): a folder
            with one sub-folder per class, an IDX images file (labels from ``labels`` or the
            ``*-labels-idx1-ubyte`` sibling), an ``.npz`` with ``images`` and ``labels``, a
            ``.npy`` with ``labels``, a ``.zip`` or a ``.pt`` cache.
        labels: the labels file of an IDX or ``.npy`` source.
        val_data, val_labels: a separate validation set; without it, ``val_split`` of every
            class is held out of ``data`` (seeded; 0 trains on everything, without validation).
        run: the run folder (config.json, stats.jsonl, TensorBoard events, checkpoints).

    Network (None = the architecture's default, see :data:`~impasto.nets.classifier.CLASSIFIER_ARCHS`):
        arch: ``"lenet"`` (small grey images) or ``"resnet"`` (colour images).
        image_size, channels: images are centre-cropped to a square and resized to this side;
            1 (grey) or 3 (RGB) channels.
        width, blocks, dropout: see :class:`~impasto.nets.classifier.ClassifierNetConfig`.

    Augmentation (training batches only):
        crop_pad: random crop after zero padding by this many pixels (a random shift of up to
            that much); None = ``image_size // 8``, 0 = off.
        hflip: random horizontal flips; None = the architecture's default (off for ``lenet``,
            meant for digits and characters, on for ``resnet``).

    Optimisation:
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adamw"``; ``lr``/``weight_decay`` None
            take :data:`OPTIMIZER_DEFAULTS`. momentum: SGD momentum.
        schedule: ``"onecycle"`` (Smith & Topin 2019: from ``lr/25`` up to ``lr`` over the
            warm-up, then a cosine down to ``lr/1e4``), ``"cosine"`` (linear warm-up from 0,
            then a cosine to 0; Loshchilov & Hutter 2017) or ``"constant"`` (after a linear
            warm-up). warmup: the warm-up's share of the run (None: :data:`WARMUP_DEFAULTS`).
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        batch_size: images per step per process. epochs / steps: length of the run (at most
            one; default :data:`DEFAULT_EPOCHS` epochs).

    Runtime and logging: see :class:`~impasto.train.config.RuntimeConfig` and
    :class:`~impasto.train.config.LoggingConfig`. log_every: steps between log lines (0: only
    evaluations). eval_every: steps between evaluations, each with a checkpoint (None: every
    epoch; 0: only at the end). ckpt_every: more checkpoints between evaluations (default 0:
    none). keep_last: numbered checkpoints kept.

    output: a model file (:func:`impasto.classify.export_model`) written on rank 0 when the run
        ends or is aborted: the network of ``best.pt`` (best validation accuracy), else the last
        checkpoint's; None: none (the run folder has the checkpoints).
    """

    data: str = ""
    run: str = "runs/classifier"
    labels: str | None = None
    val_data: str | None = None
    val_labels: str | None = None
    val_split: float = 0.1
    arch: str = "lenet"
    image_size: int | None = None
    channels: int | None = None
    width: int | None = None
    blocks: int | None = None
    dropout: float = 0.0
    crop_pad: int | None = None
    hflip: bool | None = None
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str = "onecycle"
    warmup: float | None = None
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = None
    eval_every: int | None = None
    # LoggingConfig's default is 1000; here checkpoints come with the evaluations.
    ckpt_every: int = dataclasses.field(default=0, kw_only=True)
    output: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) for the first bad value; does no I/O."""
        check_data_and_run(self)
        for name in ("labels", "val_data", "val_labels"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise _bad(name, "a file or folder name", v)
        if self.val_labels is not None and self.val_data is None:
            raise InputError("val_labels needs val_data")
        _number("val_split", self.val_split, below=1.0)
        if self.arch not in CLASSIFIER_ARCHS:
            raise InputError(
                f"unknown classifier architecture {self.arch!r}; "
                f"choose from {', '.join(CLASSIFIER_ARCHS)}"
            )
        if self.channels is not None and (isinstance(self.channels, bool)
                                          or self.channels not in (1, 3)):
            raise _bad("channels", "1 (grey) or 3 (RGB)", self.channels)
        self.net_config(2)  # image_size, width, blocks, dropout against the architecture
        if self.crop_pad is not None:
            _int("crop_pad", self.crop_pad, 0, 64)
        if self.hflip is not None:
            _bool("hflip", self.hflip)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(
                f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}"
            )
        if self.lr is not None:
            _number("lr", self.lr, positive=True)
        _number("momentum", self.momentum, below=1.0)
        if self.weight_decay is not None:
            _number("weight_decay", self.weight_decay)
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}"
            )
        if self.warmup is not None:
            _number("warmup", self.warmup, below=1.0)
        _number("label_smoothing", self.label_smoothing, below=1.0)
        _int("batch_size", self.batch_size, 1)
        if self.epochs is not None and self.steps is not None:
            raise InputError("give the length of the run as epochs or as steps, not both")
        if self.epochs is not None:
            _int("epochs", self.epochs, 1)
        if self.steps is not None:
            _int("steps", self.steps, 1)
        check_runtime_fields(self)
        check_logging_fields(self)
        if self.eval_every is not None:
            _int("eval_every", self.eval_every, 0)
        if self.output is not None:
            if not isinstance(self.output, str) or not self.output:
                raise _bad("output", "a model file name", self.output)
            if Path(self.output).absolute() == Path(self.run).absolute():
                raise InputError(f"the run folder and the model file are the same path "
                                 f"({self.output}); give the model file another name")

    def resolved(self) -> ClassifierTrainConfig:
        """A copy with every ``None`` default filled in (what ``config.json`` records)."""
        spec = CLASSIFIER_ARCHS[self.arch]
        size = self.image_size if self.image_size is not None else spec.image_size
        lr, wd = OPTIMIZER_DEFAULTS[self.optimizer]
        epochs = self.epochs
        if epochs is None and self.steps is None:
            epochs = DEFAULT_EPOCHS
        return dataclasses.replace(
            self,
            image_size=size,
            channels=self.channels if self.channels is not None else spec.channels,
            width=self.width if self.width is not None else spec.width,
            blocks=self.blocks if self.blocks is not None else spec.blocks,
            crop_pad=self.crop_pad if self.crop_pad is not None else size // 8,
            hflip=self.hflip if self.hflip is not None else spec.hflip,
            lr=self.lr if self.lr is not None else lr,
            weight_decay=self.weight_decay if self.weight_decay is not None else wd,
            warmup=self.warmup if self.warmup is not None else WARMUP_DEFAULTS[self.schedule],
            epochs=epochs,
        )

    def net_config(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> ClassifierNetConfig:
        """The :class:`ClassifierNetConfig` of the network for ``num_classes`` classes."""
        spec = CLASSIFIER_ARCHS[self.arch]
        return ClassifierNetConfig(
            self.arch,
            in_channels=self.channels if self.channels is not None else spec.channels,
            image_size=self.image_size if self.image_size is not None else spec.image_size,
            num_classes=num_classes,
            width=self.width,
            blocks=self.blocks,
            dropout=self.dropout,
            mean=None if mean is None else tuple(mean),
            std=None if std is None else tuple(std),
            class_names=None if class_names is None else tuple(class_names),
        )


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """The learning rate of update ``step`` (0-based) of ``total``, as a share of the peak.

    ``onecycle``: ``1/25`` rising linearly to 1 at ``warmup * total``, then a cosine down to
    ``1e-4``; ``cosine``: linear from 0 to 1 over the warm-up, then a cosine to 0; ``constant``:
    linear warm-up, then 1.
    """
    total = max(1, int(total))
    t = min(max(step, 0), total) / total
    w = float(warmup)
    if schedule == "onecycle":
        start, end = 1.0 / 25.0, 1e-4
        if t < w:
            return start + (1.0 - start) * t / w
        rest = (t - w) / max(1e-12, 1.0 - w)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * rest))
    if t < w:
        return (step + 1) / max(1.0, w * total)
    if schedule == "cosine":
        rest = (t - w) / max(1e-12, 1.0 - w)
        return 0.5 * (1.0 + math.cos(math.pi * rest))
    if schedule == "constant":
        return 1.0
    raise InputError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
