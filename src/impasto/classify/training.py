"""Training image classifiers: a plain function, :func:`train`, driven alike by the CLI, tests
and benchmarks through ``progress``/``abort`` callbacks. The settings are
:class:`~impasto.classify.config.ClassifierTrainConfig`, the data helpers are in
:mod:`impasto.classify.data`, and the run folder, resume, logging and checkpoints are
:class:`impasto.train.run.Run`'s.

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
kept; kind ``"classify/<arch>"``, the release before wrote ``"classifier/<arch>"``) and
``best.pt`` when the validation accuracy is the best so far. Its values go to the step's row
of ``stats.jsonl``.

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

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

from impasto.classify.config import (
    DEFAULT_EPOCHS,
    LEGACY_FAMILY,
    OPTIMIZER_DEFAULTS,
    OPTIMIZERS,
    SCHEDULES,
    WARMUP_DEFAULTS,
    ClassifierTrainConfig,
    checkpoint_arch,
    checkpoint_kind,
    lr_factor,
)
from impasto.classify.data import (
    Relabel,
    augment_batch,
    class_mapping,
    input_stats,
    open_train_val,
    stratified_split,
)
from impasto.classify.pipeline import export_model
from impasto.data import make_loader
from impasto.device import autocast, nhwc_trainable, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.nets.classifier import ClassifierNetConfig, build_classifier
from impasto.train import (
    Batches,
    DistInfo,
    EpochSampler,
    broadcast_buffers,
    derive_seed,
    loader_workers,
    training_session,
    wrap_ddp,
)
from impasto.train.run import Run

__all__ = [
    "CHECKPOINT_PREFIX",
    "DEFAULT_EPOCHS",
    "OPTIMIZERS",
    "OPTIMIZER_DEFAULTS",
    "SCHEDULES",
    "WARMUP_DEFAULTS",
    "ClassifierProgress",
    "ClassifierRunResult",
    "ClassifierTrainConfig",
    "augment_batch",
    "checkpoint_arch",
    "checkpoint_kind",
    "class_mapping",
    "lr_factor",
    "stratified_split",
    "train",
]

log = logging.getLogger(__name__)

#: Checkpoints are ``<run>/ckpt-<step>.pt``, plus ``best.pt`` (best validation accuracy).
CHECKPOINT_PREFIX = "ckpt"
_Relabel = Relabel  # the old private name (impasto.classify.evaluate imported it)

# Independent random streams derived from the seed (and the rank).
_STREAM_AUGMENT, _STREAM_TORCH, _STREAM_DATA, _STREAM_SPLIT = 1, 2, 3, 4


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
    output: Path | None = None  # the model file written (config.output; rank 0)


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



def _optimizer(model: nn.Module, config: ClassifierTrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; weight decay on weights of two or more dimensions only."""
    assert config.lr is not None and config.weight_decay is not None
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


@torch.no_grad()
def _validate(
    model: nn.Module,
    loader: DataLoader,
    info: DistInfo,
    device: torch.device,
    memory_format: torch.memory_format,
    amp: Callable[[], Any],
) -> dict[str, float]:
    """Validation accuracy and mean loss of ``model`` on this process's shard (``loader``),
    summed over the shards of all processes (a collective under ``torchrun``)."""
    if info.is_distributed:
        broadcast_buffers(model)
    model.eval()
    correct = torch.zeros((), dtype=torch.float64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    for xb, yb in loader:
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


def _train(
    config: ClassifierTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[ClassifierProgress], None] | None,
    abort: Callable[[], bool] | None,
) -> ClassifierRunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run: Run[ClassifierProgress] = Run(
        config, info, device, kind=checkpoint_kind(config.arch), resume=resume,
        prefix=CHECKPOINT_PREFIX, legacy_kinds=(f"{LEGACY_FAMILY}/{config.arch}",),
        best_metric="val_acc", mode="max", progress=progress, abort=abort,
    )

    if config.output and Path(config.output).is_dir():
        raise InputError(f"{config.output}: is a folder; give a file name for the model file")

    # -- data: the training set, the validation set or split -----------------------------------
    data = open_train_val(config, derive_seed(config.seed, _STREAM_SPLIT))
    classes = data.classes
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(
        data.train_set, world_size=world, rank=rank, seed=derive_seed(config.seed, _STREAM_DATA)
    )
    loader = make_loader(data.train_set, config.batch_size, seed=config.seed,
                         num_workers=num_workers, sampler=sampler,
                         pin_memory=device.type == "cuda")
    steps_per_epoch = len(sampler) // config.batch_size
    total_steps = config.steps if config.steps is not None else (
        int(config.epochs or DEFAULT_EPOCHS) * steps_per_epoch
    )
    eval_every = steps_per_epoch if config.eval_every is None else config.eval_every
    val_loader = None
    if data.val_idx.size:  # this process's shard; its own generator, so that iterating
        # draws nothing from the global RNG (exact resume)
        val_loader = DataLoader(Subset(data.val_set, data.val_idx[rank::world].tolist()),
                                batch_size=max(config.batch_size, 256), shuffle=False,
                                num_workers=num_workers,
                                generator=torch.Generator().manual_seed(0))

    # -- the network: input statistics from the training images (or the checkpoint) -----------
    assert config.channels is not None and config.warmup is not None and config.lr is not None
    if run.ckpt is not None:
        net_config = _check_resume_fits(run.ckpt, config.net_config(len(classes), classes))
    else:
        mean, std = input_stats(data.dataset, data.train_idx, config.channels)
        net_config = config.net_config(len(classes), classes, mean, std)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_classifier(net_config)
    nhwc = config.channels_last and nhwc_trainable(device, model)
    memory_format = torch.channels_last if nhwc else torch.preserve_format
    model.to(device=device, memory_format=memory_format)
    model.train()
    opt = _optimizer(model, config)
    gen_augment = torch.Generator(device=device)
    gen_augment.manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, rank))
    torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))  # dropout

    def reseed(step: int) -> None:  # resumed with another number of processes
        gen_augment.manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, rank, step))
        torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))

    run.track(models={"model": model}, optimizers={"opt": opt},
              generators={"augment": gen_augment, "loader": loader.generator},
              extra=lambda: {"net": net_config.to_dict(), "classes": list(classes)})
    run.restore(reseed=reseed)
    batches = run.batches = Batches(loader, sampler, run.epoch, run.pos)
    saved_val = (run.ckpt or {}).get("extra", {}).get("val")
    last_val: dict[str, float] | None = dict(saved_val) if isinstance(saved_val, dict) else None

    model_train: nn.Module = wrap_ddp(model, device) if info.is_distributed else model
    amp = (lambda: autocast(device, dtype))
    crop_pad, hflip = int(config.crop_pad or 0), bool(config.hflip)
    smoothing = float(config.label_smoothing)
    val: dict[str, float] | None = None  # this step's evaluation

    def progress_info(r: Run[ClassifierProgress]) -> ClassifierProgress:
        return ClassifierProgress(r.step, r.start_step, r.total_steps, batches.epoch,
                                  dict(r.stats), r.rate, val, r.manager.best_value)

    with run.session(total_steps):
        run.report(progress_info)
        while run.step < total_steps:
            xb, yb = batches.next()
            xb = (xb.to(device, non_blocking=True) + 1.0) / 2.0
            yb = yb.to(device, non_blocking=True)
            xb = augment_batch(xb, crop_pad, hflip, gen_augment)
            xb = xb.contiguous(memory_format=memory_format)
            lr = config.lr * lr_factor(config.schedule, run.step, total_steps, config.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with amp():
                logits = model_train(xb)
            logits = logits.float()
            loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc = (logits.detach().argmax(1) == yb).float().mean()

            stop = run.end_step({"loss": loss.detach(), "acc": acc},
                                images=config.batch_size * world, scalars=lambda lr=lr: {"lr": lr})
            val = None
            evaluate = run.due(eval_every) or stop
            if evaluate and val_loader is not None:
                val = last_val = _validate(model, val_loader, info, device, memory_format, amp)
                run.log(val)
            run.checkpoint(force=evaluate, metric=val["val_acc"] if val else None, val=val)
            run.report(progress_info)
            if stop:
                break
        if info.is_distributed:
            broadcast_buffers(model)

    output = export_model(run.dir, config.output) if config.output and info.is_main else None
    model.eval()
    best = run.manager.best_value if info.is_main else None
    return ClassifierRunResult(
        run=run.dir,
        step=run.step,
        total_steps=total_steps,
        aborted=run.stopped,
        checkpoint=run.last_checkpoint if info.is_main else None,
        best_checkpoint=run.dir / "best.pt" if best is not None else None,
        best_val_acc=best,
        val=last_val,
        stats=run.stats,
        seconds=run.seconds,
        config=config,
        net_config=net_config,
        model=model,
        optimizer=opt,
        output=output,
    )
