"""Using a trained classifier: load it, feed it images, measure it, predict with it.

* :func:`load_classifier` rebuilds a network from a model file or a checkpoint alone (a file,
  or a run folder: its ``best.pt``, else its latest checkpoint); :func:`read_classifier` reads
  such a file without building the network.
* :func:`prepare_images` converts any float batch ``(N, C, H, W)`` in ``[0, 1]`` to what the
  model takes (channels, square, size); :func:`load_images` reads image files the way the
  training data were read.
* :func:`predict_logits`, :func:`extract_features`, :func:`predict_topk` run the model in
  batches of bounded size.
* :func:`evaluate` gives accuracy, per-class accuracy, the mean loss and the confusion matrix
  of labelled data (:class:`EvalResult`); :func:`format_report` prints them as text tables,
  :func:`plot_confusion` draws the matrix as a PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.classify.config import FAMILY
from impasto.device import DEVICES, resolve_device
from impasto.errors import InputError
from impasto.nets.classifier import ClassifierNetConfig, build_classifier
from impasto.train import ModelFile, resolve_checkpoint, restore
from impasto.train.modelfile import read_model

__all__ = [
    "EvalResult",
    "collect_image_paths",
    "confusion_matrix",
    "evaluate",
    "extract_features",
    "format_confusion",
    "format_report",
    "load_classifier",
    "load_images",
    "network_from",
    "plot_confusion",
    "predict_logits",
    "predict_topk",
    "prepare_images",
    "read_classifier",
]

_CHUNK = 256  # images per forward pass
#: ITU-R 601-2 luma weights (as PIL's ``convert("L")`` and :func:`impasto.data.to_grey`).
LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------------
# loading


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device in DEVICES:
        return resolve_device(device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}") from None


def _checkpoint_file(path: str | os.PathLike[str], which: str) -> Path:
    p = Path(path)
    if p.is_dir() and which == "best" and (p / "best.pt").is_file():
        return p / "best.pt"
    return resolve_checkpoint(p)


def read_classifier(path: str | os.PathLike[str], *, which: str = "best") -> ModelFile:
    """The classifier held by ``path``, as a :class:`~impasto.train.ModelFile` (kind
    ``"classify/<arch>"``; its ``config`` a :class:`ClassifierNetConfig` dict, ``path`` the file
    read): a model file, a training checkpoint (of this release or the one before), or a run
    folder: its ``best.pt`` when ``which="best"`` and it exists, else its latest checkpoint.

    Raises :class:`InputError` (one line naming the file) for a missing, truncated or corrupt
    file, a checkpoint or model of another kind (a GAN's, say) and a network config that does
    not match the kind. Whether the weights fit is checked when they are loaded.
    """
    if which not in ("best", "latest"):
        raise InputError(f"which must be 'best' or 'latest', not {which!r}")
    file = _checkpoint_file(path, which)
    model = read_model(file, FAMILY, "a classifier's")
    what = "checkpoint" if model.training_checkpoint else "model file"
    try:
        config = ClassifierNetConfig.from_dict(model.config)
    except InputError as e:
        raise InputError(f"{file}: {e}") from None
    if model.arch != config.arch:
        raise InputError(f"{file}: a '{model.legacy or model.kind}' {what} holding a "
                         f"{config.arch} network")
    return model


def load_classifier(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu", which: str = "best"
) -> nn.Module:
    """A classifier trained with :func:`impasto.classify.train`, in eval mode, on ``device``.

    ``path``: a model file (:func:`impasto.classify.export_model`), a checkpoint file, or a run
    folder: its ``best.pt`` (best validation accuracy) when ``which="best"`` and it exists, else
    its latest checkpoint. The network is rebuilt from the network config stored in the file;
    nothing else is needed. The module has ``forward(x)`` (logits), ``features(x)``
    (penultimate), ``in_channels``, ``image_size``, ``num_classes``, ``class_names``,
    ``feature_dim``, ``config`` and ``source`` (the file).

    Raises :class:`InputError` (one line naming the file) for the files
    :func:`read_classifier` refuses and weights that do not fit.
    """
    return network_from(read_classifier(path, which=which), device=device)


def network_from(file: ModelFile, *, device: str | torch.device = "cpu") -> nn.Module:
    """The network of a classifier read by :func:`read_classifier`, as
    :func:`load_classifier` returns it; :class:`InputError` when the weights do not fit."""
    model = build_classifier(ClassifierNetConfig.from_dict(file.config))
    restore({"path": str(file.path), "models": {"model": file.state_dict}}, {"model": model},
            rng=False)
    model.source = str(file.path)
    return model.to(_device(device)).eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# inputs


def _model_param(model: nn.Module) -> Tensor:
    return next(iter(model.parameters()))


def prepare_images(model: nn.Module, x: Tensor) -> Tensor:
    """A float batch ``(N, C, H, W)`` in ``[0, 1]`` (any size, C 1 or 3) as ``model`` takes it:
    ``(N, model.in_channels, S, S)`` with ``S = model.image_size``, float32, on ``x``'s device.

    RGB becomes grey by luminance (``0.299 R + 0.587 G + 0.114 B``), grey becomes RGB by
    repetition; a non-square image is centre-cropped to a square (as training images are), then
    resized to ``S`` (bilinear, antialiased when shrinking; the training loader resizes alike).
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"expected images (N, 1 or 3, H, W) in [0, 1], got {shape}")
    if not x.is_floating_point():
        raise InputError(f"expected float images in [0, 1], got {x.dtype}")
    x = x.float()
    want_c, size = int(model.in_channels), int(model.image_size)
    if x.shape[1] == 3 and want_c == 1:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)
    elif x.shape[1] == 1 and want_c == 3:
        x = x.expand(-1, 3, -1, -1)
    h, w_ = x.shape[-2:]
    side = min(h, w_)
    if h != w_:
        top, left = (h - side) // 2, (w_ - side) // 2
        x = x[:, :, top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < side).clamp_(0.0, 1.0)
    return x.contiguous()


def collect_image_paths(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named in ``items``: files as given, folders searched recursively (sorted);
    :class:`InputError` for a missing path or a folder without images."""
    from impasto.data import IMAGE_EXTENSIONS
    from impasto.data.sources import list_folder

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            names = list_folder(p)
            if not names:
                raise InputError(
                    f"{p}: no images in this folder (looked for {' '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            out += [p / n for n in names]
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not out:
        raise InputError("no images given")
    return out


def load_images(model: nn.Module, paths: Sequence[Any]) -> Tensor:
    """Image files (or PIL images, anything :func:`impasto.io.load_image` reads) as
    ``(N, in_channels, S, S)`` float in ``[0, 1]``, read like training data (8-bit RGB, centre
    square, antialiased resize, grey by luma; :func:`impasto.data.prepare`). An unreadable file
    raises :class:`InputError` naming it."""
    from impasto.data import prepare
    from impasto.io import load_image

    out = []
    for p in paths:
        img = np.asarray(load_image(p))
        out.append(prepare(img, int(model.image_size), int(model.in_channels)))
    return torch.stack(out).float().div_(255.0)


# --------------------------------------------------------------------------------------------
# running the model


@torch.no_grad()
def _batched(model: nn.Module, fn: Callable[[Tensor], Tensor], images: Tensor,
             batch_size: int) -> Tensor:
    ref = _model_param(model)
    outs = []
    for i in range(0, images.shape[0], batch_size):
        xb = prepare_images(model, images[i : i + batch_size].to(ref.device))
        outs.append(fn(xb).float().cpu())
    if not outs:
        raise InputError("no images given")
    return torch.cat(outs)


def predict_logits(model: nn.Module, images: Tensor, batch_size: int = _CHUNK) -> Tensor:
    """Logits ``(N, num_classes)`` (float32, CPU) of images ``(N, C, H, W)`` in ``[0, 1]`` (any
    size and channels: converted by :func:`prepare_images`), ``batch_size`` at a time."""
    return _batched(model, model, images, batch_size)


def extract_features(model: nn.Module, images: Tensor, batch_size: int = _CHUNK) -> Tensor:
    """Penultimate features ``(N, feature_dim)`` (float32, CPU) of images in ``[0, 1]``."""
    return _batched(model, model.features, images, batch_size)


def predict_topk(
    model: nn.Module, images: Tensor, k: int = 5, batch_size: int = _CHUNK
) -> list[list[tuple[str, float]]]:
    """For each image, the ``k`` most probable classes as ``(name, probability)``, most probable
    first (``k`` is capped at the number of classes)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a whole number >= 1, not {k!r}")
    probs = predict_logits(model, images, batch_size).softmax(dim=1)
    p, idx = probs.topk(min(k, probs.shape[1]), dim=1)
    names = list(model.class_names)
    return [[(names[j], float(q)) for q, j in zip(pr.tolist(), ix.tolist())]
            for pr, ix in zip(p, idx)]


# --------------------------------------------------------------------------------------------
# evaluation


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise InputError(f"{t.size} labels but {p.size} predictions")
    k = int(num_classes)
    if t.size and (t.min() < 0 or t.max() >= k or p.min() < 0 or p.max() >= k):
        raise InputError(f"labels and predictions must lie in 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


@dataclass
class EvalResult:
    """What :func:`evaluate` measures. ``per_class[k]`` is the accuracy on the images of class
    ``k`` (its recall; NaN when there are none), ``support[k]`` their count, ``confusion`` the
    :func:`confusion_matrix`, ``loss`` the mean cross-entropy."""

    n: int
    accuracy: float
    loss: float
    per_class: np.ndarray
    support: np.ndarray
    confusion: np.ndarray
    class_names: list[str]

    @classmethod
    def from_logits(cls, logits: Tensor, labels: Tensor, class_names: Sequence[str]) -> EvalResult:
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        k = len(class_names)
        if logits.ndim != 2 or logits.shape[1] != k or logits.shape[0] != labels.numel():
            raise InputError(
                f"logits {tuple(logits.shape)} do not fit {labels.numel()} labels of {k} classes"
            )
        if labels.numel() == 0:
            raise InputError("no labelled images to evaluate")
        if int(labels.min()) < 0 or int(labels.max()) >= k:
            raise InputError(f"labels must lie in 0..{k - 1}, found {int(labels.max())}")
        pred = logits.argmax(dim=1)
        cm = confusion_matrix(labels.numpy(), pred.numpy(), k)
        support = cm.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
        loss = float(F.cross_entropy(logits.float(), labels))
        return cls(n=int(labels.numel()), accuracy=float(np.trace(cm)) / labels.numel(),
                   loss=loss, per_class=per_class, support=support, confusion=cm,
                   class_names=list(class_names))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (NaN per-class accuracies as None)."""
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "classes": list(self.class_names),
            "per_class": {
                name: {"accuracy": None if math.isnan(a) else float(a), "n": int(s)}
                for name, a, s in zip(self.class_names, self.per_class, self.support)
            },
            "confusion": self.confusion.tolist(),
        }


def evaluate(
    model: nn.Module,
    data: str | os.PathLike[str] | Tensor,
    labels: str | os.PathLike[str] | Any = None,
    *,
    batch_size: int = _CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Accuracy, per-class accuracy, loss and confusion matrix of ``model`` on labelled data.

    ``data``: a dataset path for :func:`impasto.data.open_dataset` (a folder with one sub-folder
    per class, IDX, ``.npz``, ...; ``labels`` is then the labels file of an IDX/``.npy`` source)
    whose class names must all be among the model's (they are matched by name, so a folder with
    only some of the classes works); or images ``(N, C, H, W)`` in ``[0, 1]`` with ``labels`` the
    class indices ``(N,)``. ``progress(done, total)`` is called after every batch.
    """
    if isinstance(data, Tensor):
        if labels is None:
            raise InputError("evaluate: give the labels of the images")
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        logits = predict_logits(model, data, batch_size)
        return EvalResult.from_logits(logits, y, model.class_names)

    from torch.utils.data import DataLoader

    from impasto.classify.data import Relabel, class_mapping
    from impasto.data import open_dataset

    ds = open_dataset(data, resolution=int(model.image_size), channels=int(model.in_channels),
                      labels_path=labels)
    if ds.num_classes == 0:
        raise InputError(
            f"{data}: the images have no labels (use one sub-folder per class, IDX labels or "
            "labels in the array file); for unlabelled images use predict"
        )
    mapped = Relabel(ds, class_mapping(str(data), ds.classes, model.class_names))
    loader = DataLoader(mapped, batch_size=batch_size, shuffle=False)
    ref = _model_param(model)
    logits, ys = [], []
    done = 0
    with torch.no_grad():
        for xb, yb in loader:
            xb = ((xb + 1.0) / 2.0).to(ref.device)
            logits.append(model(xb).float().cpu())
            ys.append(yb)
            done += yb.numel()
            if progress is not None:
                progress(done, len(mapped))
    return EvalResult.from_logits(torch.cat(logits), torch.cat(ys), model.class_names)


# --------------------------------------------------------------------------------------------
# reports


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100.0 * v:.2f}%"


def format_confusion(cm: np.ndarray, names: Sequence[str]) -> str:
    """The confusion matrix as a text table: rows true classes, columns predictions."""
    names = [str(n) for n in names]
    cw = max([len(str(int(cm.max()))) if cm.size else 1] + [len(n) for n in names]) + 1
    lw = max([len("true\\pred")] + [len(n) for n in names])
    lines = ["true\\pred".ljust(lw) + "".join(n.rjust(cw) for n in names)]
    for name, row in zip(names, cm):
        lines.append(name.ljust(lw) + "".join(str(int(v)).rjust(cw) for v in row))
    return "\n".join(lines)


def format_report(result: EvalResult) -> str:
    """Accuracy, a per-class table and the confusion matrix as text."""
    correct = int(np.trace(result.confusion))
    lines = [
        f"accuracy {_pct(result.accuracy)} ({correct} of {result.n}), "
        f"mean loss {result.loss:.4f}",
        "",
    ]
    nw = max([5] + [len(n) for n in result.class_names])
    sw = max(5, len(str(int(result.support.max()))) + 1)
    lines.append("class".ljust(nw) + "images".rjust(sw + 2) + "accuracy".rjust(10))
    for name, acc, s in zip(result.class_names, result.per_class, result.support):
        lines.append(name.ljust(nw) + str(int(s)).rjust(sw + 2) + _pct(float(acc)).rjust(10))
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              format_confusion(result.confusion, result.class_names)]
    return "\n".join(lines)


def plot_confusion(
    cm: np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw the confusion matrix as a PNG (or JPEG/WebP, by suffix) and write it atomically.

    Cells are shaded by the share of their row (white 0 to dark blue 1, so the diagonal shows
    per-class accuracy) and, when big enough, labelled with their count; rows are true classes,
    columns predictions. Drawn with Pillow (no matplotlib needed). Returns the path.
    """
    from PIL import Image, ImageDraw, ImageFont

    from impasto.io import save_image

    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    if cm.shape != (k, k) or k == 0:
        raise InputError(f"a confusion matrix must be square, got shape {cm.shape}")
    names = [str(n) for n in names]
    cell = int(min(56, max(6, 720 // k)))
    font_size = max(8, min(14, cell // 3))
    font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(s: str) -> tuple[int, int]:
        box = measure.textbbox((0, 0), s, font=font)
        return box[2] - box[0], box[3] - box[1]

    show_names = cell >= font_size
    label_w = max(text_size(n)[0] for n in names) + 10 if show_names else 0
    axis_y = 4 + font_size + 8
    top_h = axis_y + font_size + 8 + label_w
    left_w = label_w + font_size + 12
    width = left_w + k * cell + 16
    height = top_h + k * cell + 16
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((8, 4), title or "confusion matrix", fill=(0, 0, 0), font=font)

    rows = cm.sum(axis=1, keepdims=True)
    share = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
    light, dark = np.array([247, 251, 255]), np.array([8, 48, 107])
    x0, y0 = left_w, top_h
    for i in range(k):
        for j in range(k):
            colour = tuple(int(round(c)) for c in light + (dark - light) * share[i, j])
            box = (x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell - 1, y0 + (i + 1) * cell - 1)
            draw.rectangle(box, fill=colour)
            text = str(int(cm[i, j]))
            tw, th = text_size(text)
            if tw <= cell - 2 and th <= cell - 2:
                ink = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
                draw.text((box[0] + (cell - tw) / 2, box[1] + (cell - th) / 2 - 1), text,
                          fill=ink, font=font)
    draw.rectangle((x0 - 1, y0 - 1, x0 + k * cell, y0 + k * cell), outline=(0, 0, 0))
    if show_names:
        for i, name in enumerate(names):  # row labels (true)
            tw, th = text_size(name)
            draw.text((x0 - tw - 6, y0 + i * cell + (cell - th) / 2 - 1), name, fill=(0, 0, 0),
                      font=font)
        for j, name in enumerate(names):  # column labels (predicted), rotated
            tw, th = text_size(name)
            label = Image.new("RGB", (tw + 4, th + 6), (255, 255, 255))
            ImageDraw.Draw(label).text((2, 0), name, fill=(0, 0, 0), font=font)
            label = label.rotate(90, expand=True)
            img.paste(label, (int(x0 + j * cell + (cell - label.width) / 2),
                              y0 - label.height - 4))
    draw.text((x0, axis_y), "predicted class", fill=(0, 0, 0), font=font)
    side = Image.new("RGB", (text_size("true class")[0] + 4, font_size + 6), (255, 255, 255))
    ImageDraw.Draw(side).text((2, 0), "true class", fill=(0, 0, 0), font=font)
    side = side.rotate(90, expand=True)
    img.paste(side, (4, int(y0 + (k * cell - side.height) / 2)))
    return save_image(img, path)
