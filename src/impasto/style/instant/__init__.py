"""Instant style transfer with Magenta's pretrained networks (#15): any painting as a style
(Ghiasi et al. 2017) and 26 built-in styles (Dumoulin et al. 2017), at the photo's own
resolution.

* :class:`InstantStyle` (:mod:`impasto.style.instant.pipeline`): the pipeline;
* :mod:`impasto.style.instant.presets`: the built-in styles' numbers and names
  (:data:`PRESETS`) and blends (:func:`parse_preset`).

The networks and their weights: :mod:`impasto.nets.magenta`, :mod:`impasto.nets.magenta_onnx`.
"""

from impasto.style.instant.pipeline import (
    OUTPUTS,
    STYLE_SIDE,
    InstantStyle,
    instant_stylize,
    preset_sheet,
    square_crop,
)
from impasto.style.instant.presets import (
    NUM_PRESETS,
    PRESETS,
    Preset,
    parse_preset,
    preset_label,
)

__all__ = [
    "NUM_PRESETS",
    "OUTPUTS",
    "PRESETS",
    "STYLE_SIDE",
    "InstantStyle",
    "Preset",
    "instant_stylize",
    "parse_preset",
    "preset_label",
    "preset_sheet",
    "square_crop",
]
