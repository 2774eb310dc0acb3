"""The Stylize tab's work, without the page: the result at once through a feed-forward pipeline
(a per-style network, AdaIN), and the refinement with Gatys (:class:`GatysStyleTransfer`)
that starts from it, as a job (:mod:`impasto.web.jobs`) with a live preview and cancel.

Both write the PNG as ``impasto stylize`` does: the same pipelines, the same file writer
(:func:`~impasto.io.save_image`) and the same metadata
(:func:`~impasto.style.pipeline.gatys_metadata`, :func:`~impasto.style.pipeline.network_metadata`).
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.io import DEFAULT_MAX_PIXELS, load_image
from impasto.web.catalog import Catalog

__all__ = ["SAMPLES", "Result", "StyleRequest", "Stylizer", "release_memory", "sample"]

#: Photos shipped inside scikit-image (public domain or CC0), offered as samples.
SAMPLES = {"astronaut": "astronaut", "cat (chelsea)": "chelsea", "coffee": "coffee",
           "rocket": "rocket"}

PREVIEW_EVERY = 5  # iterations between live previews of a refinement
STYLE_SIZE = 512  # AdaIN's style images are shrunk to this longest side (the CLI's default)


def sample(name: str) -> Any:
    """A packaged sample photo (a PIL image) by its menu name."""
    if name not in SAMPLES:
        raise InputError(f"unknown sample {name!r}; samples are {', '.join(SAMPLES)}")
    try:
        from skimage import data
    except ImportError:
        raise InputError("the sample photos need scikit-image (pip install 'impasto[web]')"
                         ) from None
    from PIL import Image

    return Image.fromarray(getattr(data, SAMPLES[name])())


def release_memory() -> None:
    """After a job: collect its garbage and give the accelerator's cached blocks back."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class StyleRequest:
    """What the page asks for. ``model``: the catalog name of a per-style network (or None);
    ``paintings``: style image files (AdaIN at once, Gatys when refined); ``weights``: one
    blend weight per painting (None: equal); ``strength``: AdaIN's alpha in ``[0, 1]``;
    ``size``: the longest side of the result; ``preserve_color``: none, luminance, histogram."""

    model: str | None = None
    paintings: Sequence[str] = ()
    weights: Sequence[float] | None = None
    strength: float = 1.0
    size: int = 512
    preserve_color: str = "none"

    def check(self) -> None:
        if not 16 <= self.size <= 4096:
            raise InputError(f"size must be from 16 to 4096 px, not {self.size}")
        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"strength must lie in [0, 1], not {self.strength}")
        if self.weights is not None:
            if len(self.weights) != len(self.paintings):
                raise InputError(f"{len(self.weights)} blend weights for "
                                 f"{len(self.paintings)} painting(s); give one per painting")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise InputError("blend weights must be non-negative and not all zero")


@dataclass
class Result:
    """A written result: ``path`` (the PNG with its settings), ``image`` (PIL), ``method``
    (fast, adain, gatys) and ``caption``; ``metadata`` as stored in the file."""

    path: Path
    image: Any
    method: str
    caption: str
    metadata: dict[str, str] = field(default_factory=dict)


def parse_weights(text: str | None, n: int) -> list[float] | None:
    """Blend weights from the page: ``"1, 2"`` -> ``[1.0, 2.0]``; empty: None (equal)."""
    if not text or not text.strip():
        return None
    try:
        weights = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise InputError(f"blend weights must be numbers separated by commas, not {text!r}"
                         ) from None
    if len(weights) != n:
        raise InputError(f"{len(weights)} blend weights for {n} painting(s)")
    return weights


class Stylizer:
    """Loads the pipelines (kept for the next call) and runs them. ``device``: ``"auto"``,
    ``"cpu"``, ``"cuda"``; ``gatys_encoder``/``adain_encoder``: VGG encoders to use instead
    of the real ones (tests use tiny random ones)."""

    def __init__(self, catalog: Catalog, *, device: str = "auto",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 gatys_encoder: Any = None, adain_encoder: Any = None,
                 preview_every: int = PREVIEW_EVERY) -> None:
        self.catalog = catalog
        self.device = device
        self.max_pixels = max_pixels
        self.preview_every = preview_every
        self._gatys_encoder = gatys_encoder
        self._adain_encoder = adain_encoder
        self._lock = threading.Lock()
        self._models: OrderedDict[str, Any] = OrderedDict()

    # -- pipelines, loaded once

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load()
            self._models[key] = model
            while len(self._models) > 4:
                self._models.popitem(last=False)
            return model

    def fast_style(self, name: str) -> Any:
        from impasto.style.fast import FastStyle

        path = self.catalog.path(name)
        return self._cached(f"fast:{name}", lambda: FastStyle.from_file(path, self.device))

    def adain(self) -> Any | None:
        """The AdaIN pipeline of the first decoder under ``--runs``, or None."""
        decoders = self.catalog.of("adain")
        if not decoders:
            return None
        from impasto.style.adain import AdaIN

        name = decoders[0].name
        path = self.catalog.path(name)
        ada = self._cached(f"adain:{name}", lambda: AdaIN.from_file(
            path, self.device, encoder=self._adain_encoder))
        ada.source_name = Path(name).name
        return ada

    def gatys_encoder(self) -> Any:
        """The VGG19 of Gatys, built once and shared by every refinement."""
        def build() -> Any:
            from impasto.style.gatys import GatysConfig, GatysStyleTransfer

            return GatysStyleTransfer(GatysConfig(device=self.device)).encoder

        if self._gatys_encoder is not None:
            return self._gatys_encoder
        return self._cached("gatys:vgg19", build)

    # -- the result at once

    def quick(self, content: Any, content_name: str, req: StyleRequest, out: Path
              ) -> Result | None:
        """The result at once: the per-style network ``req.model``, else AdaIN on the
        paintings when a decoder is under ``--runs``; None when neither applies (the page
        then offers Refine, which runs Gatys from the photo). ``content``: an image file or
        a PIL image. Writes ``out`` (a PNG with the settings)."""
        from impasto.style.apply import apply_image
        from impasto.style.pipeline import network_metadata

        req.check()
        photo = _load(content, self.max_pixels)
        for p in req.paintings:  # a bad painting is refused now, whichever path runs
            _load(p, self.max_pixels)
        if req.model:
            model = self.fast_style(req.model)
            transform = model.transform(precision="auto", compile="off",
                                        preserve_color=_network_colour(req.preserve_color))
            meta = network_metadata(
                "fast", content_name, precision=transform.precision,
                preserve_color=_network_colour(req.preserve_color), size=req.size,
                model=Path(req.model).name, style=model.style_name)
            caption = f"{model.style_name or Path(req.model).stem}, at once"
            method = "fast"
        elif req.paintings:
            ada = self.adain()
            if ada is None:
                return None
            from impasto.io import resize, to_tensor

            images = [_load(p, self.max_pixels) for p in req.paintings]
            styles = [to_tensor(resize(im, longest=STYLE_SIZE) if max(im.size) > STYLE_SIZE
                                else im) for im in images]
            transform = ada.transform(styles, alpha=req.strength, weights=req.weights,
                                      preserve_color=req.preserve_color, compile="off")
            meta = network_metadata(
                "adain", content_name, precision=transform.precision, alpha=req.strength,
                preserve_color=req.preserve_color, size=req.size,
                style_blend_weights=req.weights, decoder=ada.source_name,
                style=_json_names(req.paintings))
            caption = f"AdaIN, strength {req.strength:g}"
            method = "adain"
        else:
            raise InputError("choose a style: a model from the gallery, or upload a painting")
        path = apply_image(transform, photo, out, size=req.size, max_pixels=None, metadata=meta)
        return Result(path, load_image(path), method, caption, meta)

    # -- the refinement

    def refine(self, job: Any, content: Any, content_name: str, start: Any, req: StyleRequest,
               iterations: int, out: Path) -> Result | None:
        """Gatys on the paintings, from ``start`` (the result shown, a file or PIL image) or,
        when None, from the photo with the coarse-to-fine schedule; ``iterations`` at full
        size. Reports progress and a preview to ``job`` every few iterations and stops when
        it is cancelled (then returns None and writes nothing)."""
        from impasto.io import save_image, to_pil
        from impasto.style.gatys import GatysConfig, GatysStyleTransfer
        from impasto.style.pipeline import gatys_metadata, stylize

        req.check()
        if not req.paintings:
            raise InputError("Refine runs Gatys on the painting itself: upload it under "
                             "'Your paintings' (a per-style network keeps no painting)")
        if not 1 <= iterations <= 2000:
            raise InputError(f"iterations must be from 1 to 2000, not {iterations}")
        settings: dict[str, Any] = dict(size=req.size, preserve_color=req.preserve_color,
                                        style_blend_weights=req.weights, seed=0,
                                        device=self.device)
        if start is not None:
            settings.update(scales=1, iterations=iterations)
        else:
            n = len(GatysConfig(size=req.size).scale_sizes())
            coarse = list(GatysConfig(size=req.size).scale_iterations()[:-1])
            settings.update(iterations=tuple(coarse + [iterations]) if n > 1 else iterations)
        config = GatysConfig(**settings)
        config.validate(len(req.paintings))
        photo = _load(content, self.max_pixels)
        styles = [_load(p, self.max_pixels) for p in req.paintings]
        init = None if start is None else _load(start, self.max_pixels)
        transfer = GatysStyleTransfer(config, encoder=self.gatys_encoder())

        def on_step(info: Any) -> None:
            preview = None
            if info.step % self.preview_every == 0 or info.step == 1:
                preview = to_pil(info.image.clamp(0, 1))
            job.report(info.step, info.total_steps, preview=preview,
                       message=f"scale {info.scale + 1}/{info.n_scales}, "
                               f"{info.size[1]}x{info.size[0]} px, loss {info.loss:.4g}")

        image = stylize(photo, styles, init_image=init, transfer=transfer, callback=on_step,
                        abort=job.cancelled, max_pixels=None)
        if job.cancelled():
            return None
        meta = gatys_metadata(config, content_name, [Path(p).name for p in req.paintings])
        path = save_image(image, out, metadata=meta)
        return Result(path, image, "gatys", f"Gatys, {iterations} iterations", meta)


def _load(source: Any, max_pixels: int | None) -> Any:
    """:func:`~impasto.io.load_image` with the same checks as the CLI (the decompression-bomb
    guard included); its messages name the file, not the server's folders."""
    try:
        return load_image(source, max_pixels=max_pixels)
    except InputError as e:
        if not isinstance(source, (str, Path)):
            raise
        raise InputError(str(e).replace(str(source), Path(source).name)) from None


def _network_colour(mode: str) -> str:
    """A per-style network has no style image to recolour: 'histogram' means luminance."""
    return "luminance" if mode == "histogram" else mode


def _json_names(paths: Sequence[str]) -> str:
    import json

    return json.dumps([Path(p).name for p in paths])
