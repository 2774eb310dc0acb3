"""Training a per-style network: :func:`train`, a plain function on the shared run skeleton
(:class:`impasto.train.run.Run`), holding only the data, the networks and the step.

One step (Johnson et al. 2016; with ``adversarial_weight`` the patch discriminator of Li &
Wand 2016)::

    fake = T(x)                                          x: random crops of the content photos
    [opt_d.zero_grad(); loss_d.d_step(fake); opt_d.step()]     D's phase, through DDP(D)
    opt.zero_grad(); loss_g.g_step(x, fake); opt.step()        T's phase, with the plain D frozen

Under ``torchrun`` each process takes its own shard of every epoch's photos (``batch_size``
crops per process and step), T and D are wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (the frozen VGG is not), and rank 0 alone
logs, draws samples and writes checkpoints and the model file. DDP's gradient hooks fire only
for passes through the wrapper, so D's phase runs through ``DDP(D)`` and T's phase through
``DDP(T)`` with the *plain*, frozen D (whose parameters then need no reduction).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impasto.data import CropFolder, make_loader
from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError, escape_line
from impasto.io import load_image, resize, to_tensor
from impasto.nets.patch_disc import PatchDiscriminator
from impasto.nets.transformer import TransformerNet
from impasto.nets.vgg import VGG19Features
from impasto.style.fast.config import FastStyleTrainConfig
from impasto.style.fast.loss import FastStyleLoss
from impasto.style.fast.model import (
    CHECKPOINT_PREFIX,
    LEGACY_TRAIN_KIND,
    MODEL_KIND,
    save_fast_style,
)
from impasto.style.losses import PerceptualLoss
from impasto.train import (
    Batches,
    DistInfo,
    EpochSampler,
    broadcast_buffers,
    config_to_dict,
    derive_seed,
    loader_workers,
    training_session,
    wrap_ddp,
)
from impasto.train.run import Run

__all__ = ["FastStyleProgress", "FastStyleResult", "FastStyleRunResult", "train",
           "train_fast_style"]

log = logging.getLogger(__name__)

# Independent random streams derived from the seed.
_STREAM_TORCH, _STREAM_DATA, _STREAM_CROPS = 1, 2, 3


@dataclass
class FastStyleProgress:
    """What the ``progress`` callback receives: once before the first step (``stats`` empty)
    and after every step, on rank 0 only (``stats`` averaged over the processes)."""

    step: int
    start_step: int
    total_steps: int
    epoch: int
    stats: dict[str, float]
    images_per_s: float | None


@dataclass
class FastStyleRunResult:
    """What :func:`train` returns. The networks are the plain modules (no DDP wrapper), equal
    on every rank."""

    run: Path
    output: Path | None  # the model file written (also when aborted); None on ranks other than 0
    step: int
    total_steps: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    stats: dict[str, float]
    seconds: float
    config: FastStyleTrainConfig
    net: TransformerNet = field(repr=False)
    D: nn.Module | None = field(repr=False)
    opt: torch.optim.Optimizer = field(repr=False)
    opt_d: torch.optim.Optimizer | None = field(repr=False)
    rank: int = 0
    world_size: int = 1


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputError(escape_line(f"{path}: is a folder; give a file name for the {what}"))
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(escape_line(f"{path}: cannot create its folder: {ancestor} is a file"))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(escape_line(f"{path}: folder {ancestor} is not writable"))


def _check_resume_fits(ckpt: Mapping[str, Any], config: FastStyleTrainConfig) -> None:
    src = ckpt.get("path", "checkpoint")
    extra = ckpt.get("extra") or {}
    saved_net = extra.get("net")
    if not isinstance(saved_net, Mapping):
        raise InputError(f"{src}: not a fast-style training checkpoint (no network config)")
    if dict(saved_net) != config.net_config().to_dict():
        raise InputError(
            f"{src} was trained with network {dict(saved_net)}, not "
            f"{config.net_config().to_dict()}; resume with the same network settings"
        )
    saved_disc = extra.get("disc")
    disc = config.disc_config()
    want = None if disc is None else disc.to_dict()
    if (saved_disc is None) != (want is None):
        had = "with" if saved_disc is not None else "without"
        raise InputError(
            f"{src} was trained {had} the adversarial loss; resume it {had} "
            "--adversarial-weight"
        )
    if saved_disc is not None and dict(saved_disc) != want:
        raise InputError(
            f"{src} was trained with discriminator {dict(saved_disc)}, not {want}; resume with "
            "the same discriminator settings"
        )


def train(
    config: FastStyleTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[FastStyleProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
    vgg: nn.Module | None = None,
) -> FastStyleRunResult:
    """Train a per-style network as ``config`` says and write its model file (see the module
    doc); returns a :class:`FastStyleRunResult` when done or aborted.

    ``resume``: a checkpoint file or run folder to continue from, exactly where it stopped (its
    network settings must equal ``config``'s; checkpoints of the release before are read too).
    Without it, a run folder that already holds checkpoints is refused. ``progress(info)`` is
    called on rank 0 before the first step and after each step. ``abort()`` is polled after
    each step: when it returns True (on any rank) a checkpoint is written, the model file is
    written from the current weights, and the function returns with ``aborted=True``. A
    ``KeyboardInterrupt`` during training also writes the model file from the weights as they
    are (no checkpoint: a step may be half done), then propagates. ``vgg``: a feature network
    to use instead of building VGG19 (RGB ``[0, 1]`` in, ``{layer: features}`` out, e.g. a
    tiny one in tests); under ``torchrun`` each process passes its own.

    Under ``torchrun`` the process group is joined here (and left at the end, unless the
    caller had joined it already).

    Raises :class:`InputError` for bad settings, files or checkpoints before anything is
    written, and :class:`~impasto.train.NonFiniteLossError` when a loss becomes NaN or
    infinite (nothing is saved after it: the last checkpoint stays the last good one).
    """
    if not isinstance(config, FastStyleTrainConfig):
        raise TypeError(f"train expects a FastStyleTrainConfig, not {type(config).__name__}")
    config.validate()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort, vgg)


#: The name before issue #12 (kept for one release).
train_fast_style = train
FastStyleResult = FastStyleRunResult


def _stream_seed(seed: int, stream: int, rank: int, *more: int) -> int:
    """The seed of a random stream on process ``rank``; rank 0's streams are those of a
    single-process run (so one process trains exactly as before DDP existed)."""
    return derive_seed(seed, stream, *((rank,) if rank or more else ()), *more)


def _all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _train(
    config: FastStyleTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[FastStyleProgress], None] | None,
    abort: Callable[[], bool] | None,
    vgg: nn.Module | None,
) -> FastStyleRunResult:
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    output = Path(config.output)
    run = Run(config, info, device, kind=MODEL_KIND, resume=resume,
              run_dir=config.run_folder(), prefix=CHECKPOINT_PREFIX,
              legacy_kinds=(LEGACY_TRAIN_KIND,), progress=progress, abort=abort)
    _check_writable(output, "model file")
    if run.ckpt is not None:
        _check_resume_fits(run.ckpt, config)

    # -- data ------------------------------------------------------------------------------------
    dataset = CropFolder(config.content, config.size, seed=config.seed, hflip=config.hflip,
                         what="content photos")
    style_pil = load_image(config.style)
    style_img = resize(style_pil, longest=config.style_size)
    style = to_tensor(style_img).to(device)
    if config.adversarial_weight and config.adv_crop > min(style.shape[-2:]):
        raise InputError(
            f"adversarial crop {config.adv_crop} does not fit the style image at style size "
            f"{config.style_size} ({style_img.width}x{style_img.height}); lower --adv-crop"
        )
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(len(dataset), derive_seed(config.seed, _STREAM_DATA), world_size=world,
                           rank=rank, order="derived", items="content photos")
    loader = make_loader(dataset, config.batch_size, seed=config.seed, num_workers=num_workers,
                         sampler=sampler, pin_memory=device.type == "cuda")

    # -- networks, losses, optimisers, random streams ------------------------------------------
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    if vgg is None:
        layers = list(dict.fromkeys(config.content_layers + config.style_layers))
        vgg = VGG19Features(layers, weights=config.vgg, weights_path=config.vgg_weights)
    vgg = vgg.to(device=device, memory_format=memory_format).eval().requires_grad_(False)
    perceptual = PerceptualLoss(
        vgg, config.content_layers, config.style_layers, content_weight=config.content_weight,
        style_weight=config.style_weight, tv_weight=config.tv_weight,
    )
    perceptual.set_styles([style])  # the target in float32, once

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    net_config, disc_config = config.net_config(), config.disc_config()
    net = TransformerNet(net_config).to(device=device, memory_format=memory_format).train()
    D = None
    if disc_config is not None:
        D = PatchDiscriminator(disc_config).to(device=device, memory_format=memory_format).train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(0.5, 0.999)) if D else None
    gen_crops = torch.Generator().manual_seed(_stream_seed(config.seed, _STREAM_CROPS, rank))
    torch.manual_seed(_stream_seed(config.seed, _STREAM_TORCH, rank))
    models: dict[str, nn.Module] = {"net": net}
    optimizers: dict[str, torch.optim.Optimizer] = {"net": opt}
    if D is not None and opt_d is not None:
        models["D"], optimizers["D"] = D, opt_d

    def reseed(step: int) -> None:  # resumed with another number of processes
        gen_crops.manual_seed(_stream_seed(config.seed, _STREAM_CROPS, rank, step))
        torch.manual_seed(_stream_seed(config.seed, _STREAM_TORCH, rank, step))

    style_name = Path(config.style).name
    run.track(models=models, optimizers=optimizers,
              generators={"crops": gen_crops, "loader": loader.generator},
              extra=lambda: {"net": net_config.to_dict(), "style_name": style_name,
                             "disc": None if disc_config is None else disc_config.to_dict()})
    run.restore(reseed=reseed)
    batches = run.batches = Batches(loader, sampler, run.epoch, run.pos)

    # -- distributed wrappers and the loss phases --------------------------------------------
    net_train: nn.Module = wrap_ddp(net, device) if info.is_distributed else net
    D_train = wrap_ddp(D, device) if info.is_distributed and D is not None else D
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))
    opts = dict(style=style, adversarial_weight=config.adversarial_weight, kind=config.adv_loss,
                crop=config.adv_crop, generator=gen_crops, autocast=amp)
    # Both phases draw their crops from the same generator, in the same order as one loss would.
    loss_d = FastStyleLoss(perceptual, D_train, **opts)  # D's phase through DDP(D)
    loss_g = FastStyleLoss(perceptual, D, **opts)  # T's phase with the plain D, frozen

    fixed: Tensor | None = None
    if info.is_main:
        fixed = torch.stack([dataset.center(i) for i in range(config.n_samples)]).to(device)

    def samples() -> None:
        if run.logger is None or fixed is None:
            return
        net.eval()
        with torch.no_grad(), (amp() if amp else contextlib.nullcontext()):
            out = net(fixed.contiguous(memory_format=memory_format)).float()
        net.train()
        run.logger.images(run.step, "samples", torch.cat([fixed, out]), nrow=config.n_samples,
                          value_range=(0.0, 1.0), save_png=True)

    def write_model(aborted: bool) -> Path:
        metadata = {
            "style": {"name": style_name, "size": [style_img.width, style_img.height]},
            "content": str(config.content),
            "steps": run.step,
            "aborted": aborted,
            "training": config_to_dict(config),
        }
        return save_fast_style(net, output, metadata, thumbnail=style_pil)

    def progress_info(r: Run[FastStyleProgress]) -> FastStyleProgress:
        return FastStyleProgress(r.step, r.start_step, r.total_steps, batches.epoch,
                                 dict(r.stats), r.rate)

    batch_all = config.batch_size * world  # crops per step, all processes
    try:
        with run.session(config.steps):
            run.report(progress_info)
            while run.step < config.steps:
                x = batches.next().to(device, non_blocking=True, memory_format=memory_format)
                with amp() if amp else contextlib.nullcontext():
                    fake = net_train(x)
                stats: dict[str, Tensor] = {}
                if loss_d.adversarial:
                    assert opt_d is not None
                    opt_d.zero_grad(set_to_none=True)
                    stats |= loss_d.d_step(fake)
                    opt_d.step()
                opt.zero_grad(set_to_none=True)
                stats = loss_g.g_step(x, fake) | stats
                opt.step()
                stop = run.end_step(stats, images=batch_all,
                                    scalars=lambda: {"lr": opt.param_groups[0]["lr"]})
                if run.due(config.sample_every):
                    samples()  # rank 0 only
                run.checkpoint(force=stop)  # every rank: they gather their random streams
                run.report(progress_info)
                if stop:
                    break
            if info.is_distributed:
                broadcast_buffers(net, D)
    except KeyboardInterrupt:
        # Interrupted at once (a second Ctrl-C, or Ctrl-C in the Python API): keep what was
        # learnt in a model file; no checkpoint, since the step may be half done.
        if info.is_main and run.step > 0 and _all_finite(net):
            path = write_model(True)
            log.warning("interrupted at step %d: wrote %s from the current weights",
                        run.step, path)
        raise

    written = write_model(run.stopped) if info.is_main else None
    return FastStyleRunResult(
        run=run.dir, output=written, step=run.step, total_steps=config.steps,
        aborted=run.stopped, checkpoint=run.last_checkpoint if info.is_main else None,
        stats=run.stats, seconds=run.seconds, config=config, net=net, D=D, opt=opt,
        opt_d=opt_d, rank=rank, world_size=world,
    )
