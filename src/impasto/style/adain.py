"""Arbitrary style transfer with AdaIN (Huang & Belongie 2017): the decoder's training and the
inference pipeline.

Training (:func:`train`, a plain function with ``progress``/``abort`` callbacks): the encoder is
VGG19 up to ``relu4_1``, frozen (:class:`~impasto.nets.vgg.VGG19Features`, the Caffe weights by
default). For a batch of content crops ``c`` and style crops ``s``::

    t = AdaIN(f(c), f(s))                       # relu4_1 features, f = the encoder
    g = decoder(t)
    L = content_weight * mse(f(g), t)                                   # against the target
      + style_weight * sum_l [mse(mu(f_l(g)), mu(f_l(s))) + mse(sigma(f_l(g)), sigma(f_l(s)))]

with ``l`` over ``relu1_1 ... relu4_1``. Adam at ``lr / (1 + lr_decay * step)``, as in the
authors' code. Images are resized to ``load_size`` (shorter side) and randomly cropped to
``image_size``; the crops are a function of the seed, the epoch and the index, so a resumed run
sees the same batches as an uninterrupted one. Checkpoints (``impasto.train``) hold the
decoder, Adam and the data position; at the end the decoder file is written.

Under ``torchrun`` (``WORLD_SIZE`` > 1; gloo on CPU, NCCL on CUDA) the same function trains
data-parallel, as :func:`impasto.style.fast.train_fast_style` does: each process takes its own
shard of every epoch's content and style images (``batch_size`` crops of each per process and
step), the decoder is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (the frozen
encoder is not), the losses and the abort decision are averaged over the processes, and rank 0
alone logs and writes the checkpoints (holding every rank's random streams) and the decoder
file. ``deterministic`` turns on deterministic algorithms (and loads data in the main process).

A decoder file is an impasto model file (:mod:`impasto.train.modelfile`) of kind
``"adain/decoder"``: the decoder's state dict, its architecture and the encoder it was trained
with as ``config``, the training settings, styles and step in ``extra``. :class:`AdaIN` loads
it (and the decoder files of the release before, kind ``"adain-decoder"``).

Inference (:class:`AdaIN`)::

    ada = AdaIN.load("decoder.pt")
    out = ada("photo.jpg", "starry_night.jpg", alpha=0.8)                  # -> PIL image
    out = ada(photo, [style_a, style_b], weights=[3, 1])                    # interpolation
    out = ada(photo, [style_a, style_b], masks=[sky_mask, ground_mask])     # spatial control
    out = ada(photo, style, preserve_color="luminance")                     # or "histogram"
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.infer.precision import InferencePrecision, decide_precision
from impasto.infer.runner import InferenceRunner
from impasto.infer.tiling import plan_tiles, run_tiled
from impasto.io import DEFAULT_MAX_PIXELS, load_image, resize, to_pil, to_tensor
from impasto.nets.adain import (
    ENCODER_LAYERS,
    STRIDE,
    AdaINDecoder,
    AdaINDecoderConfig,
    AdaINStylizer,
    _pad_to,
    adain,
    encoder_widths,
    mean_std,
    region_sums,
)
from impasto.nets.vgg import VGG19_LAYER_NAMES, VGG19_WEIGHTS, VGG19Features
from impasto.style.color import COLOR_MODES, combine_luminance, luminance_image, match_color
from impasto.train import (
    CheckpointManager,
    DistInfo,
    RunLogger,
    agree_across_ranks,
    broadcast_buffers,
    check_finite,
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
from impasto.train.config import check_bool, check_int

__all__ = [
    "CHECKPOINT_KIND",
    "COLOR_MODES",
    "DECODER_FORMAT",
    "DECODER_KIND",
    "AdaIN",
    "AdaINProgress",
    "AdaINRunResult",
    "AdaINTrainConfig",
    "load_decoder",
    "save_decoder",
    "train",
]

log = logging.getLogger(__name__)

DECODER_KIND = "adain/decoder"  # (files of the release before it said "adain-decoder")
CHECKPOINT_KIND = "adain/train"
#: Version of the decoder file's layout (:data:`impasto.train.modelfile.FORMAT_VERSION`).
DECODER_FORMAT = 1
_STREAM_CONTENT, _STREAM_STYLE = 11, 12
#: The global torch stream of ranks > 0 (rank 0 keeps the single-process one).
_STREAM_TORCH = 13


# --------------------------------------------------------------------------------------------
# decoder files


def save_decoder(
    path: str | os.PathLike[str],
    decoder: AdaINDecoder,
    *,
    encoder: dict[str, Any],
    training: dict[str, Any] | None = None,
    step: int = 0,
    images_seen: int = 0,
    styles: Sequence[str] = (),
) -> Path:
    """Write a decoder file (see the module doc). ``encoder``: ``{"weights": "caffe" | ... |
    None, "widths": [...], "layer": "relu4_1"}``."""
    from impasto.train import unwrap_model
    from impasto.train.modelfile import save_model

    decoder = unwrap_model(decoder)
    return save_model(
        path, kind=DECODER_KIND,
        config={"decoder": decoder.config.to_dict(), "encoder": dict(encoder)},
        state_dict=decoder.state_dict(),
        extra={"training": dict(training or {}), "styles": list(styles), "step": int(step),
               "images_seen": int(images_seen)},
    )


def load_decoder(path: str | os.PathLike[str]) -> tuple[AdaINDecoder, dict[str, Any]]:
    """Rebuild the decoder of a decoder file (this format or the previous release's); returns
    it (eval mode, CPU) and the file's metadata (``decoder``, ``encoder``, ``training``,
    ``path``, ``step``, ``styles``). A file of another kind (a per-style model, a GAN or
    training checkpoint) raises :class:`InputError` naming it."""
    from impasto.train.modelfile import WrongKindError, load_model

    p = Path(path)
    try:
        model = load_model(p, kind=DECODER_KIND)
    except WrongKindError as e:
        raise InputError(f"{p}: not an AdaIN decoder file (it is a '{e.legacy or e.kind}' "
                         "file)") from None
    if model.training_checkpoint:
        raise InputError(f"{p}: not an AdaIN decoder file (it is a '{model.legacy}' file) (a "
                         "training checkpoint: use the decoder file the run wrote at the end)")
    try:
        config = AdaINDecoderConfig.from_dict(model.config.get("decoder") or {})
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
    decoder = AdaINDecoder(config)
    restore({"path": str(p), "models": {"decoder": model.state_dict}}, {"decoder": decoder},
            rng=False)
    decoder.eval().requires_grad_(False)
    info = {**model.config, "training": model.extra.get("training") or {}, "path": str(p),
            "step": model.extra.get("step", 0), "styles": model.extra.get("styles", [])}
    return decoder, info


# --------------------------------------------------------------------------------------------
# the pipeline


def _load_styles(styles: Any, max_pixels: int | None, style_size: int | None) -> list[Tensor]:
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not items:
        raise InputError("no style image given")
    out = []
    for s in items:
        if isinstance(s, Tensor) and s.ndim == 4:
            t = s.float()
        else:
            img = load_image(s, max_pixels=max_pixels)
            if style_size and max(img.size) > style_size:
                img = resize(img, longest=style_size)
            t = to_tensor(img)
        out.append(t)
    return out


def _load_masks(masks: Any, max_pixels: int | None) -> Tensor:
    """Mask images (paths, PIL, arrays; white = the region) or a tensor ``(K, H, W)`` ->
    float ``(K, H, W)`` in ``[0, 1]``; all masks are brought to the first one's size."""
    if isinstance(masks, Tensor):
        m = masks.float()
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3:
            raise InputError(f"masks must be a (K, H, W) tensor, not {tuple(masks.shape)}")
        return m.clamp(0, 1)
    out: list[Tensor] = []
    for item in masks:
        if isinstance(item, Tensor) and item.ndim == 2:
            t = item.float()[None]
        else:
            img = load_image(item, max_pixels=max_pixels)
            t = to_tensor(img).mean(1)  # (1, H, W)
        if out and t.shape[-2:] != out[0].shape[-2:]:
            t = torch.nn.functional.interpolate(t[None], size=out[0].shape[-2:],
                                                mode="bilinear", align_corners=False)[0]
        out.append(t)
    return torch.cat(out).clamp(0, 1)


class AdaIN:
    """Arbitrary style transfer with a trained decoder (Huang & Belongie 2017).

    ``AdaIN.load(path)`` rebuilds the decoder from its file and the encoder (VGG19 to
    ``relu4_1``) from the weights it was trained with; calling the pipeline stylises. See the
    module doc for examples. ``encoder`` may be given directly (tests use a small one).
    """

    def __init__(
        self,
        decoder: AdaINDecoder,
        encoder: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if encoder_widths(encoder) != tuple(decoder.config.widths):
            raise InputError(
                f"the decoder was built for an encoder of widths {decoder.config.widths}, "
                f"not {encoder_widths(encoder)}"
            )
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.precision = precision
        self._precision(precision)  # validate early
        self.decoder = decoder.eval().requires_grad_(False).to(self.device)
        self.encoder = encoder.eval().requires_grad_(False).to(self.device)
        self.metadata = dict(metadata or {})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        vgg_weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        encoder: nn.Module | None = None,
    ) -> AdaIN:
        """Load a decoder file. ``vgg_weights``: a local file of the VGG19 weights the decoder
        was trained with (default: the packaged Caffe weights). Raises :class:`InputError` for
        a file of another kind and for missing weights."""
        decoder, meta = load_decoder(path)
        if encoder is None:
            enc = meta.get("encoder") or {}
            source = enc.get("weights")
            if source is None:
                raise InputError(
                    f"{path}: this decoder was trained with a random test encoder; pass it "
                    "as encoder="
                )
            if source not in VGG19_WEIGHTS:
                raise InputError(f"{path}: unknown encoder weights {source!r}")
            encoder = VGG19Features([enc.get("layer", "relu4_1")], weights=source,
                                    weights_path=vgg_weights)
        return cls(decoder, encoder, device=device, precision=precision, metadata=meta)

    # -- building blocks

    def _precision(self, precision: str | InferencePrecision | None,
                   compile: bool | str = "auto") -> InferencePrecision:
        """The precision of one call (``None``: the pipeline's own), decided once by
        :func:`~impasto.infer.precision.decide_precision` and handed to the style statistics
        and the runner alike; a decided one is kept."""
        if isinstance(precision, InferencePrecision):
            return precision
        return decide_precision(precision or self.precision, self.device, AdaINStylizer,
                                compile=compile)

    @torch.inference_mode()
    def style_stats(self, styles: Sequence[Tensor],
                    precision: str | InferencePrecision | None = None
                    ) -> tuple[Tensor, Tensor]:
        """``relu4_1`` mean and std ``(K, C)`` of style images (each ``(1, 3, H, W)``), in the
        float precision of the work beside the network (with int8: what ``auto`` picks)."""
        means, stds = [], []
        dtype = self._precision(precision).work_dtype
        for s in styles:
            x, _, _ = _pad_to(s.to(self.device, torch.float32), STRIDE)
            with autocast(self.device, dtype):
                f = self.encoder(x)["relu4_1"]
            m, sd = mean_std(f)
            means.append(m.flatten(1).mean(0))
            stds.append(sd.flatten(1).mean(0))
        return torch.stack(means), torch.stack(stds)

    def stylizer(
        self,
        styles: Sequence[Tensor],
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Tensor | None = None,
        precision: str | InferencePrecision | None = None,
    ) -> AdaINStylizer:
        """An image-to-image module with these styles fixed (for batches, folders, video,
        tiling and export). ``styles``: tensors ``(1, 3, H, W)`` in ``[0, 1]``."""
        _check_counts(len(styles), weights, masks)
        mean, std = self.style_stats(styles, precision)
        return AdaINStylizer(self.encoder, self.decoder, mean, std, weights=weights,
                             masks=masks, alpha=_alpha(alpha)).to(self.device)

    def runner(self, stylizer: AdaINStylizer, *,
               precision: str | InferencePrecision | None = None,
               tile: int | str | None = None, overlap: int = 128, compile: bool | str = "auto",
               channels_last: bool | None = None, memory_budget: int | None = None
               ) -> InferenceRunner:
        """An :class:`~impasto.infer.runner.InferenceRunner` for ``stylizer`` whose tiling
        computes the content statistics over the whole image first (two passes)."""
        return InferenceRunner(
            stylizer, device=self.device, precision=self._precision(precision, compile),
            channels_last=channels_last, compile=compile, tile=tile, overlap=overlap,
            memory_budget=memory_budget, align=STRIDE, tiled=_tiled_adain,
        )

    def transform(
        self,
        styles: Sequence[Tensor],
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Tensor | None = None,
        preserve_color: str = "none",
        **runner_options: Any,
    ) -> Callable[[Tensor], Tensor]:
        """A batch function ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` for
        :mod:`impasto.style.apply`, with colour preservation: ``luminance`` stylises the
        luminance and keeps each input's chroma; ``histogram`` recolours the styles to each
        batch's colours first (the style statistics are then recomputed per batch)."""
        _check_color(preserve_color)
        _check_counts(len(styles), weights, masks)
        precision = self._precision(runner_options.get("precision"),
                                    runner_options.get("compile", "auto"))
        runner_options = {**runner_options, "precision": precision}
        if preserve_color == "luminance":
            styles = [luminance_image(s) for s in styles]
        if preserve_color != "histogram":
            run = self.runner(self.stylizer(styles, alpha=alpha, weights=weights, masks=masks,
                                            precision=precision), **runner_options)
        else:
            run = None

        def apply(x: Tensor) -> Tensor:
            if preserve_color == "histogram":
                recoloured = [match_color(s, x) for s in styles]
                r = self.runner(self.stylizer(recoloured, alpha=alpha, weights=weights,
                                              masks=masks, precision=precision),
                                **runner_options)
                return r(x)
            assert run is not None
            if preserve_color == "luminance":
                y = run(luminance_image(x))
                return combine_luminance(y, x)
            return run(x)

        if run is not None:  # folders and videos announce their batches (compile="auto")
            apply.expect = run.expect  # type: ignore[attr-defined]
        apply.precision = precision.name  # type: ignore[attr-defined]
        return apply

    # -- the call

    def __call__(
        self,
        content: Any,
        style_or_styles: Any,
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Any = None,
        preserve_color: str = "none",
        size: int | None = None,
        style_size: int | None = 512,
        tile: int | str | None = None,
        precision: str | InferencePrecision | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> Image.Image | Tensor:
        """Stylise ``content`` with one style image or a list of them.

        Args:
            alpha: content-style trade-off in ``[0, 1]`` (0: the decoder's reconstruction of
                the content; 1: full AdaIN).
            weights: one interpolation weight per style (default equal).
            masks: one mask per style (images or a ``(K, H, W)`` tensor; white = the region):
                each region of the content takes its own style.
            preserve_color: ``"none"``, ``"luminance"`` or ``"histogram"`` (Gatys et al. 2017).
            size: resize the content to this longest side first (None: keep).
            style_size: shrink style images to this longest side (None: keep).
            tile: see :class:`~impasto.infer.runner.InferenceRunner`.

        Images may be paths, PIL images, arrays or tensors. A tensor content ``(1, 3, H, W)`` in
        ``[0, 1]`` gives a tensor; anything else gives an RGB PIL image.
        """
        as_tensor = isinstance(content, Tensor)
        if as_tensor:
            x = content.float()
            if x.ndim == 3:
                x = x[None]
        else:
            img = load_image(content, max_pixels=max_pixels)
            if size:
                img = resize(img, longest=size)
            x = to_tensor(img)
        styles = _load_styles(style_or_styles, max_pixels, style_size)
        m = _load_masks(masks, max_pixels) if masks is not None else None
        _check_color(preserve_color)
        _check_counts(len(styles), weights, m)
        if preserve_color == "luminance":
            styles = [luminance_image(s, like=x) for s in styles]
            inp = luminance_image(x)
        elif preserve_color == "histogram":
            styles = [match_color(s, x) for s in styles]
            inp = x
        else:
            inp = x
        choice = self._precision(precision)
        run = self.runner(self.stylizer(styles, alpha=alpha, weights=weights, masks=m,
                                        precision=choice), precision=choice, tile=tile)
        y = run(inp)
        if preserve_color == "luminance":
            y = combine_luminance(y, x)
        return y if as_tensor else to_pil(y)


def _alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha must be a number in [0, 1], not {alpha!r}") from None
    if not (math.isfinite(a) and 0.0 <= a <= 1.0):
        raise InputError(f"alpha must lie in [0, 1], not {alpha}")
    return a


def _check_color(mode: str) -> None:
    if mode not in COLOR_MODES:
        raise InputError(f"preserve color must be one of {', '.join(COLOR_MODES)}, not {mode!r}")


def _check_counts(n_styles: int, weights: Sequence[float] | None, masks: Tensor | None) -> None:
    if weights is not None and masks is not None:
        raise InputError("give style blend weights or masks, not both")
    if weights is not None and len(weights) != n_styles:
        raise InputError(f"{len(weights)} style blend weights for {n_styles} style image(s); "
                         "give one weight per style")
    if weights is not None:
        w = [float(v) for v in weights]
        if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
            raise InputError("style blend weights must be non-negative with a positive sum")
    if masks is not None and masks.shape[0] != n_styles:
        raise InputError(f"{masks.shape[0]} masks for {n_styles} style image(s); "
                         "give one mask per style")


def _tiled_adain(runner: InferenceRunner, x: Tensor, tile: int) -> Tensor:
    """Two passes: the content statistics over all tiles (each tile's core, so every feature
    cell counts once), then the stylised tiles with those statistics, blended."""
    net = runner.model  # int8: the runner calibrated on the whole image before tiling
    assert isinstance(net, AdaINStylizer)
    H, W = x.shape[-2:]
    overlap = runner.overlap_for(tile)
    sums: tuple[Tensor, Tensor, Tensor] | None = None
    for t in plan_tiles(H, W, tile, overlap, STRIDE):
        with runner.context():
            piece, _, _ = _pad_to(runner.prepare(x[..., t.y0:t.y1, t.x0:t.x1]), STRIDE)
            f = net.features(piece).float()
            m = net.region_masks(tuple(f.shape[-2:]), (H, W), (t.y0, t.y1, t.x0, t.x1))
            fy0, fx0 = (t.cy0 - t.y0) // STRIDE, (t.cx0 - t.x0) // STRIDE
            fy1 = -(-(t.cy1 - t.y0) // STRIDE)
            fx1 = -(-(t.cx1 - t.x0) // STRIDE)
            core = f[..., fy0:fy1, fx0:fx1]
            mc = None if m is None else m.to(f.device)[..., fy0:fy1, fx0:fx1]
            s = region_sums(core, mc)
        sums = s if sums is None else tuple(a + b for a, b in zip(sums, s))  # type: ignore
    assert sums is not None

    def one(piece: Tensor, box: tuple[int, int, int, int]) -> Tensor:
        with runner.context():
            y = net(runner.prepare(piece), sums=sums, box=box, image_size=(H, W))
        return y.float().to(x.device)

    return run_tiled(one, x, tile=tile, overlap=overlap, align=STRIDE, with_box=True)


# --------------------------------------------------------------------------------------------
# training


@dataclass
class AdaINTrainConfig:
    """Settings of :func:`train` (saved as ``config.json`` in the run folder).

    content, styles: folders of images (searched recursively).
    run: the run folder (checkpoints, stats.jsonl, TensorBoard).
    output: the decoder file written at the end (default ``<run>/decoder.pt``).
    steps, batch_size: the paper trains 160,000 steps of 8 content + 8 style crops.
    image_size: side of the random crops; load_size: images are first resized so that their
        shorter side is this (the paper: 512 then 256 crops).
    content_weight, style_weight: the loss weights (the paper's lambda = 10 for style).
    style_layers: layers of the mean/std style loss (relu1_1 ... relu4_1).
    lr, lr_decay: Adam's rate, ``lr / (1 + lr_decay * step)``.
    vgg, vgg_weights: the encoder's VGG19 weights (source and optional local file).
    deterministic: deterministic algorithms, data loaded in the main process (bit-identical
        reruns and resumes on one machine).
    """

    content: str
    styles: str
    run: str = "runs/adain"
    output: str | None = None
    steps: int = 160_000
    batch_size: int = 8
    image_size: int = 256
    load_size: int = 512
    content_weight: float = 1.0
    style_weight: float = 10.0
    style_layers: tuple[str, ...] = ENCODER_LAYERS
    lr: float = 1e-4
    lr_decay: float = 5e-5
    vgg: str = "caffe"
    vgg_weights: str | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    num_workers: int = 0
    log_every: int = 50
    ckpt_every: int = 1000
    keep_last: int = 2
    tensorboard: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "image_size", "load_size", "keep_last"):
            check_int(name.replace("_", " "), getattr(self, name), 1,
                      expected="a positive whole number")
        for name in ("log_every", "ckpt_every", "num_workers", "seed"):
            check_int(name.replace("_", " "), getattr(self, name), 0)
        if self.image_size < 32:
            raise InputError(f"image size must be at least 32, not {self.image_size}")
        if self.load_size < self.image_size:
            raise InputError(f"load size {self.load_size} is smaller than the crop "
                             f"{self.image_size}")
        for name in ("content_weight", "style_weight", "lr", "lr_decay"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
                raise InputError(f"{name.replace('_', ' ')} must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}, not {v}")
        last = VGG19_LAYER_NAMES.index("relu4_1")
        bad = [n for n in self.style_layers if n not in VGG19_LAYER_NAMES
               or VGG19_LAYER_NAMES.index(n) > last]
        if bad or not self.style_layers:
            raise InputError(f"style layers must be VGG19 layers up to relu4_1, not "
                             f"{', '.join(bad) or 'none'}")
        if self.vgg not in VGG19_WEIGHTS:
            raise InputError(f"unknown VGG19 weights {self.vgg!r}")
        check_bool("deterministic", self.deterministic)


@dataclass
class AdaINProgress:
    """What the ``progress`` callback receives: before the first step (``stats`` empty) and
    after every step."""

    step: int
    start_step: int
    total_steps: int
    stats: dict[str, float]
    images_per_s: float | None


@dataclass
class AdaINRunResult:
    run: Path
    output: Path | None  # the decoder file (None when aborted)
    step: int
    aborted: bool
    checkpoint: Path | None
    stats: dict[str, float]
    history: list[dict[str, float]]  # the stats of every step of this call
    seconds: float
    decoder: AdaINDecoder = field(repr=False)
    rank: int = 0  # this process's, under torchrun (only rank 0 writes files)
    world_size: int = 1


class CropFolder(torch.utils.data.Dataset):
    """The images under a folder, each resized to ``load_size`` on its shorter side and
    randomly cropped to ``image_size`` squares; item ``(epoch, i)`` is float ``(3, S, S)`` in
    ``[0, 1]``, the crop a function of ``(seed, epoch, i)``. Unreadable files are left out
    (with a warning); a folder without readable images is an :class:`InputError`."""

    def __init__(self, root: str | os.PathLike[str], *, image_size: int, load_size: int,
                 seed: int, what: str) -> None:
        from impasto.data.sources import list_folder, readable_images

        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: {what} folder not found" if not self.root.exists()
                             else f"{self.root}: not a folder of {what} images")
        good, bad = readable_images(self.root, list_folder(self.root))
        if bad:
            log.warning("%s: left out %d unreadable file(s), e.g. %s", self.root, len(bad), bad[0])
        if not good:
            raise InputError(f"{self.root}: no readable {what} images in the folder")
        self.names = good
        self.image_size, self.load_size, self.seed = image_size, load_size, seed
        # up to 1,000 resized images stay in memory (as ContentCrops does): a style folder
        # is decoded once, not at every crop
        self._resized: dict[int, Image.Image] | None = {} if len(good) <= 1000 else None

    def __len__(self) -> int:
        return len(self.names)

    def resized(self, i: int) -> Image.Image:
        """Image ``i`` resized to ``load_size`` on its shorter side (kept when cached)."""
        img = self._resized.get(i) if self._resized is not None else None
        if img is None:
            img = load_image(self.root / self.names[i])
            w, h = img.size
            scale = self.load_size / min(w, h)
            size = (max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
            if self._resized is not None:
                self._resized[i] = img
        return img

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        epoch, i = key
        img = self.resized(i)
        nw, nh = img.size
        rng = np.random.default_rng([self.seed, epoch, i])
        top = int(rng.integers(0, nh - self.image_size + 1))
        left = int(rng.integers(0, nw - self.image_size + 1))
        img = img.crop((left, top, left + self.image_size, top + self.image_size))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(img)[0]


class _Stream:
    """Endless batches of a :class:`CropFolder`: each epoch a seeded permutation (repeated to
    fill a batch on every process when the folder is small), with this process's position
    kept for checkpoints. Process ``rank`` of ``world_size`` takes every ``world_size``-th
    index from position ``rank``; one process takes the whole permutation."""

    def __init__(self, data: CropFolder, batch_size: int, seed: int, num_workers: int,
                 epoch: int = 0, pos: int = 0, *, rank: int = 0, world_size: int = 1) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.num_workers = num_workers
        self.epoch, self.pos = epoch, pos
        self.rank, self.world_size = rank, world_size
        self._it = None

    def _order(self, epoch: int) -> list[int]:
        n = len(self.data)
        per_step = self.batch_size * self.world_size
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(n, generator=g).tolist()
        while len(order) < per_step:
            order += torch.randperm(n, generator=g).tolist()
        order = order[: len(order) // per_step * per_step]
        return order[self.rank :: self.world_size]

    def _start(self) -> None:
        keys = [(self.epoch, i) for i in self._order(self.epoch)[self.pos:]]
        loader = torch.utils.data.DataLoader(
            self.data, batch_size=self.batch_size, sampler=keys, num_workers=self.num_workers,
            drop_last=True,
        )
        self._it = iter(loader)

    def next(self) -> Tensor:
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)  # type: ignore[arg-type]
        except StopIteration:
            self.epoch, self.pos = self.epoch + 1, 0
            self._start()
            batch = next(self._it)  # type: ignore[arg-type]
        self.pos += self.batch_size
        return batch


def _style_loss(gen: dict[str, Tensor], style: dict[str, Tensor], layers: Sequence[str]
                ) -> Tensor:
    total = None
    for name in layers:
        mg, sg = mean_std(gen[name])
        ms, ss = mean_std(style[name])
        term = torch.mean((mg - ms) ** 2) + torch.mean((sg - ss) ** 2)
        total = term if total is None else total + term
    assert total is not None
    return total


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
    a checkpoint is written and all stop).

    ``resume``: a checkpoint or run folder to continue exactly where it stopped (exactly with
    the same number of processes). ``encoder``: a :class:`~impasto.nets.vgg.VGG19Features`
    returning ``style_layers`` and ``relu4_1`` to use instead of the pretrained one (tests
    pass a small random one; under ``torchrun`` each process passes its own). ``progress`` is
    called on rank 0 only. Under ``torchrun`` the process group is joined here (and left at
    the end, unless the caller had joined it already). Raises :class:`InputError` for bad
    settings or data before anything is written, and
    :class:`~impasto.train.NonFiniteLossError` when the loss diverges.
    """
    config.validate()
    with training_session(resolve_device(config.device), config.deterministic) as (info, device):
        return _train(config, info, device, resume, progress, abort, encoder)


def _train(  # noqa: C901  (one loop, told in order)
    config: AdaINTrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: str | os.PathLike[str] | None,
    progress: Callable[[AdaINProgress], None] | None,
    abort: Callable[[], bool] | None,
    encoder: nn.Module | None,
) -> AdaINRunResult:
    t_start = time.perf_counter()
    rank, world = info.rank, info.world_size
    dtype = resolve_precision(config.precision, device)
    run = Path(config.run)
    if run.exists() and not run.is_dir():
        raise InputError(f"{run}: is a file, not a run folder")
    output = Path(config.output) if config.output else run / "decoder.pt"
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give a decoder file name such as decoder.pt")
    manager = CheckpointManager(run, keep_last=config.keep_last, prefix="ckpt")
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resolve_checkpoint(resume, prefix="ckpt"), kind=CHECKPOINT_KIND)
    elif manager.checkpoints():
        raise InputError(f"{run}: this run folder already holds checkpoints; continue it with "
                         f"--resume {run}, or choose another run folder")

    contents = CropFolder(config.content, image_size=config.image_size,
                          load_size=config.load_size,
                          seed=derive_seed(config.seed, _STREAM_CONTENT), what="content")
    styles = CropFolder(config.styles, image_size=config.image_size, load_size=config.load_size,
                        seed=derive_seed(config.seed, _STREAM_STYLE), what="style")

    layers = list(dict.fromkeys([*config.style_layers, "relu4_1"]))
    if encoder is None:
        encoder = VGG19Features(layers, weights=config.vgg, weights_path=config.vgg_weights)
        encoder_weights: str | None = config.vgg
    else:
        encoder_weights = None
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    encoder = encoder.eval().requires_grad_(False).to(device, memory_format=memory_format)
    dec_config = AdaINDecoderConfig(encoder_widths(encoder))
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    decoder = AdaINDecoder(dec_config).to(device, memory_format=memory_format).train()
    opt = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    if rank:  # rank 0 keeps the stream of a single-process run
        torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank))

    step, images_seen = 0, 0
    pos = {"content": (0, 0), "style": (0, 0)}
    if ckpt is not None:
        saved = (ckpt.get("extra") or {}).get("decoder")
        if saved != dec_config.to_dict():
            raise InputError(f"{ckpt['path']} was trained with decoder {saved}, not "
                             f"{dec_config.to_dict()}; resume with the same encoder")
        restore(ckpt, {"decoder": decoder}, {"decoder": opt}, rng=False)
        step, images_seen = ckpt["step"], ckpt["images_seen"]
        for k in pos:
            e, p = (ckpt["extra"].get(k) or [0, 0])
            pos[k] = (int(e), int(p))
        if not restore_rng_for_rank(ckpt, {}, rank=rank, world_size=world):
            # saved by another number of processes: fresh streams and shards from the next epoch
            torch.manual_seed(derive_seed(config.seed, _STREAM_TORCH, rank, step))
            pos = {k: (e + (p > 0), 0) for k, (e, p) in pos.items()}
    num_workers = loader_workers(config.num_workers, config.deterministic)
    c_stream = _Stream(contents, config.batch_size, config.seed, num_workers,
                       *pos["content"], rank=rank, world_size=world)
    s_stream = _Stream(styles, config.batch_size, config.seed + 1, num_workers,
                       *pos["style"], rank=rank, world_size=world)
    decoder_train: nn.Module = wrap_ddp(decoder, device) if info.is_distributed else decoder

    logger: RunLogger | None = None
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.json")
        logger = RunLogger(run, tensorboard=config.tensorboard,
                           resume_step=step if ckpt is not None else None)
    encoder_info = {"weights": encoder_weights, "widths": list(dec_config.widths),
                    "layer": "relu4_1"}
    last_ckpt: Path | None = Path(ckpt["path"]) if ckpt is not None else None

    def save() -> None:
        nonlocal last_ckpt
        extra: dict[str, Any] = {
            "decoder": dec_config.to_dict(), "encoder": encoder_info,
            "content": [c_stream.epoch, c_stream.pos], "style": [s_stream.epoch, s_stream.pos],
            "world_size": world,
            **gather_rng_states({}, world),  # every rank's (a collective), each resumes its own
        }
        if info.is_main:
            last_ckpt = manager.save(
                step, kind=CHECKPOINT_KIND, config=config, images_seen=images_seen,
                models={"decoder": decoder}, optimizers={"decoder": opt}, extra=extra,
            )

    start_step = step
    stats: dict[str, float] = {}
    history: list[dict[str, float]] = []
    rate: float | None = None
    t_log, seen_log = time.perf_counter(), images_seen
    aborted = False
    if progress is not None and info.is_main:
        progress(AdaINProgress(step, start_step, config.steps, {}, None))
    try:
        while step < config.steps:
            for group in opt.param_groups:
                group["lr"] = config.lr / (1.0 + config.lr_decay * step)
            c = c_stream.next().to(device, non_blocking=True).contiguous(
                memory_format=memory_format)
            s = s_stream.next().to(device, non_blocking=True).contiguous(
                memory_format=memory_format)
            with torch.no_grad(), autocast(device, dtype):
                fc = encoder(c)["relu4_1"]
                fs = encoder(s)
            fs = {k: v.float() for k, v in fs.items()}
            t = adain(fc, fs["relu4_1"])
            with autocast(device, dtype):
                g = decoder_train(t)
                fg = encoder(g)
            loss_c = torch.mean((fg["relu4_1"].float() - t) ** 2)
            loss_s = _style_loss(fg, fs, config.style_layers)
            loss = config.content_weight * loss_c + config.style_weight * loss_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            images_seen += c.shape[0] * world
            stats = {"loss": float(loss.detach()), "content": float(loss_c.detach()),
                     "style": float(loss_s.detach())}
            # the same (averaged) losses for the NaN check and logs, and one stop, on all ranks
            stop = bool(abort()) if abort is not None else False
            stats, stop = agree_across_ranks(stats, stop, device, info.is_distributed)
            check_finite(stats, step, checkpoint=last_ckpt)
            history.append(dict(stats))
            if logger is not None and config.log_every and (
                    step % config.log_every == 0 or step == config.steps):
                now = time.perf_counter()
                rate = (images_seen - seen_log) / max(now - t_log, 1e-9)
                t_log, seen_log = now, images_seen
                logger.scalars(step, {**stats, "lr": opt.param_groups[0]["lr"],
                                      "images_per_s": rate})
            if (config.ckpt_every and step % config.ckpt_every == 0) or stop \
                    or step == config.steps:
                save()
            if progress is not None and info.is_main:
                progress(AdaINProgress(step, start_step, config.steps, dict(stats), rate))
            if stop:
                aborted = True
                break
        if info.is_distributed:
            broadcast_buffers(decoder)
    finally:
        if logger is not None:
            logger.close()

    decoder.eval()
    written = None
    if not aborted and info.is_main:
        style_names = [Path(n).name for n in styles.names[:50]]
        written = save_decoder(output, decoder, encoder=encoder_info,
                               training=config_to_dict(config), step=step,
                               images_seen=images_seen, styles=style_names)
    return AdaINRunResult(run=run, output=written, step=step, aborted=aborted,
                          checkpoint=last_ckpt if info.is_main else None, stats=stats,
                          history=history, seconds=time.perf_counter() - t_start,
                          decoder=decoder, rank=rank, world_size=world)
