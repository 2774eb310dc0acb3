"""The AdaIN inference pipeline (Huang & Belongie 2017): :class:`AdaIN`, a trained decoder and
the VGG19 encoder it was trained with.

::

    ada = AdaIN.from_file("decoder.pt")
    out = ada("photo.jpg", "starry_night.jpg", alpha=0.8)                  # -> PIL image
    out = ada(photo, [style_a, style_b], weights=[3, 1])                    # interpolation
    out = ada(photo, [style_a, style_b], masks=[sky_mask, ground_mask])     # spatial control
    out = ada(photo, style, preserve_color="luminance")                     # or "histogram"
    net = ada.stylizer([style_tensor], alpha=0.8)     # an nn.Module (N,3,H,W) -> (N,3,H,W)

Tiling computes the content statistics over the whole image first (two passes), so a tiled
result matches the untiled one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from impasto.device import autocast, resolve_device
from impasto.errors import InputError
from impasto.infer.precision import InferencePrecision, decide_precision
from impasto.infer.runner import InferenceRunner
from impasto.infer.tiling import plan_tiles, run_tiled
from impasto.io import DEFAULT_MAX_PIXELS, load_image, resize, to_pil, to_tensor
from impasto.nets.adain import (
    STRIDE,
    AdaINDecoder,
    AdaINStylizer,
    _pad_to,
    encoder_widths,
    mean_std,
    region_sums,
)
from impasto.nets.vgg import VGG19_WEIGHTS, VGG19Features
from impasto.style.adain.model import load_decoder
from impasto.style.color import (
    COLOR_MODES,
    combine_luminance,
    luminance_image,
    match_color,
)
from impasto.style.masks import load_masks

__all__ = ["OUTPUTS", "AdaIN"]

#: What :meth:`AdaIN.__call__` returns when asked: an RGB PIL image or a tensor.
OUTPUTS = ("pil", "tensor")


def _load_styles(styles: Any, max_pixels: int | None, style_size: int | None) -> list[Tensor]:
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not items:
        raise InputError("no style image given")
    out = []
    for s in items:
        if isinstance(s, Tensor) and s.ndim == 4:
            t = s.float()
        else:
            img = load_image(s, max_pixels=max_pixels)
            if style_size and max(img.size) > style_size:
                img = resize(img, longest=style_size)
            t = to_tensor(img)
        out.append(t)
    return out


#: The masks loader every method shares (kept under its old name for the CLI and benchmarks).
_load_masks = load_masks


class AdaIN:
    """Arbitrary style transfer with a trained decoder (Huang & Belongie 2017).

    ``AdaIN.from_file(path)`` rebuilds the decoder from its file and the encoder (VGG19 to
    ``relu4_1``) from the weights it was trained with; calling the pipeline stylises. See the
    module doc for examples. ``encoder`` may be given directly (tests use a small one).
    """

    def __init__(
        self,
        decoder: AdaINDecoder,
        encoder: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if encoder_widths(encoder) != tuple(decoder.config.widths):
            raise InputError(
                f"the decoder was built for an encoder of widths {decoder.config.widths}, "
                f"not {encoder_widths(encoder)}"
            )
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.precision = precision
        self._precision(precision)  # validate early
        self.decoder = decoder.eval().requires_grad_(False).to(self.device)
        self.encoder = encoder.eval().requires_grad_(False).to(self.device)
        self.metadata = dict(metadata or {})

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "auto",
        *,
        vgg_weights: str | os.PathLike[str] | None = None,
        precision: str = "auto",
        encoder: nn.Module | None = None,
    ) -> AdaIN:
        """Load a decoder file (this format or the previous release's; a training run's:
        :func:`~impasto.style.adain.export_model`). ``vgg_weights``: a local file of the VGG19
        weights the decoder was trained with (default: the packaged Caffe weights). Raises
        :class:`InputError` for a file of another kind and for missing weights."""
        decoder, meta = load_decoder(path)
        if encoder is None:
            enc = meta.get("encoder") or {}
            source = enc.get("weights")
            if source is None:
                raise InputError(
                    f"{path}: this decoder was trained with a random test encoder; pass it "
                    "as encoder="
                )
            if source not in VGG19_WEIGHTS:
                raise InputError(f"{path}: unknown encoder weights {source!r}")
            encoder = VGG19Features([enc.get("layer", "relu4_1")], weights=source,
                                    weights_path=vgg_weights)
        return cls(decoder, encoder, device=device, precision=precision, metadata=meta)

    #: The old name of :meth:`from_file` (kept for one release).
    load = from_file

    # -- building blocks

    def _precision(self, precision: str | InferencePrecision | None,
                   compile: bool | str = "auto") -> InferencePrecision:
        """The precision of one call (``None``: the pipeline's own), decided once by
        :func:`~impasto.infer.precision.decide_precision` and handed to the style statistics
        and the runner alike; a decided one is kept."""
        if isinstance(precision, InferencePrecision):
            return precision
        return decide_precision(precision or self.precision, self.device, AdaINStylizer,
                                compile=compile)

    @torch.inference_mode()
    def style_stats(self, styles: Sequence[Tensor],
                    precision: str | InferencePrecision | None = None
                    ) -> tuple[Tensor, Tensor]:
        """``relu4_1`` mean and std ``(K, C)`` of style images (each ``(1, 3, H, W)``), in the
        float precision of the work beside the network (with int8: what ``auto`` picks)."""
        means, stds = [], []
        dtype = self._precision(precision).work_dtype
        for s in styles:
            x, _, _ = _pad_to(s.to(self.device, torch.float32), STRIDE)
            with autocast(self.device, dtype):
                f = self.encoder(x)["relu4_1"]
            m, sd = mean_std(f)
            means.append(m.flatten(1).mean(0))
            stds.append(sd.flatten(1).mean(0))
        return torch.stack(means), torch.stack(stds)

    def stylizer(
        self,
        styles: Sequence[Tensor],
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Tensor | None = None,
        precision: str | InferencePrecision | None = None,
    ) -> AdaINStylizer:
        """An image-to-image module with these styles fixed (for batches, folders, video,
        tiling and export). ``styles``: tensors ``(1, 3, H, W)`` in ``[0, 1]``."""
        _check_counts(len(styles), weights, masks)
        mean, std = self.style_stats(styles, precision)
        return AdaINStylizer(self.encoder, self.decoder, mean, std, weights=weights,
                             masks=masks, alpha=_alpha(alpha)).to(self.device)

    def runner(self, stylizer: AdaINStylizer, *,
               precision: str | InferencePrecision | None = None,
               tile: int | str | None = None, overlap: int = 128, compile: bool | str = "auto",
               channels_last: bool | None = None, memory_budget: int | None = None
               ) -> InferenceRunner:
        """An :class:`~impasto.infer.runner.InferenceRunner` for ``stylizer`` whose tiling
        computes the content statistics over the whole image first (two passes)."""
        return InferenceRunner(
            stylizer, device=self.device, precision=self._precision(precision, compile),
            channels_last=channels_last, compile=compile, tile=tile, overlap=overlap,
            memory_budget=memory_budget, align=STRIDE, tiled=_tiled_adain,
        )

    def transform(
        self,
        styles: Sequence[Tensor],
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Tensor | None = None,
        preserve_color: str = "none",
        **runner_options: Any,
    ) -> Callable[[Tensor], Tensor]:
        """A batch function ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` for
        :mod:`impasto.style.apply`, with colour preservation: ``luminance`` stylises the
        luminance and keeps each input's chroma; ``histogram`` recolours the styles to each
        batch's colours first (the style statistics are then recomputed per batch)."""
        _check_color(preserve_color)
        _check_counts(len(styles), weights, masks)
        precision = self._precision(runner_options.get("precision"),
                                    runner_options.get("compile", "auto"))
        runner_options = {**runner_options, "precision": precision}
        if preserve_color == "luminance":
            styles = [luminance_image(s) for s in styles]
        if preserve_color != "histogram":
            run = self.runner(self.stylizer(styles, alpha=alpha, weights=weights, masks=masks,
                                            precision=precision), **runner_options)
        else:
            run = None

        def apply(x: Tensor) -> Tensor:
            if preserve_color == "histogram":
                recoloured = [match_color(s, x) for s in styles]
                r = self.runner(self.stylizer(recoloured, alpha=alpha, weights=weights,
                                              masks=masks, precision=precision),
                                **runner_options)
                return r(x)
            assert run is not None
            if preserve_color == "luminance":
                y = run(luminance_image(x))
                return combine_luminance(y, x)
            return run(x)

        if run is not None:  # folders and videos announce their batches (compile="auto")
            apply.expect = run.expect  # type: ignore[attr-defined]
        apply.precision = precision.name  # type: ignore[attr-defined]
        return apply

    # -- the call

    def __call__(
        self,
        content: Any,
        style_or_styles: Any,
        *,
        alpha: float = 1.0,
        weights: Sequence[float] | None = None,
        masks: Any = None,
        preserve_color: str = "none",
        size: int | None = None,
        style_size: int | None = 512,
        tile: int | str | None = None,
        precision: str | InferencePrecision | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int | None = None,
        output: str | None = None,
    ) -> Image.Image | Tensor:
        """Stylise ``content`` with one style image or a list of them.

        Args:
            alpha: content-style trade-off in ``[0, 1]`` (0: the decoder's reconstruction of
                the content; 1: full AdaIN).
            weights: one interpolation weight per style (default equal).
            masks: one mask per style (images or a ``(K, H, W)`` tensor; white = the region):
                each region of the content takes its own style.
            preserve_color: ``"none"``, ``"luminance"`` or ``"histogram"`` (Gatys et al. 2017).
            size: resize the content to this longest side first (None: keep).
            style_size: shrink style images to this longest side (None: keep).
            tile: see :class:`~impasto.infer.runner.InferenceRunner`.

        Images may be paths, PIL images, arrays or tensors (``(1, 3, H, W)`` or ``(3, H, W)``
        in ``[0, 1]``). ``output="pil"``: an RGB PIL image; ``"tensor"``: float32 ``(1, 3, H,
        W)`` in ``[0, 1]``; the default: a tensor for a tensor content, else a PIL image.
        ``seed`` is accepted for the pipelines' common shape; AdaIN draws nothing random, so
        it changes nothing.
        """
        del seed  # deterministic
        if output is not None and output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        as_tensor = isinstance(content, Tensor) if output is None else output == "tensor"
        if isinstance(content, Tensor):
            x = content.float()
            if x.ndim == 3:
                x = x[None]
        else:
            img = load_image(content, max_pixels=max_pixels)
            if size:
                img = resize(img, longest=size)
            x = to_tensor(img)
        styles = _load_styles(style_or_styles, max_pixels, style_size)
        m = _load_masks(masks, max_pixels) if masks is not None else None
        _check_color(preserve_color)
        _check_counts(len(styles), weights, m)
        if preserve_color == "luminance":
            styles = [luminance_image(s, like=x) for s in styles]
            inp = luminance_image(x)
        elif preserve_color == "histogram":
            styles = [match_color(s, x) for s in styles]
            inp = x
        else:
            inp = x
        choice = self._precision(precision)
        run = self.runner(self.stylizer(styles, alpha=alpha, weights=weights, masks=m,
                                        precision=choice), precision=choice, tile=tile)
        y = run(inp)
        if preserve_color == "luminance":
            y = combine_luminance(y, x)
        return y if as_tensor else to_pil(y)


def _alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha must be a number in [0, 1], not {alpha!r}") from None
    if not (math.isfinite(a) and 0.0 <= a <= 1.0):
        raise InputError(f"alpha must lie in [0, 1], not {alpha}")
    return a


def _check_color(mode: str) -> None:
    if mode not in COLOR_MODES:
        raise InputError(f"preserve color must be one of {', '.join(COLOR_MODES)}, not {mode!r}")


def _check_counts(n_styles: int, weights: Sequence[float] | None, masks: Tensor | None) -> None:
    if weights is not None and masks is not None:
        raise InputError("give style blend weights or masks, not both")
    if weights is not None and len(weights) != n_styles:
        raise InputError(f"{len(weights)} style blend weights for {n_styles} style image(s); "
                         "give one weight per style")
    if weights is not None:
        w = [float(v) for v in weights]
        if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
            raise InputError("style blend weights must be non-negative with a positive sum")
    if masks is not None and masks.shape[0] != n_styles:
        raise InputError(f"{masks.shape[0]} masks for {n_styles} style image(s); "
                         "give one mask per style")


def _tiled_adain(runner: InferenceRunner, x: Tensor, tile: int) -> Tensor:
    """Two passes: the content statistics over all tiles (each tile's core, so every feature
    cell counts once), then the stylised tiles with those statistics, blended."""
    net = runner.model  # int8: the runner calibrated on the whole image before tiling
    assert isinstance(net, AdaINStylizer)
    H, W = x.shape[-2:]
    overlap = runner.overlap_for(tile)
    sums: tuple[Tensor, Tensor, Tensor] | None = None
    for t in plan_tiles(H, W, tile, overlap, STRIDE):
        with runner.context():
            piece, _, _ = _pad_to(runner.prepare(x[..., t.y0:t.y1, t.x0:t.x1]), STRIDE)
            f = net.features(piece).float()
            m = net.region_masks(tuple(f.shape[-2:]), (H, W), (t.y0, t.y1, t.x0, t.x1))
            fy0, fx0 = (t.cy0 - t.y0) // STRIDE, (t.cx0 - t.x0) // STRIDE
            fy1 = -(-(t.cy1 - t.y0) // STRIDE)
            fx1 = -(-(t.cx1 - t.x0) // STRIDE)
            core = f[..., fy0:fy1, fx0:fx1]
            mc = None if m is None else m.to(f.device)[..., fy0:fy1, fx0:fx1]
            s = region_sums(core, mc)
        sums = s if sums is None else tuple(a + b for a, b in zip(sums, s))  # type: ignore
    assert sums is not None

    def one(piece: Tensor, box: tuple[int, int, int, int]) -> Tensor:
        with runner.context():
            y = net(runner.prepare(piece), sums=sums, box=box, image_size=(H, W))
        return y.float().to(x.device)

    return run_tiled(one, x, tile=tile, overlap=overlap, align=STRIDE, with_box=True)

