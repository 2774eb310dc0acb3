"""Neural network modules only: feature extractors, generators, discriminators, classifiers."""

from impasto.nets.vgg import (
    VGG19_LAYER_NAMES,
    VGG19_WEIGHTS,
    Preprocessing,
    VGG19Features,
    load_vgg19_weights,
    resolve_weights_path,
)

__all__ = [
    "VGG19_LAYER_NAMES",
    "VGG19_WEIGHTS",
    "Preprocessing",
    "VGG19Features",
    "load_vgg19_weights",
    "resolve_weights_path",
]
