"""The settings of one AdaIN decoder training run (:class:`AdaINTrainConfig`), saved as
``config.json`` in the run folder, and the kinds of its checkpoints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from impasto.errors import InputError
from impasto.nets.adain import ENCODER_LAYERS
from impasto.nets.vgg import VGG19_LAYER_NAMES, VGG19_WEIGHTS
from impasto.train.config import (
    LoggingConfig,
    RuntimeConfig,
    check_int,
    check_logging_fields,
    check_runtime_fields,
)

__all__ = ["CHECKPOINT_KIND", "CHECKPOINT_PREFIX", "LEGACY_CHECKPOINT_KIND", "AdaINTrainConfig"]

#: The kind of a training checkpoint (as that of the decoder file it holds).
CHECKPOINT_KIND = "adain/decoder"
#: The kind the release before wrote; such checkpoints resume.
LEGACY_CHECKPOINT_KIND = "adain/train"
#: Checkpoints are ``<run>/ckpt-<step>.pt``.
CHECKPOINT_PREFIX = "ckpt"


@dataclass
class AdaINTrainConfig(RuntimeConfig, LoggingConfig):
    """Settings of :func:`~impasto.style.adain.train` (saved as ``config.json`` in the run
    folder).

    content, styles: folders of images (searched recursively).
    run: the run folder (checkpoints, stats.jsonl, TensorBoard).
    output: the decoder file written at the end (default ``<run>/decoder.pt``).
    steps, batch_size: the paper trains 160,000 steps of 8 content + 8 style crops (per
        process under ``torchrun``).
    image_size: side of the random crops; load_size: images are first resized so that their
        shorter side is this (the paper: 512 then 256 crops).
    content_weight, style_weight: the loss weights (the paper's lambda = 10 for style).
    style_layers: layers of the mean/std style loss (relu1_1 ... relu4_1).
    lr, lr_decay: Adam's rate, ``lr / (1 + lr_decay * step)``.
    vgg, vgg_weights: the encoder's VGG19 weights (source and optional local file).

    Runtime and logging: see :class:`~impasto.train.config.RuntimeConfig` and
    :class:`~impasto.train.config.LoggingConfig`; here two numbered checkpoints are kept.
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
    # LoggingConfig keeps 3; a decoder's checkpoints are large and its runs long.
    keep_last: int = field(default=2, kw_only=True)

    def validate(self) -> None:
        """Raise :class:`InputError` (one line) for the first bad value; does no I/O."""
        for name in ("steps", "batch_size", "image_size", "load_size"):
            check_int(name.replace("_", " "), getattr(self, name), 1,
                      expected="a positive whole number")
        if self.image_size < 32:
            raise InputError(f"image size must be at least 32, not {self.image_size}")
        if self.load_size < self.image_size:
            raise InputError(f"load size {self.load_size} is smaller than the crop "
                             f"{self.image_size}")
        for name in ("content_weight", "style_weight", "lr", "lr_decay"):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v < 0 or (name == "lr" and v == 0):
                raise InputError(f"{name.replace('_', ' ')} must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}, not {v!r}")
        last = VGG19_LAYER_NAMES.index("relu4_1")
        bad = [n for n in self.style_layers if n not in VGG19_LAYER_NAMES
               or VGG19_LAYER_NAMES.index(n) > last]
        if bad or not self.style_layers:
            raise InputError(f"style layers must be VGG19 layers up to relu4_1, not "
                             f"{', '.join(bad) or 'none'}")
        if self.vgg not in VGG19_WEIGHTS:
            raise InputError(f"unknown VGG19 weights {self.vgg!r}")
        check_runtime_fields(self)
        check_logging_fields(self)
