"""Gatys style transfer at any size: the whole-image loss and its gradient, computed tile by tile.

The image is cut into a grid of tile *interiors* that partition it; each tile is encoded from a
crop that adds a *halo* of ``halo`` pixels on every side where the image continues. The crops
start on multiples of the deepest layer's stride (``align``) and the halo is wider than the
receptive field's reach, so every feature inside a tile's interior is computed from exactly the
pixels, paddings and pooling windows the whole image would give it: the interiors' features,
put side by side, ARE the whole image's features (up to rounding).

The style loss stays global (Gatys et al. 2016 on the whole image): one evaluation makes

1. a pass without gradients that sums every tile's interior outer products ``F F^T`` into the
   whole image's Gram matrices ``G = sum_t F_t F_t^T / (C * N)`` and sums the content errors;
2. the loss from those Gram matrices, and ``dL/dG`` by autograd on the small ``C x C`` matrices;
3. a pass with gradients: for each tile the surrogate ``<dL/dG, F_t F_t^T> / (C * N)`` (whose
   gradient in ``F_t`` is ``2 (dL/dG) F_t / (C * N)``, the tile's share of the whole-image
   gradient) plus the tile's content error, back-propagated into the crop and added to the
   image's gradient.

With masks (Gatys et al. 2017, :func:`~impasto.style.losses.masked_grams`) the sums are the
guided Gram matrices ``(F m_k)(F m_k)^T``, one per region ``k``, with each mask resized once to
the whole image's feature map of each layer and cropped to each tile's interior: again the
whole image's statistics.

An image that wraps around (``wrap``, :mod:`impasto.style.wrap`: a circular-padding encoder
and sides that are multiples of ``align``) is a torus: along a wrapped axis every crop takes its
full halo, continued from the opposite edge, and its gradient is added back there.

So the optimiser (L-BFGS or Adam) sees the loss and gradient of the whole image, every tile is
pulled towards the same Gram matrices, and no seam can appear: there is no blending to do,
because the gradients the tiles return are the exact pieces of one gradient. Memory is that of
one crop plus the image, its gradient and the optimiser's state; the cost is one more forward
pass per evaluation and the halo's pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from impasto.losses.perceptual import style_loss
from impasto.nets.vgg import VGG19_LAYER_NAMES

__all__ = [
    "FULL_SIZE_VECTORS",
    "Tile",
    "TiledPerceptualLoss",
    "full_size_bytes_per_pixel",
    "gatys_bytes_per_pixel",
    "gatys_memory_budget",
    "layer_geometry",
    "plan_tiles",
    "seam_ratio",
]


def layer_geometry(layers: Sequence[str]) -> tuple[int, int]:
    """``(align, halo)`` for VGG19 ``layers``: the deepest layer's stride (crops start on its
    multiples) and a halo, a multiple of ``align``, wider than the receptive field's reach."""
    deepest = max(VGG19_LAYER_NAMES.index(n) for n in layers)
    jump, reach = 1, 0
    for name in VGG19_LAYER_NAMES[: deepest + 1]:
        if name.startswith("conv"):
            reach += jump  # a 3x3 convolution reaches one step further on each side
        elif name.startswith("pool"):
            reach += jump  # a 2x2 window reaches one step beyond its cell on the right
            jump *= 2
    return jump, math.ceil(reach / jump) * jump


def _stride(name: str) -> int:
    i = VGG19_LAYER_NAMES.index(name)
    return 2 ** sum(n.startswith("pool") for n in VGG19_LAYER_NAMES[: i + 1])


@dataclass(frozen=True)
class Tile:
    """One tile: its interior ``[y0, y1) x [x0, x1)`` and its crop (interior plus halo; along
    an axis that wraps around, the crop may start before 0 or end past the image's side, and
    continues from the opposite edge)."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int

    @property
    def crop_pixels(self) -> int:
        return (self.cy1 - self.cy0) * (self.cx1 - self.cx0)


def _cuts(n: int, tile: int, align: int) -> list[int]:
    """Interior boundaries along one side: multiples of ``align``, about ``tile`` apart; a
    remainder shorter than a quarter tile joins the last tile."""
    step = max(align, tile // align * align)
    cuts = list(range(0, n, step))
    if len(cuts) > 1 and n - cuts[-1] < step // 4:
        cuts.pop()
    return cuts + [n]


def plan_tiles(height: int, width: int, tile: int, align: int, halo: int,
               wrap: str = "none") -> list[Tile]:
    """Tiles of about ``tile`` x ``tile`` interior pixels covering ``height`` x ``width``; along
    the axes in ``wrap`` ("x", "y", "xy") the crops take their whole halo across the edges."""
    ys, xs = _cuts(height, tile, align), _cuts(width, tile, align)
    wy, wx = "y" in wrap, "x" in wrap
    return [
        Tile(y0, y1, x0, x1,
             y0 - halo if wy else max(0, y0 - halo), y1 + halo if wy else min(height, y1 + halo),
             x0 - halo if wx else max(0, x0 - halo), x1 + halo if wx else min(width, x1 + halo))
        for y0, y1 in pairwise(ys) for x0, x1 in pairwise(xs)
    ]


def _crop(image: Tensor, t: Tile) -> Tensor:
    """The crop of tile ``t`` from ``image`` ``(N, C, H, W)``, continued across the edges
    where it reaches past them (a view when it does not)."""
    h, w = image.shape[-2:]
    if t.cy0 < 0 or t.cy1 > h:
        rows = torch.arange(t.cy0, t.cy1, device=image.device) % h
        image = image.index_select(-2, rows)
    else:
        image = image[..., t.cy0:t.cy1, :]
    if t.cx0 < 0 or t.cx1 > w:
        return image.index_select(-1, torch.arange(t.cx0, t.cx1, device=image.device) % w)
    return image[..., t.cx0:t.cx1]


def _add_crop(grad: Tensor, g: Tensor, t: Tile) -> None:
    """Adds a crop's gradient ``g`` into the image's ``grad`` at tile ``t``'s crop (wrapping
    around the edges where the crop does)."""
    h, w = grad.shape[-2:]
    x0, x1 = t.cx0, t.cx1
    if x0 < 0 or x1 > w:
        full = g.new_zeros(*g.shape[:-1], w)
        full.index_add_(-1, torch.arange(x0, x1, device=g.device) % w, g)
        g, x0, x1 = full, 0, w
    target = grad[..., x0:x1]
    if t.cy0 < 0 or t.cy1 > h:
        target.index_add_(-2, torch.arange(t.cy0, t.cy1, device=g.device) % h, g)
    else:
        target[..., t.cy0:t.cy1, :] += g


def _interior(features: Tensor, t: Tile, stride: int) -> Tensor:
    """The part of a crop's features ``(N, C, h, w)`` that lies in the tile's interior."""
    r0, r1 = (t.y0 - t.cy0) // stride, (t.y1 - t.cy0) // stride
    c0, c1 = (t.x0 - t.cx0) // stride, (t.x1 - t.cx0) // stride
    return features[..., r0:r1, c0:c1]


def gatys_bytes_per_pixel(encoder: nn.Module, dtype: torch.dtype = torch.float32,
                          probe: int = 64) -> float:
    """Estimated memory of one loss-and-gradient evaluation per input pixel (bytes): every
    layer's output (kept for the backward pass) plus as much again for the gradients in
    flight, from one probe run at ``probe`` x ``probe``."""
    total = [0]

    def hook(_m, _inp, out):
        if isinstance(out, Tensor):
            total[0] += out.numel()

    leaves = [m for m in encoder.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        p = next(iter(encoder.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        with torch.inference_mode():
            encoder(torch.rand(1, 3, probe, probe, device=device))
    finally:
        for h in handles:
            h.remove()
    elem = torch.finfo(dtype).bits // 8
    return 2.0 * elem * total[0] / probe**2 + 48.0  # + image, gradient and crop copies (fp32)


#: Image-sized float32 buffers (3 values a pixel) a run holds at its full size besides the
#: encoder's activations, by optimiser. L-BFGS: the image, its gradient being summed over tiles,
#: the optimiser's start point, gradient, direction, current trial, best trial and its gradient,
#: and the content image at full size. Adam: the image, its gradient, the two moment estimates,
#: the content image and two temporaries. (The L-BFGS history comes on top:
#: :func:`impasto.style.optim.history_for_budget`.)
FULL_SIZE_VECTORS = {"lbfgs": 9, "adam": 7}


def full_size_bytes_per_pixel(encoder: nn.Module, content_layers: Sequence[str],
                              optimizer: str = "lbfgs", probe: int = 64) -> float:
    """Bytes per output pixel of what a run holds at full size besides one crop's
    activations: :data:`FULL_SIZE_VECTORS` float32 RGB images plus the float32 content targets
    (``relu4_2``: 512 channels at 1/8 the side, 32 B/px). About 140 B/px for L-BFGS with the
    default layers: 9.4 GB at 8192 x 8192."""
    p = next(iter(encoder.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    with torch.inference_mode():
        feats = encoder(torch.rand(1, 3, probe, probe, device=device))
    targets = sum(feats[n].numel() for n in content_layers) / probe**2
    return 12.0 * FULL_SIZE_VECTORS[optimizer] + 4.0 * targets


def gatys_memory_budget(device: torch.device) -> int:
    """Bytes a run may take at its largest scale (the full-size buffers, the L-BFGS history
    and one crop's evaluation): ``$IMPASTO_MEMORY_BUDGET``; else on a GPU 70% of its free
    memory, on a CPU half the available RAM (2 GiB when it cannot be read)."""
    from impasto.infer.tiling import _available_ram, _parse_bytes

    env = os.environ.get("IMPASTO_MEMORY_BUDGET")
    if env:
        return _parse_bytes(env)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    ram = _available_ram()
    return ram // 2 if ram else 2 << 30


def auto_tile_side(height: int, width: int, bpp: float, budget: int, align: int,
                   halo: int) -> int | None:
    """The interior side of tiles whose crops fit ``budget``; None when the whole image fits.
    The tiles split the longest side evenly (no short remainder), and none of
    :func:`plan_tiles`'s, a joined remainder included, is larger than fits."""
    if height * width * bpp <= budget:
        return None
    crop = int(math.sqrt(budget / bpp))
    largest = max(align, (crop - 2 * halo) // align * align)
    longest = max(height, width)
    n = math.ceil(longest / largest)
    side = min(largest, math.ceil(longest / n / align) * align)
    while side > align and any(b - a > largest for n_px in (height, width)
                               for a, b in pairwise(_cuts(n_px, side, align))):
        side -= align
    return side


class TiledPerceptualLoss:
    """The loss of a :class:`~impasto.style.losses.PerceptualLoss` over a whole image, and its
    gradient, evaluated tile by tile (see the module doc). The targets live here: content
    features per tile interior, and the style Gram matrices in ``loss.style[name].target``.

    ``on_tile(done, total)`` is called after each tile of each pass (two passes an evaluation).
    """

    def __init__(self, loss: nn.Module, tile: int,
                 on_tile: Callable[[int, int], None] | None = None, wrap: str = "none") -> None:
        self.loss = loss
        self.tile = tile
        self.wrap = wrap
        self.on_tile = on_tile
        self.content_layers = list(loss.content)
        self.style_layers = list(loss.style)
        self.align, self.halo = layer_geometry(self.content_layers + self.style_layers)
        self.tiles: list[Tile] = []
        self.content_targets: list[dict[str, Tensor]] = []
        self.content_numel: dict[str, int] = {}
        self.masks: dict[str, Tensor] | None = None  # per style layer: (K, h, w) at its size
        self.mask_norms: dict[str, Tensor] = {}  # per style layer: sum of m_k^2, (K,)

    def set_masks(self, masks: Tensor | None, hw: tuple[int, int] | None = None) -> None:
        """Per-region styles: ``masks`` ``(K, H, W)`` in ``[0, 1]`` at the optimised image's
        size ``hw``, one per style image (:func:`~impasto.style.losses.masked_grams`), resized
        here to each style layer's whole feature map; None: plain Gram matrices. Set before
        :meth:`set_styles`."""
        if masks is None:
            self.masks, self.mask_norms = None, {}
            return
        h, w = hw if hw is not None else masks.shape[-2:]
        self.masks = {}
        for n in self.style_layers:
            s = _stride(n)
            m = nn.functional.interpolate(masks[None].float(), size=(h // s, w // s),
                                          mode="bilinear", align_corners=False,
                                          antialias=True)[0]
            self.masks[n] = m
            self.mask_norms[n] = m.flatten(1).pow(2).sum(1)

    def _masked(self, f: Tensor, n: str, t: Tile) -> Tensor:
        """A tile's interior features ``(1, C, hw)`` of layer ``n`` times each region's mask
        cropped to the tile: ``(K, C, hw)`` (``f`` itself without masks)."""
        if self.masks is None:
            return f
        s = _stride(n)
        m = self.masks[n][:, t.y0 // s:t.y1 // s, t.x0 // s:t.x1 // s]
        return f * m.reshape(m.shape[0], 1, -1).to(f.device)

    def _norms(self, sums: dict[str, Tensor], counts: dict[str, int]) -> dict[str, Any]:
        """What each layer's summed ``F F^T`` is divided by: ``C * N``, or with masks
        ``C * sum m_k^2`` per region ``(K, 1, 1)``."""
        out = {}
        for n in self.style_layers:
            c = sums[n].shape[-1]
            if self.masks is None:
                out[n] = c * counts[n]
            else:
                out[n] = (c * self.mask_norms[n]).clamp_min(1e-8)[:, None, None].to(sums[n].device)
        return out

    def plan(self, height: int, width: int) -> list[Tile]:
        """The tiles of an image of this size; it wraps around along ``self.wrap``'s axes
        where its side is a multiple of ``align`` (a style image of another size is encoded
        without wrapping: its statistics then differ from the whole image's within the
        receptive field's reach of its border)."""
        wrap = "".join(a for a, n in (("x", width), ("y", height))
                       if a in self.wrap and n % self.align == 0)
        return plan_tiles(height, width, self.tile, self.align, self.halo, wrap or "none")

    def _encode(self, image: Tensor, t: Tile) -> dict[str, Tensor]:
        return self.loss.encoder(_crop(image, t))

    @torch.no_grad()
    def grams(self, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """The Gram matrices ``(N, C, C)`` of the whole ``image`` (as :func:`gram_matrix`),
        accumulated over tiles."""
        sums: dict[str, Tensor] = {}
        counts = dict.fromkeys(layers, 0)
        for t in self.plan(*image.shape[-2:]):
            feats = self._encode(image, t)
            for n in layers:
                f = _interior(feats[n], t, _stride(n)).float().flatten(2)
                g = torch.bmm(f, f.transpose(1, 2))
                sums[n] = sums[n] + g if n in sums else g
                counts[n] += f.shape[-1]
        return {n: sums[n] / (sums[n].shape[-1] * counts[n]) for n in layers}

    @torch.no_grad()
    def set_content(self, image: Tensor) -> None:
        """Content targets of ``image`` ``(1, 3, H, W)``, kept per tile interior (float32)."""
        self.tiles = self.plan(*image.shape[-2:])
        self.content_targets = []
        self.content_numel = dict.fromkeys(self.content_layers, 0)
        for t in self.tiles:
            feats = self._encode(image, t)
            part = {n: _interior(feats[n], t, _stride(n)).float().clone()
                    for n in self.content_layers}
            for n, f in part.items():
                self.content_numel[n] += f.numel()
            self.content_targets.append(part)

    @torch.no_grad()
    def set_styles(self, images: Sequence[Tensor], blend: Sequence[float] | None = None) -> None:
        """Style targets as :meth:`PerceptualLoss.set_styles`, for style images of any size."""
        blend = [1.0] * len(images) if blend is None else list(blend)
        total = float(sum(blend))
        per_image = [self.grams(img, self.style_layers) for img in images]
        for n, mod in self.loss.style.items():
            if self.masks is not None:  # one target per region: (K, C, C)
                mod.target = torch.cat([g[n].mean(0, keepdim=True) for g in per_image])
                continue
            mod.target = sum(w / total * g[n].mean(0, keepdim=True)
                             for w, g in zip(blend, per_image))

    def _content_part(self, feats: dict[str, Tensor], i: int) -> Tensor:
        t = self.tiles[i]
        out = feats[self.content_layers[0]].new_zeros((), dtype=torch.float32)
        for n, mod in self.loss.content.items():
            f = _interior(feats[n], t, _stride(n)).float()
            out = out + mod.weight * (f - self.content_targets[i][n]).pow(2).sum() \
                / self.content_numel[n]
        return out

    def evaluate(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole-image loss of ``image`` (a leaf ``(1, 3, H, W)`` that requires grad, of
        the size given to :meth:`set_content`); sets ``image.grad`` to its gradient. Returns
        ``(total, parts)`` as :meth:`PerceptualLoss.forward` does (detached)."""
        if not self.tiles or (self.tiles[-1].y1, self.tiles[-1].x1) != tuple(image.shape[-2:]):
            raise RuntimeError("TiledPerceptualLoss: call set_content with an image of this size")
        loss, n_tiles = self.loss, len(self.tiles)
        # 1. Gram matrices and content error of the whole image, without gradients.
        with torch.no_grad():
            sums: dict[str, Tensor] = {}
            counts = dict.fromkeys(self.style_layers, 0)
            content = image.new_zeros((), dtype=torch.float32)
            for i, t in enumerate(self.tiles):
                feats = self._encode(image, t)
                content = content + self._content_part(feats, i)
                for n in self.style_layers:
                    f = self._masked(_interior(feats[n], t, _stride(n)).float().flatten(2), n, t)
                    g = torch.bmm(f, f.transpose(1, 2))
                    sums[n] = sums[n] + g if n in sums else g
                    counts[n] += f.shape[-1]
                if self.on_tile is not None:
                    self.on_tile(i + 1, 2 * n_tiles)
        # 2. The style loss and its gradient in each Gram matrix.
        norms = self._norms(sums, counts)
        grams = {n: (sums[n] / norms[n]).requires_grad_(True) for n in self.style_layers}
        with torch.enable_grad():
            style = sum(mod.weight * style_loss(grams[n], mod.target)
                        for n, mod in loss.style.items())
            d_grams = torch.autograd.grad(loss.style_weight * style, list(grams.values()))
        coef = {n: d / norms[n] for n, d in zip(self.style_layers, d_grams)}
        # 3. Each tile's share of the gradient, accumulated into the image's.
        grad = torch.zeros_like(image, dtype=torch.float32)
        tv = image.new_zeros((), dtype=torch.float32)
        with torch.enable_grad():
            if loss.tv.weight:
                tv = loss.tv(image)
                grad += torch.autograd.grad(tv, image)[0].float()
            for i, t in enumerate(self.tiles):
                crop = _crop(image.detach(), t).clone().requires_grad_(True)
                feats = loss.encoder(crop)
                surrogate = loss.content_weight * self._content_part(feats, i)
                for n in self.style_layers:
                    f = self._masked(_interior(feats[n], t, _stride(n)).float().flatten(2), n, t)
                    surrogate = surrogate + (f * torch.bmm(coef[n], f)).sum()
                (g,) = torch.autograd.grad(surrogate, crop)
                _add_crop(grad, g.float(), t)
                if self.on_tile is not None:
                    self.on_tile(n_tiles + i + 1, 2 * n_tiles)
        image.grad = grad.to(image.dtype)
        style = style.detach()
        total = loss.content_weight * content + loss.style_weight * style + tv.detach()
        return total.detach(), {"content": content, "style": style, "tv": tv.detach()}


def seam_ratio(image: Tensor, cuts_y: Sequence[int] = (), cuts_x: Sequence[int] = (),
               wrap: bool = False) -> float:
    """How visible seams are: the mean absolute jump between neighbouring pixels across the
    given cut lines (rows ``cuts_y``, columns ``cuts_x``; with ``wrap``, also across the
    wrap-around from the last row/column to the first) divided by the mean jump between
    neighbours everywhere else. About 1: no seam; a visible seam is several times larger.
    ``image`` is ``(1, C, H, W)``."""
    x = image.detach().float()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(0, 1, 3))  # (H-1,): jump y -> y+1
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (W-1,)
    seam_y = [dy[c - 1] for c in cuts_y if 0 < c < x.shape[-2]]
    seam_x = [dx[c - 1] for c in cuts_x if 0 < c < x.shape[-1]]
    if wrap:
        seam_y.append((x[..., 0, :] - x[..., -1, :]).abs().mean())
        seam_x.append((x[..., :, 0] - x[..., :, -1]).abs().mean())
    seams = seam_y + seam_x
    if not seams:
        raise ValueError("no seam to measure")
    keep_y = torch.ones_like(dy, dtype=torch.bool)
    keep_x = torch.ones_like(dx, dtype=torch.bool)
    for c in cuts_y:
        if 0 < c < x.shape[-2]:
            keep_y[c - 1] = False
    for c in cuts_x:
        if 0 < c < x.shape[-1]:
            keep_x[c - 1] = False
    elsewhere = torch.cat([dy[keep_y], dx[keep_x]]).mean()
    return float(torch.stack(seams).mean() / elsewhere.clamp_min(1e-12))
