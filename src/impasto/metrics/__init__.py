"""Evaluation metrics for generated images: the math, on features, predictions or images.

=====================  ==========================================  ======================
metric                 function                                    input
=====================  ==========================================  ======================
FID                    :func:`fid`, :func:`frechet_distance`       features ``(N, D)``
KID                    :func:`kid`                                 features ``(N, D)``
Inception Score        :func:`inception_score`                     class probs ``(N, C)``
precision / recall     :func:`precision_recall`                    features ``(N, D)``
SWD (multi-scale)      :func:`swd`                                 images ``(N, C, H, W)``
NST objective          :func:`nst_score` (``gatys-vgg19-v1``)      output, content, styles
ArtFID-style figure    :func:`artfid` (not the paper's numbers)    image sets
=====================  ==========================================  ======================

:data:`METRICS` maps a short name to a :class:`MetricInfo` (callable, one-line description,
kind of input) for menus. :data:`EXTRACTORS` (in :mod:`impasto.metrics.extractors`) maps
extractor names (``inception``, ``vgg19[:SIZE]``, ``classifier:PATH``) to builders;
:func:`open_set` opens image folders, arrays, statistics files and generators;
:func:`evaluate` runs metrics on two sets (what ``impasto metrics`` calls).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from impasto.metrics.fid import FeatureStats, fid, frechet_distance
from impasto.metrics.inception_score import inception_score
from impasto.metrics.kid import kid
from impasto.metrics.prdc import knn_radii, precision_recall
from impasto.metrics.swd import laplacian_pyramid, reconstruct_laplacian, swd
from impasto.metrics.extractors import (
    EXTRACTORS,
    Encoding,
    FeatureExtractor,
    build_extractor,
    encode,
)
from impasto.metrics.sources import load_encoding, open_set, save_encoding
from impasto.metrics.evaluation import MetricOptions, MetricsReport, evaluate, format_table
from impasto.metrics.nst import NSTScore, NSTScorer, nst_score
from impasto.metrics.artfid import NSTSetReport, artfid

__all__ = [
    "EXTRACTORS",
    "METRICS",
    "Encoding",
    "FeatureExtractor",
    "MetricOptions",
    "MetricsReport",
    "NSTScore",
    "NSTScorer",
    "NSTSetReport",
    "artfid",
    "build_extractor",
    "encode",
    "evaluate",
    "format_table",
    "load_encoding",
    "nst_score",
    "open_set",
    "save_encoding",
    "FeatureStats",
    "MetricInfo",
    "fid",
    "frechet_distance",
    "inception_score",
    "kid",
    "knn_radii",
    "laplacian_pyramid",
    "precision_recall",
    "reconstruct_laplacian",
    "swd",
]


class MetricInfo(NamedTuple):
    """One entry of :data:`METRICS`: ``func``, a one-line ``description`` and the kind of
    ``input`` it takes (``"features"`` pairs, ``"probs"`` or ``"images"`` pairs)."""

    func: Callable[..., Any]
    description: str
    input: str


METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo(
        fid,
        "Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017); "
        "lower is better",
        "features",
    ),
    "kid": MetricInfo(
        kid,
        "Kernel distance: unbiased MMD^2, cubic polynomial kernel, (mean, std) over subsets "
        "(Bińkowski et al. 2018); lower is better",
        "features",
    ),
    "is": MetricInfo(
        inception_score,
        "Inception Score exp(E KL(p(y|x) || p(y))), (mean, std) over splits "
        "(Salimans et al. 2016); higher is better",
        "probs",
    ),
    "pr": MetricInfo(
        precision_recall,
        "Improved precision and recall with k-NN manifolds (Kynkäänniemi et al. 2019); "
        "higher is better",
        "features",
    ),
    "swd": MetricInfo(
        swd,
        "Multi-scale sliced Wasserstein distance of Laplacian-pyramid patches, x1e3 per level "
        "(Karras et al. 2018); lower is better",
        "images",
    ),
}
