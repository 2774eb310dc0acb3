"""Feed-forward style transfer with per-style networks (Johnson, Alahi & Fei-Fei 2016,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution"), optionally with an
adversarial patch loss (Li & Wand 2016, MGAN).

Training (:func:`train`, a plain function driven by :class:`FastStyleTrainConfig`)::

    y = T(x)                                   x: random crops of the content photos
    L_T = content_weight * L_content(y, x) + style_weight * L_style(y, style) + tv_weight * TV(y)
          [+ adversarial_weight * L_G(D(crops of y))]
    L_D = L_D(D(crops of the style image), D(crops of y))       (when adversarial_weight > 0)

The perceptual terms are those of :class:`~impasto.style.PerceptualLoss` over VGG19 (Gram
matrices divided by ``C*H*W``, mean squared errors, everything accumulated in float32). One
training step is two explicit phases of :class:`FastStyleLoss`: D's (``d_step``, on crops of the
detached output) then T's (``g_step``, with D frozen), each followed by its optimiser step.

The result is a *model file* (kind ``"fast-style/transformer"``, see
:mod:`impasto.style.fast.model`), written atomically at the end of training or by
:func:`export_model` from a run. :class:`FastStyle` loads it with no other input::

    model = FastStyle.from_file("starry.pt")
    out = model("photo.jpg")                   # PIL image in, PIL image out
    batch = model(x, output="tensor")          # (N, 3, H, W) in [0, 1] -> same, any H, W

The package, by concept: :mod:`~impasto.style.fast.config` (the settings),
:mod:`~impasto.style.fast.loss` (the two phases), :mod:`~impasto.style.fast.training` (the
loop), :mod:`~impasto.style.fast.model` (model files), :mod:`~impasto.style.fast.pipeline`
(inference). The training crops are :class:`impasto.data.CropFolder`'s.
"""

from impasto.data import CropFolder
from impasto.style.fast.config import (
    ADV_LOSSES,
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    FastStyleConfig,
    FastStyleTrainConfig,
)
from impasto.style.fast.loss import FastStyleLoss, random_crops
from impasto.style.fast.model import (
    CHECKPOINT_PREFIX,
    LEGACY_MODEL_KIND,
    LEGACY_TRAIN_KIND,
    MODEL_KIND,
    THUMBNAIL_SIZE,
    export_model,
    load_fast_style,
    save_fast_style,
)
from impasto.style.fast.pipeline import FastStyle
from impasto.style.fast.training import (
    FastStyleProgress,
    FastStyleResult,
    FastStyleRunResult,
    train,
    train_fast_style,
)

#: The kind of a training checkpoint: that of the model it holds.
TRAIN_KIND = MODEL_KIND
#: The content photos' dataset (the name before issue #12, kept for one release).
ContentCrops = CropFolder

__all__ = [
    "ADV_LOSSES",
    "CHECKPOINT_PREFIX",
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_STYLE_LAYERS",
    "LEGACY_MODEL_KIND",
    "LEGACY_TRAIN_KIND",
    "MODEL_KIND",
    "THUMBNAIL_SIZE",
    "TRAIN_KIND",
    "ContentCrops",
    "FastStyle",
    "FastStyleConfig",
    "FastStyleLoss",
    "FastStyleProgress",
    "FastStyleResult",
    "FastStyleRunResult",
    "FastStyleTrainConfig",
    "export_model",
    "load_fast_style",
    "random_crops",
    "save_fast_style",
    "train",
    "train_fast_style",
]
