"""``impasto.stylize``: Gatys style transfer from images in, PIL image out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from impasto.io import DEFAULT_MAX_PIXELS, load_image, to_pil, to_tensor
from impasto.style.gatys import GatysConfig, GatysStyleTransfer, StepInfo

ImageLike = Any  # a path, bytes, a PIL image, an array or a tensor (see impasto.io.load_image)


def _is_single(x: Any) -> bool:
    return not isinstance(x, (list, tuple))


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    init_image: ImageLike | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    abort: Callable[[], bool] | None = None,
    progress: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    transfer: GatysStyleTransfer | None = None,
    **options: Any,
) -> Image.Image:
    """Paints ``content`` in the style of ``style`` (one image or a list to blend).

    ``options`` are the fields of :class:`~impasto.style.GatysConfig` (``size``, ``style_weight``,
    ``preserve_color``, ``iterations``, ``seed``, ...). Images may be paths, bytes, PIL images or
    arrays; the result is an RGB PIL image whose longest side is ``size``. ``progress`` shows a
    progress bar. Pass a prebuilt ``transfer`` to reuse its VGG across calls.

    Example::

        import impasto
        out = impasto.stylize("photo.jpg", "starry_night.jpg", size=384, seed=1)
        out.save("out.png")
    """
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
    _, iterations, _ = transfer.plan(
        tuple(content_t.shape[-2:]), [tuple(s.shape[-2:]) for s in style_ts]
    )  # raises InputError for impossible sizes before any work or output
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(iterations), unit="it", dynamic_ncols=True)

    def on_step(info: StepInfo) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(
                f"scale {info.scale + 1}/{info.n_scales} {info.size[1]}x{info.size[0]} "
                f"loss {info.loss:.4g}",
                refresh=False,
            )
        if callback is not None:
            callback(info)

    try:
        out = transfer.run(content_t, style_ts, init=init_t, callback=on_step, abort=abort)
    finally:
        if bar is not None:
            bar.close()
    return to_pil(out)


def describe_source(x: ImageLike) -> str:
    """A short name of an image source for metadata: the file name, or its kind."""
    if isinstance(x, (str, os.PathLike)):
        return os.path.basename(os.fspath(x))
    return type(x).__name__
