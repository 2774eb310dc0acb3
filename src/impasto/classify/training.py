"""Training image classifiers: :class:`ClassifierTrainConfig` and a plain function, :func:`train`,
driven alike by the CLI, tests and benchmarks through ``progress``/``abort`` callbacks.

One step is one SGD (or AdamW) update on a batch of augmented training images::

    x = augment((images + 1) / 2)              # random crop with padding, flips where sensible
    lr = lr_at(step)                           # one-cycle, cosine or constant, from the step
    loss = cross_entropy(model(x), y)          # bf16 autocast; the loss in float32
    opt.zero_grad(); loss.backward(); opt.step()

Data come from :func:`impasto.data.open_dataset` (folders with one sub-folder per class, IDX
files with their labels, ``.npz``/``.npy`` arrays with labels, caches). A validation set is
either given (``val_data``) or split off the training data: a seeded, stratified share
``val_split`` of every class. The model is evaluated on it every ``eval_every`` steps (default:
every epoch) and at the end; each evaluation writes a checkpoint (the last ``keep_last`` are
kept) and ``best.pt`` when the validation accuracy is the best so far.

Resuming is exact, as in :mod:`impasto.gan.training`: the data order is a function of the seed
and the epoch, a resumed run skips the batches of its epoch already used, the learning rate is
a function of the step, and every random stream (augmentation, dropout, loader) is saved in the
checkpoint. In deterministic mode ``N`` steps, then a resume for ``N`` more, give bit-identical
weights and optimiser states to ``2N`` steps straight.

Under ``torchrun`` each process trains on its shard of every epoch through
:class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged; batch-norm statistics
follow rank 0); validation is sharded too and its counts summed; rank 0 alone writes logs and
checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from impasto.data import make_loader, open_dataset
from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.nets.classifier import CLASSIFIER_ARCHS, ClassifierNetConfig, build_classifier
from impasto.train import (
    Batches,
    CheckpointManager,
    DistInfo,
    EpochSampler,
    RunLogger,
    agree_across_ranks,
    broadcast_buffers,
    check_finite,
    derive_seed,
    gather_rng_states,
    load_checkpoint,
    loader_workers,
    resolve_checkpoint,
    restore,
    restore_rng_for_rank,
    save_config,
    training_session,
    wrap_ddp,
)
from impasto.train.config import bad_value as _bad
from impasto.train.config import check_bool as _bool
from impasto.train.config import check_int as _int
from impasto.train.config import check_data_and_run, check_number, check_runtime_fields

__all__ = [
    "CHECKPOINT_PREFIX",
    "OPTIMIZERS",
    "SCHEDULES",
    "ClassifierProgress",
    "ClassifierRunResult",
    "ClassifierTrainConfig",
    "augment_batch",
    "checkpoint_kind",
    "lr_factor",
    "train",
]

log = logging.getLogger(__name__)

#: Checkpoints are ``<run>/ckpt-<step>.pt``, plus ``best.pt`` (best validation accuracy).
CHECKPOINT_PREFIX = "ckpt"
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
#: Length of a run when neither ``epochs`` nor ``steps`` is given.
DEFAULT_EPOCHS = 10
#: Default learning rate and weight decay per optimiser.
OPTIMIZER_DEFAULTS = {"sgd": (0.1, 5e-4), "adamw": (2e-3, 0.05)}
#: Default warm-up share of the run per schedule.
WARMUP_DEFAULTS = {"onecycle": 0.25, "cosine": 0.05, "constant": 0.0}
_STATS_IMAGES = 4096  # training images measured for the input mean and std

# Independent random streams derived from the seed (and the rank).
_STREAM_AUGMENT, _STREAM_TORCH, _STREAM_DATA, _STREAM_SPLIT = 1, 2, 3, 4


def checkpoint_kind(arch: str) -> str:
    """The ``kind`` of a classifier checkpoint: ``"classifier/<arch>"``."""
    return f"classifier/{arch}"


# --------------------------------------------------------------------------------------------
# the config


def _number(name: str, value: Any, *, below: float | None = None, positive: bool = False) -> None:
    """:func:`check_number` in this config's words ("a number > 0", "... >= 0 and below 1")."""
    what = f"a number {'>' if positive else '>='} 0"
    if below is not None:
        what += f" and below {below:g}"
    check_number(name, value, positive=positive, below=below, expected=what)


@dataclass
class ClassifierTrainConfig:
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

    Runtime and logging: ``precision``, ``channels_last``, ``deterministic``, ``seed``,
    ``device``, ``num_workers`` as in :class:`~impasto.gan.GanTrainConfig`. log_every: steps
    between log lines (0: only evaluations). eval_every: steps between evaluations and
    checkpoints (None: every epoch; 0: only at the end). keep_last: numbered checkpoints kept.
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
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 50
    eval_every: int | None = None
    keep_last: int = 3
    tensorboard: bool = True

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
        _int("log_every", self.log_every, 0)
        if self.eval_every is not None:
            _int("eval_every", self.eval_every, 0)
        _int("keep_last", self.keep_last, 1)
        _bool("tensorboard", self.tensorboard)

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


# --------------------------------------------------------------------------------------------
# augmentation


def augment_batch(
    x: Tensor, pad: int, hflip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Random crops with zero padding and random horizontal flips of a batch ``(N, C, H, W)``.

    Each image is padded by ``pad`` pixels of value 0 on every side and an ``H x W`` window is
    cut at a random offset (a shift of up to ``pad`` pixels each way); with ``hflip`` about half
    the images are mirrored. All draws come from ``generator`` (on ``x``'s device).
    """
    n, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H)
        cols = ox[:, None] + torch.arange(w, device=x.device)  # (N, W)
        idx = torch.arange(n, device=x.device)[:, None, None]
        # padded[n, :, rows, cols] -> (N, H, W, C)
        x = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


# --------------------------------------------------------------------------------------------
# data helpers


class _Relabel(Dataset):
    """``dataset`` with its labels mapped through ``mapping`` (dataset class -> model class)."""

    def __init__(self, dataset: Any, mapping: Sequence[int]) -> None:
        self.dataset = dataset
        self.mapping = torch.as_tensor(list(mapping), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.dataset[i]
        return x, self.mapping[y]


def class_mapping(source: str, names: Sequence[str], model_names: Sequence[str]) -> list[int]:
    """For each class name of a dataset, its index among ``model_names``; :class:`InputError`
    naming the first class the model does not know."""
    index = {c: k for k, c in enumerate(model_names)}
    unknown = [c for c in names if c not in index]
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:5])
        known = ", ".join(list(model_names)[:10]) + (" ..." if len(model_names) > 10 else "")
        raise InputError(f"{source}: class(es) {shown} unknown to the model (its classes: {known})")
    return [index[c] for c in names]


def stratified_split(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices: ``round(share * count)`` of every class (at least one when
    ``share > 0`` and the class has two or more items) go to validation, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = int(round(share * idx.size))
        if share > 0 and idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _input_stats(dataset: Any, indices: np.ndarray, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of up to ``_STATS_IMAGES`` images (evenly spaced) in [0, 1]."""
    pick = indices[np.linspace(0, indices.size - 1, min(indices.size, _STATS_IMAGES)).astype(int)]
    s = torch.zeros(channels, dtype=torch.float64)
    s2 = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for i in np.unique(pick):
        x = (dataset[int(i)][0].double() + 1.0) / 2.0
        s += x.sum(dim=(1, 2))
        s2 += (x * x).sum(dim=(1, 2))
        count += x[0].numel()
    mean = s / count
    std = (s2 / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


# --------------------------------------------------------------------------------------------
# results


@dataclass
class ClassifierProgress:
    """What the ``progress`` callback receives: once before the first step (``stats`` empty),
    after every step, on rank 0 only. ``val`` holds ``val_acc``/``val_loss`` after a step that
    evaluated, else None."""

    step: int
    start_step: int
    total_steps: int
    epoch: int
    stats: dict[str, float]
    images_per_s: float | None
    val: dict[str, float] | None
    best_val_acc: float | None


@dataclass
class ClassifierRunResult:
    """What :func:`train` returns. ``model`` is the plain module (no DDP wrapper), in eval mode."""

    run: Path
    step: int
    total_steps: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    best_checkpoint: Path | None
    best_val_acc: float | None
    val: dict[str, float] | None  # the last evaluation
    stats: dict[str, float]
    seconds: float
    config: ClassifierTrainConfig
    net_config: ClassifierNetConfig
    model: nn.Module = field(repr=False)
    optimizer: torch.optim.Optimizer = field(repr=False)


# --------------------------------------------------------------------------------------------
# the loop


def train(
    config: ClassifierTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[ClassifierProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
) -> ClassifierRunResult:
    """Train a classifier as ``config`` says; returns a :class:`ClassifierRunResult`.

    ``resume``: a checkpoint file or a run folder (its latest checkpoint) to continue from,
    exactly where it stopped; its network settings and classes must equal this run's (another
    kind, a missing, truncated or corrupt file raise :class:`InputError`). Without ``resume``, a
    run folder that already holds checkpoints is refused.

    ``progress(info)`` is called on rank 0 before the first step and after every step.
    ``abort()`` is polled after every step; when it returns True (on any rank), a checkpoint is
    written and the function returns with ``aborted=True``.

    Raises :class:`InputError` for bad settings or data (unlabelled images, a single class,
    fewer images than a batch) before anything is written, and
    :class:`~impasto.train.NonFiniteLossError` when the loss becomes NaN or infinite.
    """
    if not isinstance(config, ClassifierTrainConfig):
        raise TypeError(f"train expects a ClassifierTrainConfig, not {type(config).__name__}")
    config.validate()
    config = config.resolved()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort)


def _open(config: ClassifierTrainConfig, source: str, labels: str | None) -> Any:
    assert config.image_size is not None and config.channels is not None
    ds = open_dataset(source, resolution=config.image_size, channels=config.channels,
                      labels_path=labels, seed=config.seed)
    if ds.num_classes == 0:
        raise InputError(
            f"{source}: the images have no labels; a classifier needs labelled data (one "
            "sub-folder per class, IDX labels, or labels in the array file)"
        )
    return ds


def _check_resume_fits(ckpt: Mapping[str, Any], net: ClassifierNetConfig) -> ClassifierNetConfig:
    """The saved network config, checked against this run's (input statistics excepted)."""
    src = ckpt.get("path", "checkpoint")
    saved = (ckpt.get("extra") or {}).get("net")
    if not isinstance(saved, Mapping):
        raise InputError(f"{src}: not a classifier training checkpoint (no network config)")
    try:
        saved_cfg = ClassifierNetConfig.from_dict(saved)
    except InputError as e:
        raise InputError(f"{src}: {e}") from None
    for key in ("arch", "in_channels", "image_size", "class_names", "num_classes", "width",
                "blocks", "dropout"):
        a, b = getattr(saved_cfg, key), getattr(net, key)
        if a != b:
            what = key.replace("_", " ")
            if key == "class_names":
                raise InputError(
                    f"{src} was trained on the classes {', '.join(a[:10])}, not "
                    f"{', '.join(b[:10])}; resume on the same data"
                )
            raise InputError(
                f"{src} was trained with {what} {a!r}, not {b!r}; resume with the same settings"
            )
    return saved_cfg


def _train(  # noqa: C901  (one loop, told in order)
    config: ClassifierTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[ClassifierProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> ClassifierRunResult:
    t_start = time.perf_counter()
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Path(config.run)
    if run.exists() and not run.is_dir():
        raise InputError(f"{run}: is a file, not a run folder")

    # -- the run folder and the checkpoint to resume, checked before anything is built -------
    kind = checkpoint_kind(config.arch)
    manager = CheckpointManager(run, keep_last=config.keep_last, prefix=CHECKPOINT_PREFIX,
                                best_metric="val_acc", mode="max")
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resolve_checkpoint(resume, prefix=CHECKPOINT_PREFIX), kind=kind)
    elif manager.checkpoints() or (run / "latest.json").exists():
        raise InputError(
            f"{run}: this run folder already holds checkpoints; continue it with "
            f"--resume {run}, or choose another run folder"
        )

    # -- data: the training set, the validation set or split -----------------------------------
    dataset = _open(config, config.data, config.labels)
    if dataset.num_classes < 2:
        raise InputError(f"{config.data}: only one class; a classifier needs two or more")
    classes = list(dataset.classes)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if config.val_data is not None:
        val_ds = _open(config, config.val_data, config.val_labels)
        val_set: Any = _Relabel(val_ds, class_mapping(config.val_data, val_ds.classes, classes))
        train_idx = np.arange(len(dataset))
        val_idx = np.arange(len(val_set))
    else:
        train_idx, val_idx = stratified_split(
            labels, config.val_split, derive_seed(config.seed, _STREAM_SPLIT)
        )
        val_set = dataset
    train_set = Subset(dataset, train_idx.tolist())
    present = np.unique(labels[train_idx])
    if present.size < len(classes):
        missing = [classes[k] for k in range(len(classes)) if k not in set(present.tolist())]
        log.warning("no training images of class(es) %s", ", ".join(missing[:10]))
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(
        train_set, world_size=world, rank=rank, seed=derive_seed(config.seed, _STREAM_DATA)
    )
    loader = make_loader(train_set, config.batch_size, seed=config.seed,
                         num_workers=num_workers, sampler=sampler)
    steps_per_epoch = len(sampler) // config.batch_size
    total_steps = config.steps if config.steps is not None else (
        int(config.epochs or DEFAULT_EPOCHS) * steps_per_epoch
    )
    eval_every = steps_per_epoch if config.eval_every is None else config.eval_every

    # -- the network: input statistics from the training images (or the checkpoint) -----------
    if ckpt is not None:
        net_config = _check_resume_fits(ckpt, config.net_config(len(classes), classes))
    else:
        assert config.channels is not None
        mean, std = _input_stats(dataset, train_idx, config.channels)
        net_config = config.net_config(len(classes), classes, mean, std)

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_classifier(net_config)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model.to(device=device, memory_format=memory_format)
    model.train()
    assert config.lr is not None and config.weight_decay is not None
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
        )
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))
    gen_augment = torch.Generator(device=device)
    gen_augment.manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, rank))
    torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))  # dropout
    generators = {"augment": gen_augment, "loader": loader.generator}

    step, epoch, pos = 0, 0, 0
    last_val: dict[str, float] | None = None
    if ckpt is not None:
        restore(ckpt, {"model": model}, {"opt": opt}, rng=False)
        extra = ckpt["extra"]
        step = ckpt["step"]
        epoch, pos = int(extra.get("epoch", 0)), int(extra.get("pos", 0))
        if isinstance(extra.get("val"), dict):
            last_val = dict(extra["val"])
        if not restore_rng_for_rank(ckpt, generators, rank=rank, world_size=world):
            # saved by another number of processes: fresh streams from the next epoch
            gen_augment.manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, rank, step))
            torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))
            epoch, pos = epoch + (pos > 0), 0
        if step >= total_steps:
            log.warning("%s is at step %d; the run is %d steps long: nothing to do",
                        ckpt["path"], step, total_steps)
    batches = Batches(loader, sampler, epoch, pos)

    model_train: nn.Module = model
    if info.is_distributed:
        model_train = wrap_ddp(model, device)
    amp = (lambda: autocast(device, dtype))

    # validation shard of this process
    val_shard = val_idx[rank::world].tolist()
    val_total = int(val_idx.size)
    val_loader = None
    if val_total:
        # Its own generator: iterating must not draw from the global RNG (exact resume).
        val_loader = DataLoader(Subset(val_set, val_shard), batch_size=max(config.batch_size, 256),
                                shuffle=False, num_workers=num_workers,
                                generator=torch.Generator().manual_seed(0))

    logger: RunLogger | None = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.json")
        logger = RunLogger(run, tensorboard=config.tensorboard,
                           resume_step=step if ckpt is not None else None)
    last_ckpt: Path | None = Path(ckpt["path"]) if ckpt is not None else None
    best_ckpt: Path | None = None
    if info.is_main and manager.best_value is not None:
        best_ckpt = run / "best.pt"

    def evaluate() -> dict[str, float] | None:
        """Validation accuracy and mean loss, summed over the shards of all processes."""
        if val_loader is None:
            return None
        if info.is_distributed:
            broadcast_buffers(model)
        model.eval()
        correct = torch.zeros((), dtype=torch.float64)
        loss_sum = torch.zeros((), dtype=torch.float64)
        count = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for xb, yb in val_loader:
                xb = ((xb + 1.0) / 2.0).to(device, memory_format=memory_format)
                yb = yb.to(device)
                with amp():
                    logits = model(xb)
                logits = logits.float()
                loss_sum += F.cross_entropy(logits, yb, reduction="sum").double().cpu()
                correct += (logits.argmax(1) == yb).sum().double().cpu()
                count += yb.numel()
        model.train()
        if info.is_distributed:
            vec = torch.stack([correct, loss_sum, count]).to(device)
            dist.all_reduce(vec)
            correct, loss_sum, count = vec.cpu().unbind()
        n = max(1.0, float(count))
        return {"val_acc": float(correct) / n, "val_loss": float(loss_sum) / n}

    def save(val: dict[str, float] | None) -> None:
        nonlocal last_ckpt, best_ckpt
        extra: dict[str, Any] = {
            "net": net_config.to_dict(),
            "classes": list(classes),
            "epoch": batches.epoch,
            "pos": batches.pos,
            "world_size": world,
            "val": dict(val) if val is not None else None,
            **gather_rng_states(generators, world),
        }
        if not info.is_main:
            return
        kw = dict(kind=kind, config=config, images_seen=step * config.batch_size * world,
                  models={"model": model}, optimizers={"opt": opt}, generators=generators)
        last_ckpt = manager.save(step, extra=extra, **kw)
        if val is not None and manager.save_best(val["val_acc"], step=step, extra=extra, **kw):
            best_ckpt = run / "best.pt"

    stats: dict[str, float] = {}
    rate: float | None = None
    t_log, step_log = time.perf_counter(), step
    start_step = step
    aborted = False
    if progress is not None and info.is_main:
        progress(ClassifierProgress(step, start_step, total_steps, batches.epoch, {}, None,
                                    None, manager.best_value))
    crop_pad, hflip = int(config.crop_pad or 0), bool(config.hflip)
    smoothing = float(config.label_smoothing)
    assert config.warmup is not None
    try:
        while step < total_steps:
            xb, yb = batches.next()
            xb = (xb.to(device, non_blocking=True) + 1.0) / 2.0
            yb = yb.to(device, non_blocking=True)
            xb = augment_batch(xb, crop_pad, hflip, gen_augment)
            xb = xb.contiguous(memory_format=memory_format)
            lr = config.lr * lr_factor(config.schedule, step, total_steps, config.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with amp():
                logits = model_train(xb)
            logits = logits.float()
            loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1

            acc = (logits.detach().argmax(1) == yb).float().mean()
            stop = bool(abort()) if abort is not None else False
            stats = {"loss": float(loss.detach()), "acc": float(acc)}
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            stats = {"loss": stats["loss"], "acc": stats["acc"]}  # the logs' order
            check_finite(stats, step, checkpoint=last_ckpt)

            val = None
            if (eval_every > 0 and step % eval_every == 0) or step == total_steps or stop:
                val = evaluate()
                last_val = val if val is not None else last_val
                save(val)
            if logger is not None:
                row: dict[str, float] = {}
                if config.log_every > 0 and (step % config.log_every == 0 or step == total_steps):
                    now = time.perf_counter()
                    rate = (step - step_log) * config.batch_size * world / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    row |= {**stats, "lr": lr, "images_per_s": rate, "epoch": batches.epoch}
                if val is not None:
                    row |= val
                if row:
                    logger.scalars(step, row)
            if progress is not None and info.is_main:
                progress(ClassifierProgress(step, start_step, total_steps, batches.epoch,
                                            dict(stats), rate, val, manager.best_value))
            if stop:
                aborted = True
                break
        if info.is_distributed:
            broadcast_buffers(model)
    finally:
        if logger is not None:
            logger.close()

    model.eval()
    return ClassifierRunResult(
        run=run,
        step=step,
        total_steps=total_steps,
        aborted=aborted,
        checkpoint=last_ckpt if info.is_main else None,
        best_checkpoint=best_ckpt if info.is_main else None,
        best_val_acc=manager.best_value if info.is_main else None,
        val=last_val,
        stats=stats,
        seconds=time.perf_counter() - t_start,
        config=config,
        net_config=net_config,
        model=model,
        optimizer=opt,
    )
