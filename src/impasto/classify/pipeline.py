"""A trained classifier as an inference pipeline (:class:`Classifier`), and its model file
(:func:`export_model`).

::

    clf = Classifier.from_file("runs/lenet")       # a run folder (best.pt), checkpoint or model file
    clf(images)                                    # ["3", "7", ...]: the most probable class
    clf(images, output="tensor")                   # (N, K) class probabilities
    export_model("runs/lenet", "lenet.pt")         # the network alone, in the one model-file format
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from impasto.classify.config import checkpoint_kind
from impasto.classify.evaluate import (
    load_classifier,
    load_images,
    network_from,
    predict_logits,
    read_classifier,
)
from impasto.errors import InputError
from impasto.train.modelfile import save_model

__all__ = ["OUTPUTS", "Classifier", "export_model"]

#: What :meth:`Classifier.__call__` returns: class names, or class probabilities.
OUTPUTS = ("labels", "tensor")


class Classifier:
    """Images in, classes out: ``clf(images)`` (see :meth:`__call__`).

    ``model``: a network from :func:`~impasto.classify.load_classifier` (or any module with
    ``class_names``, ``in_channels`` and ``image_size``); it is put in eval mode.
    """

    def __init__(self, model: nn.Module, *, batch_size: int = 256) -> None:
        self.model = model.eval().requires_grad_(False)
        self.batch_size = int(batch_size)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], device: str | torch.device = "auto", *,
        which: str = "best",
    ) -> Classifier:
        """Load a classifier from a model file, a training checkpoint or a run folder (its
        ``best.pt`` when ``which="best"`` and it exists, else its latest checkpoint); checkpoints
        of the release before load too. ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        Raises :class:`InputError` (one line naming the file) for a file that holds no
        classifier."""
        return cls(load_classifier(path, device=device, which=which))

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)

    @property
    def device(self) -> torch.device:
        return next(iter(self.model.parameters())).device

    @property
    def source(self) -> str | None:
        """The file the network was read from."""
        return getattr(self.model, "source", None)

    def __call__(self, images: Any, seed: int | None = None, output: str = "labels") -> Any:
        """Classify ``images``: a float tensor ``(N, C, H, W)`` or ``(C, H, W)`` in ``[0, 1]``
        (C 1 or 3, any size: converted as :func:`~impasto.classify.prepare_images` says), a PIL
        image, an image file name, or a list of PIL images or file names (read as the training
        images were: :func:`~impasto.classify.load_images`).

        ``output="labels"``: the most probable class name of each image, a list (a ``str`` for
        a single image); ``output="tensor"``: the class probabilities (softmax), float32 on the
        CPU, ``(N, K)`` (``(K,)`` for a single image) in the order of :attr:`class_names`.
        ``seed`` is accepted for the call shape every pipeline shares and changes nothing: the
        network has no randomness in eval mode.
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"seed must be a whole number or None, not {seed!r}")
        batch, single = self._batch(images)
        probs = predict_logits(self.model, batch, self.batch_size).softmax(dim=1)
        if output == "tensor":
            return probs[0] if single else probs
        names = self.class_names
        labels = [names[int(k)] for k in probs.argmax(dim=1).tolist()]
        return labels[0] if single else labels

    def _batch(self, images: Any) -> tuple[Tensor, bool]:
        """``images`` as ``(N, C, H, W)`` floats in ``[0, 1]``, and whether it was one image."""
        if isinstance(images, Tensor):
            if images.ndim == 3:
                return images[None], True
            return images, False  # prepare_images checks the shape and dtype
        if isinstance(images, (Image.Image, str, os.PathLike)):
            return load_images(self.model, [images]), True
        if isinstance(images, Sequence) and not isinstance(images, (bytes, bytearray)):
            if not images:
                raise InputError("no images given")
            return load_images(self.model, list(images)), False
        raise InputError(f"expected images as a tensor, a PIL image, a file name or a list of "
                         f"those, not {type(images).__name__}")


def export_model(
    run_or_checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *,
    which: str = "best",
) -> Path:
    """Write the classifier of a run folder (its ``best.pt`` when ``which="best"`` and it
    exists, else its latest checkpoint), a checkpoint or a model file to the model file ``out``
    (kind ``"classify/<arch>"``, ``.safetensors`` by the name, else ``.pt``; see
    :mod:`impasto.train.modelfile`): the network config, its weights, and in ``extra`` the
    classes, the last validation values, the training settings, step and images seen. Returns
    the path written. Raises :class:`InputError` as :func:`~impasto.classify.load_classifier`,
    and for a file that cannot be written."""
    file = read_classifier(run_or_checkpoint, which=which)
    model = network_from(file)  # the weights fit the network
    return save_model(out, kind=checkpoint_kind(model.config.arch),
                      config=model.config.to_dict(), state_dict=model.state_dict(),
                      extra=file.extra)
