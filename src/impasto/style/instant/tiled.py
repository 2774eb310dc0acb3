"""Tiles of a large image that normalise like the whole image (the instant networks).

The instant networks normalise every layer over the whole image (conditional instance norm):
a tile run on its own takes its own statistics, so tiles differ in tone and a tiled result is
not the whole one. :func:`tiled_instant` first finds each norm layer's statistics over the
whole image, tile by tile, then runs the tiles with those statistics fixed and blends them
(:func:`~impasto.infer.tiling.run_tiled`), so a tiled result equals the untiled one up to what
the tiles' borders change (their reflection padding, within the blended overlaps).

Global statistics (:func:`global_stats`), layer by layer: the statistics of norm ``i`` depend
on those of the norms before it, so pass ``i`` runs every tile up to norm ``i`` with norms
``0..i-1`` fixed and sums norm ``i``'s input over each tile's core (the cores partition the
image). Exact, and memory stays one tile, at the price of running the tiles' first layers once
per norm (``docs/instant.md`` has the figures). Statistics taken from one run on a shrunk copy
of the image are no substitute: the networks' statistics change with the scale (measured at
512 x 384: tiles with the statistics of a copy at 3/4 of the size are 29-32 dB PSNR from the
whole run, against 63-67 dB with these).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from impasto.infer.tiling import Tile, plan_tiles, run_tiled
from impasto.nets.magenta import CINTransformer, region_sums

__all__ = ["global_stats", "tiled_instant"]

Stats = dict[int, tuple[Tensor, Tensor]]


class _Reached(Exception):
    """Raised by the statistics hook once the norm being measured has been summed."""


def _transformer(net: nn.Module) -> CINTransformer:
    inner = getattr(net, "net", None)
    if not isinstance(inner, CINTransformer):
        raise TypeError(f"not an instant network: {type(net).__name__}")
    return inner


def _call(net: nn.Module, piece: Tensor, stats: Any, box: tuple[int, int, int, int] | None,
          size: tuple[int, int]) -> Tensor:
    """``net(piece)`` with norm statistics ``stats``; a masked network is told where the
    piece lies (``box`` in an image of ``size``)."""
    if hasattr(net, "shares"):  # MaskedCondition: the masks cut to the tile
        return net(piece, stats=stats, box=box, image_size=size if box else None)
    return net(piece, stats=stats)


def _as_stats(sums: tuple[Tensor, Tensor, Tensor], regions: bool) -> tuple[Tensor, Tensor]:
    """``(mean, var)`` from region sums: ``(N, K, C)``, or ``(N, C, 1, 1)`` for one region
    without masks."""
    s0, s1, s2 = sums
    mean = s1 / s0.clamp_min(1e-12)[..., None]
    var = (s2 / s0.clamp_min(1e-12)[..., None] - mean * mean).clamp_min(0)
    if regions:
        return mean, var
    return mean[:, 0, :, None, None], var[:, 0, :, None, None]


def _core_sums(a: Tensor, w: Tensor | None, t: Tile, full: tuple[int, int],
               padded: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Sums of a norm's input ``a`` ``(N, C, h, w)`` (of a tile padded to ``padded``) over the
    tile's core at ``a``'s resolution; the core of a tile at the image's bottom or right
    includes the padding, as the whole image's run counts it."""
    H, W = full
    sy, sx = padded[0] // a.shape[-2], padded[1] // a.shape[-1]
    y0, y1 = t.cy0 - t.y0, (t.cy1 - t.y0 if t.cy1 < H else padded[0])
    x0, x1 = t.cx0 - t.x0, (t.cx1 - t.x0 if t.cx1 < W else padded[1])
    core = a[..., y0 // sy:y1 // sy, x0 // sx:x1 // sx]
    if w is None:
        w = torch.ones(1, 1, 1, 1, device=a.device).expand(a.shape[0], 1, *core.shape[-2:])
    else:
        w = w[..., y0 // sy:y1 // sy, x0 // sx:x1 // sx]
    return region_sums(core, w)


def global_stats(net: nn.Module, x: Tensor, tiles: list[Tile], *,
                 prepare: Callable[[Tensor], Tensor] = lambda t: t) -> Stats:
    """Each norm layer's statistics over the whole of ``x`` ``(N, 3, H, W)``, by ``index``
    (:data:`~impasto.nets.magenta.NormStats`), computed tile by tile over ``tiles`` (see the
    module doc). ``net``: a :class:`~impasto.nets.magenta.FixedCondition` or
    :class:`~impasto.style.instant.masks.MaskedCondition`; ``prepare`` moves a tile to the
    network's device and dtype."""
    transformer = _transformer(net)
    n_norms = len(transformer.norm_layers())
    H, W = x.shape[-2:]
    fixed: Stats = {}
    for i in range(n_norms):
        total: list[Tensor] | None = None
        for t in tiles:
            piece = prepare(x[..., t.y0:t.y1, t.x0:t.x1])
            ph, pw = CINTransformer.padding(*piece.shape[-2:])
            padded = (piece.shape[-2] + ph, piece.shape[-1] + pw)
            got: list[tuple[Tensor, Tensor, Tensor]] = []

            def hook(j: int, a: Tensor, w: Tensor | None, i: int = i, t: Tile = t,
                     padded: tuple[int, int] = padded,
                     got: list = got) -> tuple[Tensor, Tensor] | None:
                if j < i:
                    return fixed[j]
                got.append(_core_sums(a, w, t, (H, W), padded))
                raise _Reached

            try:
                _call(net, piece, hook, (t.y0, t.y1, t.x0, t.x1), (H, W))
            except _Reached:
                pass
            s = got[0]
            total = list(s) if total is None else [p + q for p, q in zip(total, s)]
        assert total is not None
        regions = hasattr(net, "shares")
        fixed[i] = _as_stats((total[0], total[1], total[2]), regions)
    return fixed


def tiled_instant(runner: Any, x: Tensor, tile: int) -> Tensor:
    """The ``tiled`` hook of :class:`~impasto.infer.runner.InferenceRunner` for the instant
    networks: :func:`global_stats`, then the tiles with those statistics, blended."""
    net = runner.model
    H, W = x.shape[-2:]
    overlap = runner.overlap_for(tile)
    tiles = plan_tiles(H, W, tile, overlap, runner.align)
    with runner.context():
        stats = global_stats(net, x, tiles, prepare=runner.prepare)

    def use(j: int, a: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor]:
        return stats[j]

    def one(piece: Tensor, box: tuple[int, int, int, int]) -> Tensor:
        with runner.context():
            y = _call(net, runner.prepare(piece), use, box, (H, W))
        return y.float().clamp(0, 1).to(x.device)

    return run_tiled(one, x, tile=tile, overlap=overlap, align=runner.align, with_box=True)
