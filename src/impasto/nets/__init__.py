"""Neural network modules only: feature extractors, generators, discriminators, classifiers.

:data:`WEIGHT_FILES` describes every pretrained weight file (VGG19, the FID Inception and
Magenta's instant style networks register theirs on import, which this package does).
"""

from impasto.nets.inception import FID_INCEPTION
from impasto.nets.magenta_onnx import MAGENTA_FILES
from impasto.nets.vgg import (
    VGG19_LAYER_NAMES,
    VGG19_WEIGHTS,
    Preprocessing,
    VGG19Features,
    load_vgg19_weights,
    resolve_weights_path,
)
from impasto.nets.weights import WEIGHT_FILES, WeightFile

__all__ = [
    "FID_INCEPTION",
    "MAGENTA_FILES",
    "VGG19_LAYER_NAMES",
    "VGG19_WEIGHTS",
    "WEIGHT_FILES",
    "Preprocessing",
    "VGG19Features",
    "WeightFile",
    "load_vgg19_weights",
    "resolve_weights_path",
]
