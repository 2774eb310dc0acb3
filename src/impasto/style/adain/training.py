"""Training an AdaIN decoder (Huang & Belongie 2017): :func:`train`, a plain function driven
alike by the CLI, tests and other front ends through ``progress``/``abort`` callbacks. The run
folder, resume, logging and checkpoints are :class:`impasto.train.run.Run`'s.

The encoder is VGG19 up to ``relu4_1``, frozen (:class:`~impasto.nets.vgg.VGG19Features`, the
Caffe weights by default). For a batch of content crops ``c`` and style crops ``s``
(:func:`decoder_losses`)::

    t = AdaIN(f(c), f(s))                       # relu4_1 features, f = the encoder
    g = decoder(t)
    L = content_weight * mse(f(g), t)                                   # against the target
      + style_weight * sum_l [mse(mu(f_l(g)), mu(f_l(s))) + mse(sigma(f_l(g)), sigma(f_l(s)))]

with ``l`` over ``relu1_1 ... relu4_1``. Adam at ``lr / (1 + lr_decay * step)``, as in the
authors' code. Images are resized to ``load_size`` (shorter side) and randomly cropped to
``image_size`` (:class:`~impasto.data.CropFolder`); each epoch of a folder is a seeded
permutation (:class:`~impasto.train.EpochSampler`, repeated to fill a batch on every process
when the folder is small) and each crop a function of the seed, the epoch and the index, so a
resumed run sees the same batches as an uninterrupted one. Checkpoints hold the decoder, Adam
and both folders' positions; at the end the decoder file is written
(:mod:`impasto.style.adain.model`).

Under ``torchrun`` (``WORLD_SIZE`` > 1; gloo on CPU, NCCL on CUDA) the same function trains
data-parallel: each process takes its own shard of every epoch's content and style images
(``batch_size`` crops of each per process and step), the decoder is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (the frozen encoder is not), the losses and
the abort decision are averaged over the processes, and rank 0 alone logs and writes the
checkpoints (holding every rank's random streams) and the decoder file. ``deterministic``
turns on deterministic algorithms (and loads data in the main process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impasto.data import CropFolder, make_loader
from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.nets.adain import (
    AdaINDecoder,
    AdaINDecoderConfig,
    adain,
    encoder_widths,
    mean_std,
)
from impasto.nets.vgg import VGG19Features
from impasto.style.adain.config import (
    CHECKPOINT_KIND,
    CHECKPOINT_PREFIX,
    LEGACY_CHECKPOINT_KIND,
    AdaINTrainConfig,
)
from impasto.style.adain.model import save_decoder
from impasto.train import (
    Batches,
    DistInfo,
    EpochSampler,
    all_reduce_mean,
    broadcast_buffers,
    config_to_dict,
    derive_seed,
    loader_workers,
    training_session,
    wrap_ddp,
)
from impasto.train.run import Run

__all__ = ["AdaINProgress", "AdaINRunResult", "decoder_losses", "train"]

log = logging.getLogger(__name__)

# Random streams derived from the seed: the crops of each folder, and the global torch stream
# of ranks > 0 (rank 0 keeps the single-process one).
_STREAM_CONTENT, _STREAM_STYLE, _STREAM_TORCH = 11, 12, 13
#: The losses of a step, in the order of :attr:`AdaINRunResult.history`'s rows.
LOSSES = ("loss", "content", "style")


@dataclass
class AdaINProgress:
    """What the ``progress`` callback receives: before the first step (``stats`` empty) and
    after every step, on rank 0 only."""

    step: int
    start_step: int
    total_steps: int
    stats: dict[str, float]
    images_per_s: float | None


@dataclass
class AdaINRunResult:
    """What :func:`train` returns. ``decoder`` is the plain module (no DDP wrapper), in eval
    mode."""

    run: Path
    output: Path | None  # the decoder file (rank 0; None when aborted)
    step: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    stats: dict[str, float]
    history: list[dict[str, float]]  # the losses of every step of this call
    seconds: float
    decoder: AdaINDecoder = field(repr=False)
    rank: int = 0  # this process's, under torchrun (only rank 0 writes files)
    world_size: int = 1


def _style_loss(gen: Mapping[str, Tensor], style: Mapping[str, Tensor], layers: Sequence[str]
                ) -> Tensor:
    total = None
    for name in layers:
        mg, sg = mean_std(gen[name])
        ms, ss = mean_std(style[name])
        term = torch.mean((mg - ms) ** 2) + torch.mean((sg - ss) ** 2)
        total = term if total is None else total + term
    assert total is not None
    return total


def decoder_losses(encoder: nn.Module, decoder: nn.Module, content: Tensor, style: Tensor,
                   style_layers: Sequence[str], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The content and style losses (0-d float32 tensors with gradients to ``decoder``) of
    decoding AdaIN of the content and style crops ``(B, 3, S, S)`` in ``[0, 1]`` (see the
    module doc); the encoder runs without gradients on the crops, in ``dtype`` autocast."""
    device = content.device
    with torch.no_grad(), autocast(device, dtype):
        fc = encoder(content)["relu4_1"]
        fs = encoder(style)
    fs = {k: v.float() for k, v in fs.items()}
    t = adain(fc, fs["relu4_1"])
    with autocast(device, dtype):
        fg = encoder(decoder(t))
    loss_c = torch.mean((fg["relu4_1"].float() - t) ** 2)
    return loss_c, _style_loss(fg, fs, style_layers)


# --------------------------------------------------------------------------------------------
# the loop


def train(
    config: AdaINTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[AdaINProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
    encoder: nn.Module | None = None,
) -> AdaINRunResult:
    """Train an AdaIN decoder as ``config`` says (see the module doc); returns when done or
    aborted (``abort()`` polled after each step, on every process; when it returns True on any,
    a checkpoint is written and all stop; no decoder file is written then).

    ``resume``: a checkpoint or run folder to continue exactly where it stopped (exactly with
    the same number of processes; checkpoints of the release before resume too). Without it, a
    run folder that already holds checkpoints is refused. ``encoder``: a
    :class:`~impasto.nets.vgg.VGG19Features` returning ``style_layers`` and ``relu4_1`` to use
    instead of the pretrained one (tests pass a small random one; under ``torchrun`` each
    process passes its own). ``progress`` is called on rank 0 only. Under ``torchrun`` the
    process group is joined here (and left at the end, unless the caller had joined it
    already). Raises :class:`InputError` for bad settings or data before anything is written,
    and :class:`~impasto.train.NonFiniteLossError` when the loss diverges.
    """
    if not isinstance(config, AdaINTrainConfig):
        raise TypeError(f"train expects an AdaINTrainConfig, not {type(config).__name__}")
    config.validate()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort, encoder)


def _folder_batches(data: CropFolder, seed: int, config: AdaINTrainConfig, info: DistInfo,
                    position: tuple[int, int]) -> Batches:
    """Endless batches of ``data`` from ``position`` (epoch, indices used): each epoch a
    permutation of ``seed`` (``derive_seed(seed, epoch)``), filled up to a batch on every
    process, this process's shard of it."""
    world = info.world_size
    sampler = EpochSampler(data, seed, world_size=world, rank=info.rank, order="derived",
                           fill=config.batch_size * world, items=data.what)
    loader = make_loader(data, config.batch_size, seed=seed,
                         num_workers=loader_workers(config.num_workers, config.deterministic),
                         sampler=sampler, pin_memory=info.device.type == "cuda")
    return Batches(loader, sampler, *position)


def _positions(ckpt: Mapping[str, Any] | None, next_epoch: bool) -> dict[str, tuple[int, int]]:
    """The content and style folders' (epoch, position) to resume from; ``next_epoch``: from
    the start of the next epoch (resumed by another number of processes)."""
    extra = (ckpt or {}).get("extra") or {}
    out = {}
    for key in ("content", "style"):
        epoch, pos = (int(v) for v in (extra.get(key) or (0, 0)))
        out[key] = (epoch + (pos > 0), 0) if next_epoch else (epoch, pos)
    return out


def _train(
    config: AdaINTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[AdaINProgress], None] | None,
    abort: Callable[[], bool] | None,
    encoder: nn.Module | None,
) -> AdaINRunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run: Run[AdaINProgress] = Run(
        config, info, device, kind=CHECKPOINT_KIND, resume=resume, prefix=CHECKPOINT_PREFIX,
        legacy_kinds=(LEGACY_CHECKPOINT_KIND,), progress=progress, abort=abort,
    )
    output = Path(config.output) if config.output else run.dir / "decoder.pt"
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give a decoder file name such as decoder.pt")

    # -- data ------------------------------------------------------------------------------
    contents, styles = (
        CropFolder(folder, config.image_size, load_size=config.load_size,
                   seed=derive_seed(config.seed, stream), resample="bilinear", what=what)
        for folder, stream, what in ((config.content, _STREAM_CONTENT, "content photos"),
                                     (config.styles, _STREAM_STYLE, "style images"))
    )
    style_names = [Path(n).name for n in styles.names[:50]]

    # -- networks ----------------------------------------------------------------------------
    layers = list(dict.fromkeys([*config.style_layers, "relu4_1"]))
    encoder_weights = config.vgg if encoder is None else None
    if encoder is None:
        encoder = VGG19Features(layers, weights=config.vgg, weights_path=config.vgg_weights)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    encoder = encoder.eval().requires_grad_(False).to(device, memory_format=memory_format)
    dec_config = AdaINDecoderConfig(encoder_widths(encoder))
    encoder_info = {"weights": encoder_weights, "widths": list(dec_config.widths),
                    "layer": "relu4_1"}
    if run.ckpt is not None:
        saved = (run.ckpt.get("extra") or {}).get("decoder")
        if saved != dec_config.to_dict():
            raise InputError(f"{run.ckpt['path']} was trained with decoder {saved}, not "
                             f"{dec_config.to_dict()}; resume with the same encoder")
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    decoder = AdaINDecoder(dec_config).to(device, memory_format=memory_format).train()
    opt = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    if rank:  # rank 0 keeps the stream of a single-process run
        torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))

    def reseed(step: int) -> None:  # resumed by another number of processes
        reseeded.append(step)
        torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))

    reseeded: list[int] = []
    run.track(models={"decoder": decoder}, optimizers={"decoder": opt}, extra=lambda: {
        "decoder": dec_config.to_dict(), "encoder": encoder_info, "styles": style_names,
        "content": [content.epoch, content.pos], "style": [style.epoch, style.pos],
    })
    run.restore(reseed=reseed)
    pos = _positions(run.ckpt, next_epoch=bool(reseeded))
    content = _folder_batches(contents, config.seed, config, info, pos["content"])
    style = _folder_batches(styles, config.seed + 1, config, info, pos["style"])
    run.batches = content  # its epoch is logged
    decoder_train: nn.Module = wrap_ddp(decoder, device) if info.is_distributed else decoder
    # the losses of every step, kept on the device and read once at the end
    history = torch.zeros(max(config.steps - run.step, 0), len(LOSSES), device=device)
    start = run.step

    def progress_info(r: Run[AdaINProgress]) -> AdaINProgress:
        return AdaINProgress(r.step, r.start_step, r.total_steps, dict(r.stats), r.rate)

    with run.session(config.steps):
        run.report(progress_info)
        while run.step < config.steps:
            lr = config.lr / (1.0 + config.lr_decay * run.step)
            for group in opt.param_groups:
                group["lr"] = lr
            c = content.next().to(device, non_blocking=True).contiguous(
                memory_format=memory_format)
            s = style.next().to(device, non_blocking=True).contiguous(memory_format=memory_format)
            loss_c, loss_s = decoder_losses(encoder, decoder_train, c, s, config.style_layers,
                                            dtype)
            loss = config.content_weight * loss_c + config.style_weight * loss_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            values = torch.stack([loss, loss_c, loss_s]).detach()
            history[run.step - start] = values
            stop = run.end_step(dict(zip(LOSSES, values.unbind())), images=c.shape[0] * world,
                                scalars=lambda lr=lr: {"lr": lr})
            run.checkpoint(force=stop)
            run.report(progress_info)
            if stop:
                break
        if info.is_distributed:
            broadcast_buffers(decoder)
    rows = all_reduce_mean(history[: run.step - start]).cpu().double().tolist()

    decoder.eval()
    written = None
    if not run.stopped and info.is_main:
        written = save_decoder(output, decoder, encoder=encoder_info,
                               training=config_to_dict(config), step=run.step,
                               images_seen=run.images_seen, styles=style_names)
    return AdaINRunResult(
        run=run.dir, output=written, step=run.step, aborted=run.stopped,
        checkpoint=run.last_checkpoint if info.is_main else None, stats=run.stats,
        history=[dict(zip(LOSSES, r)) for r in rows], seconds=run.seconds, decoder=decoder,
        rank=rank, world_size=world,
    )
