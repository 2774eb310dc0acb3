"""Arbitrary style transfer with AdaIN (Huang & Belongie 2017): one decoder for any style.

* :mod:`~impasto.style.adain.pipeline`: :class:`AdaIN`, the inference pipeline
  (``AdaIN.from_file(path)``, ``ada(content, style_or_styles, alpha=..., weights=...,
  masks=..., preserve_color=...)``);
* :mod:`~impasto.style.adain.model`: decoder files (:func:`save_decoder`,
  :func:`load_decoder`) and :func:`export_model`, the decoder file of a training run;
* :mod:`~impasto.style.adain.config`: :class:`AdaINTrainConfig`, a run's settings;
* :mod:`~impasto.style.adain.training`: :func:`train`, the decoder's training loop.

::

    ada = AdaIN.from_file("decoder.pt")
    out = ada("photo.jpg", "starry_night.jpg", alpha=0.8)                  # -> PIL image
    result = train(AdaINTrainConfig(content="coco/", styles="wikiart/", run="runs/adain"))
    export_model("runs/adain", "decoder.pt")        # the decoder of the latest checkpoint
"""

from impasto.style.adain.config import (
    CHECKPOINT_KIND,
    CHECKPOINT_PREFIX,
    LEGACY_CHECKPOINT_KIND,
    AdaINTrainConfig,
)
from impasto.style.adain.model import (
    DECODER_FORMAT,
    DECODER_KIND,
    export_model,
    load_decoder,
    save_decoder,
)
from impasto.style.adain.pipeline import AdaIN, _load_masks, _tiled_adain  # noqa: F401  (cli, benchmarks)
from impasto.style.adain.training import (
    AdaINProgress,
    AdaINRunResult,
    decoder_losses,
    train,
)
from impasto.style.color import COLOR_MODES

__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_PREFIX",
    "COLOR_MODES",
    "DECODER_FORMAT",
    "DECODER_KIND",
    "LEGACY_CHECKPOINT_KIND",
    "AdaIN",
    "AdaINProgress",
    "AdaINRunResult",
    "AdaINTrainConfig",
    "decoder_losses",
    "export_model",
    "load_decoder",
    "save_decoder",
    "train",
]
