"""``impasto.stylize``: Gatys style transfer from images in, PIL image out; and the metadata that
every front end (the command line, the web studio) stores in a stylised image's file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from impasto.io import DEFAULT_MAX_PIXELS, load_image, to_pil, to_tensor
from impasto.style.gatys import GatysConfig, GatysStyleTransfer, StepInfo

ImageLike = Any  # a path, bytes, a PIL image, an array or a tensor (see impasto.io.load_image)


def _is_single(x: Any) -> bool:
    return not isinstance(x, (list, tuple))


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike] | None = None,
    *,
    method: str | None = None,
    preset: Any = None,
    init_image: ImageLike | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    abort: Callable[[], bool] | None = None,
    progress: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    transfer: GatysStyleTransfer | None = None,
    masks: Any = None,
    keep_mask: Any = None,
    **options: Any,
) -> Image.Image:
    """Paints ``content`` in the style of ``style`` (one image or a list to blend).

    ``options`` are the fields of :class:`~impasto.style.GatysConfig` (``size``, ``style_weight``,
    ``preserve_color``, ``iterations``, ``seed``, ...). Images may be paths, bytes, PIL images or
    arrays; the result is an RGB PIL image whose longest side is ``size``. ``progress`` shows a
    progress bar. Pass a prebuilt ``transfer`` to reuse its VGG across calls. ``masks``: one
    mask per style image (files or a ``(K, H, W)`` tensor in ``[0, 1]``; white = where that
    style goes; Gatys et al. 2017). ``keep_mask``: Gatys only, a content-only region (a file or
    an ``(H, W)`` tensor in ``[0, 1]``; white = keep the photo there;
    :meth:`~impasto.style.GatysStyleTransfer.run`).

    Example::

        import impasto
        out = impasto.stylize("photo.jpg", "starry_night.jpg", size=384, seed=1)
        out.save("out.png")

    ``method="instant"`` (or a ``preset``) uses the pretrained instant networks instead
    (:class:`~impasto.style.instant.InstantStyle`, Ghiasi et al. 2017 / Dumoulin et al.
    2017): the result in well under a second at the content's own size. Its options:
    ``strength``, ``style_blend_weights``, ``size``, ``tile``, ``precision``, ``device``,
    ``preserve_color``, ``seed``, and ``masks`` (one per style)::

        out = impasto.stylize("photo.jpg", "painting.jpg", method="instant", strength=0.8)
        out = impasto.stylize("photo.jpg", preset="starry-blue")   # or 19, "3:0.5,12:0.5"
    """
    if method not in (None, "gatys", "instant"):
        from impasto.errors import InputError

        raise InputError(f"unknown method {method!r}; use 'gatys' or 'instant'")
    if method == "instant" or (method is None and preset is not None):
        from impasto.style.instant.pipeline import instant_stylize

        given = {"init_image": init_image, "callback": callback, "abort": abort,
                 "transfer": transfer, "keep_mask": keep_mask}
        return instant_stylize(content, style, preset=preset, masks=masks, max_pixels=max_pixels,
                               refuse=[k for k, v in given.items() if v is not None],
                               **options)
    if preset is not None:
        from impasto.errors import InputError

        raise InputError("a preset is an instant style: use method='instant'")
    if style is None:
        from impasto.errors import InputError

        raise InputError("give a style image (or a preset, for the instant styles)")
    if isinstance(content, (str, os.PathLike)):
        from impasto.io.video import VIDEO_SUFFIXES

        if os.path.splitext(os.fspath(content))[1].lower() in VIDEO_SUFFIXES:
            from impasto.errors import InputError

            raise InputError(f"{os.fspath(content)}: a video; use impasto.stylize_video(source, "
                             "style, output, ...)")
    styles = [style] if _is_single(style) else list(style)
    config = GatysConfig(**options) if transfer is None else transfer.config
    if transfer is not None and options:
        raise ValueError("pass options or a prebuilt transfer, not both")
    config.validate(len(styles))
    content_t = to_tensor(load_image(content, max_pixels=max_pixels))
    style_ts = [to_tensor(load_image(s, max_pixels=max_pixels)) for s in styles]
    init_t = None
    if init_image is not None:
        init_t = to_tensor(load_image(init_image, max_pixels=max_pixels))
    transfer = transfer or GatysStyleTransfer(config)
    sizes, iterations, _ = transfer.plan(
        tuple(content_t.shape[-2:]), [tuple(s.shape[-2:]) for s in style_ts]
    )  # raises InputError for impossible sizes before any work or output
    bar = GatysProgress(transfer, tuple(content_t.shape[-2:]), sizes, iterations, callback) \
        if progress else None
    on_step = bar.on_step if bar is not None else callback

    try:
        if masks is not None and not isinstance(masks, torch.Tensor):
            from impasto.style.adain.pipeline import _load_masks

            masks = _load_masks(masks, max_pixels)
        out = transfer.run(content_t, style_ts, init=init_t, callback=on_step, abort=abort,
                           masks=masks, keep_mask=keep_mask,
                           on_tile=bar.on_tile if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    return to_pil(out)


class GatysProgress:
    """The progress bar of a Gatys run (stylize, texture): iterations and tiles (``scale 4/4 it
    12/150 tile 3/16``), its ETA weighing each iteration by the pixels it processes, so the
    cheap coarse scales do not make it optimistic. Pass :meth:`on_step` as the run's
    ``callback`` (it calls ``callback`` too) and :meth:`on_tile` as its ``on_tile``."""

    def __init__(self, transfer: GatysStyleTransfer, content_hw: tuple[int, int],
                 sizes: Sequence[int], iterations: Sequence[int],
                 callback: Callable[[StepInfo], None] | None = None) -> None:
        from tqdm.auto import tqdm

        self.costs = [_evaluation_cost(transfer, transfer.scale_hw(content_hw, n))
                      for n in sizes]
        self.starts = [sum(n * c for n, c in zip(iterations[:k], self.costs))
                       for k in range(len(sizes))]
        self.sizes, self.iterations, self.callback = list(sizes), list(iterations), callback
        self.bar = tqdm(total=self.starts[-1] + iterations[-1] * self.costs[-1],
                        dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")
        self.where: dict[str, Any] = {"scale": 0, "iteration": 0, "tiles": ""}

    def _show(self) -> None:
        k = self.where["scale"]
        self.bar.set_description_str(
            f"scale {k + 1}/{len(self.sizes)} it {self.where['iteration']}/"
            f"{self.iterations[k]}{self.where['tiles']}", refresh=False)

    def on_tile(self, done: int, total: int) -> None:
        # Progress within an iteration (an evaluation's two passes over the tiles), weighted
        # as the passes cost: 1 forward, then 1 forward + backward (~2 forwards).
        k, i = self.where["scale"], self.where["iteration"]
        n_tiles = total // 2
        frac = done / 4 / n_tiles if done <= n_tiles else 0.25 + 0.75 * (done - n_tiles) / n_tiles
        self.bar.n = min(self.starts[k] + (i + min(frac, 1.0)) * self.costs[k], self.bar.total)
        self.where["tiles"] = f" tile {(done - 1) % n_tiles + 1}/{n_tiles}"
        self._show()
        self.bar.refresh()

    def on_step(self, info: StepInfo) -> None:
        self.where.update(scale=info.scale, iteration=info.iteration,
                          tiles="" if info.tiles == 1 else f" ({info.tiles} tiles)")
        self.bar.n = min(self.starts[info.scale] + info.iteration * self.costs[info.scale],
                         self.bar.total)
        self._show()
        self.bar.set_postfix_str(f"{info.size[1]}x{info.size[0]} loss {info.loss:.4g}",
                                 refresh=False)
        self.bar.refresh()
        if self.callback is not None:
            self.callback(info)

    def close(self) -> None:
        self.bar.close()


def _evaluation_cost(transfer: GatysStyleTransfer, hw: tuple[int, int]) -> float:
    """Relative cost of one loss-and-gradient evaluation at ``hw`` (in forward-pass pixels):
    a whole image costs a forward and a backward pass (about 3 forwards); tiles cost their
    crops' pixels (halo included) in a forward pass, then a forward and backward pass."""
    tiles = transfer.tiles(hw)
    if tiles is None:
        return 3.0 * hw[0] * hw[1]
    return 4.0 * sum(t.crop_pixels for t in tiles)


def gatys_metadata(config: GatysConfig, content: str, styles: Sequence[str]) -> dict[str, str]:
    """The metadata of a Gatys result's file (PNG text chunks, see
    :func:`~impasto.io.save_image`): the impasto version, the method, the content's and the
    styles' names and every setting of ``config`` (JSON)."""
    from impasto import __version__

    return {
        "impasto": __version__,
        "method": "gatys",
        "content": content,
        "style": json.dumps(list(styles)),
        "settings": json.dumps(config.to_dict()),
    }


def network_metadata(
    method: str,
    content: str,
    *,
    precision: str,
    preserve_color: str = "none",
    size: int | None = None,
    alpha: float | None = None,
    style_blend_weights: Sequence[float] | None = None,
    mask: Sequence[str] | None = None,
    strength: float | None = None,
    **labels: str | None,
) -> dict[str, str]:
    """The metadata of a feed-forward network's result (``method``: ``"fast"`` for a per-style
    network, ``"adain"``, ``"instant"``): the impasto version, the content's name, the settings (JSON)
    and ``labels`` such as ``model=``/``decoder=`` (the file's name) and ``style=`` (empty
    ones are left out)."""
    from impasto import __version__

    settings = {"method": method, "precision": precision, "alpha": alpha,
                "preserve_color": preserve_color, "size": size,
                "style_blend_weights": list(style_blend_weights) if style_blend_weights else None,
                "mask": list(mask) if mask else None}
    if strength is not None:  # the instant styles' strength, in place of AdaIN's alpha
        if alpha is None:
            del settings["alpha"]
        settings["strength"] = strength
    return {"impasto": __version__, "content": content, "settings": json.dumps(settings),
            **{k: v for k, v in labels.items() if v}}


def describe_source(x: ImageLike) -> str:
    """A short name of an image source for metadata: the file name, or its kind."""
    if isinstance(x, (str, os.PathLike)):
        return os.path.basename(os.fspath(x))
    return type(x).__name__
