"""The registry of training families: what the command line, the web studio and the contract
test (``tests/test_families.py``) know of each family, read from one table.

A family is a config, a step and a pipeline (see ``docs/design.md``); its entry names them::

    fam = FAMILIES.get("classify")
    result = fam.train(fam.config(data="digits/", run="runs/clf", steps=100))
    fam.export_model("runs/clf", "clf.pt")
    labels = fam.pipeline.from_file("clf.pt")(images)

Every ``train`` has the signature ``train(config, *, resume=None, progress=None, abort=None)``
(families that need pretrained features take them as an extra keyword, for tests), every
``export_model`` is ``export_model(run_or_checkpoint, out) -> Path``, and every pipeline has
``from_file(path, device="auto")`` and ``__call__(..., seed=None, output=...)``.

This module sits above the families (it imports them when an entry is read); the layers below
never import it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from impasto.registry import Registry

__all__ = ["FAMILIES", "TrainingFamily"]


@dataclass(frozen=True)
class TrainingFamily:
    """One training family. ``module`` holds ``train`` and ``export_model``; ``config`` and
    ``pipeline`` are ``"module:Name"`` references, resolved on first use so that listing the
    families imports no torch."""

    name: str
    description: str
    module: str
    config_ref: str
    pipeline_ref: str
    kinds: tuple[str, ...]  # the model-file kinds it writes: "<family>/<arch>"
    export_ref: str = ""  # where export_model lives, when not in ``module``

    @staticmethod
    def _resolve(ref: str) -> Any:
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def train(self) -> Any:
        return self._resolve(f"{self.module}:train")

    @property
    def export_model(self) -> Any:
        return self._resolve(self.export_ref or f"{self.module}:export_model")

    @property
    def config(self) -> type:
        return self._resolve(self.config_ref)

    @property
    def pipeline(self) -> type:
        return self._resolve(self.pipeline_ref)


FAMILIES: Registry[TrainingFamily] = Registry("training family")

for _family in (
    TrainingFamily(
        "gan", "GANs of fixed size: DCGAN, SN-GAN, WGAN-GP, conditional", "impasto.gan",
        "impasto.gan:GanTrainConfig", "impasto.gan:GanGenerator", ("gan/dcgan", "gan/sngan"),
    ),
    TrainingFamily(
        "pggan", "Progressive Growing of GANs (Karras et al. 2018)", "impasto.gan.progressive",
        "impasto.gan.progressive:PgganTrainConfig", "impasto.gan:GanGenerator", ("gan/pggan",),
        "impasto.gan:export_model",
    ),
    TrainingFamily(
        "classify", "CNN classifiers", "impasto.classify",
        "impasto.classify:ClassifierTrainConfig", "impasto.classify:Classifier",
        ("classify/<arch>",),
    ),
    TrainingFamily(
        "fast-style", "per-style feed-forward networks (Johnson et al. 2016)",
        "impasto.style.fast", "impasto.style.fast:FastStyleTrainConfig",
        "impasto.style.fast:FastStyle", ("fast-style/transformer",),
    ),
    TrainingFamily(
        "adain", "arbitrary style with AdaIN (Huang & Belongie 2017)", "impasto.style.adain",
        "impasto.style.adain:AdaINTrainConfig", "impasto.style.adain:AdaIN", ("adain/decoder",),
    ),
):
    FAMILIES.register(_family.name, _family)
