"""Tiles of a large image that normalise like the whole image (the instant networks).

The instant networks normalise every layer over the whole image (conditional instance norm):
a tile run on its own takes its own statistics, so tiles differ in tone and a tiled result is
not the whole one. :func:`tiled_instant` finds each norm layer's statistics over the whole
image tile by tile, runs the tiles with those statistics fixed and blends them
(:func:`~impasto.infer.tiling.run_tiled`), so a tiled result equals the untiled one up to
what the tiles' borders change (their reflection padding, within the blended overlaps).

The statistics of norm ``i`` depend on those of the norms before it, so they are found in
order: norm ``i``'s input is summed over every tile's core (the cores partition the image)
with the norms before it fixed. To keep that from running each tile's first layers once per
norm, the network runs in segments (the encoder, each residual block, the first decoder layer,
the rest) and each tile's output of a segment is kept until the next segment has run: these
are at 1/4 or 1/2 of the resolution, at most 4 values per pixel of the image (the image itself
is 3), so memory stays about one tile plus the image. Each segment then runs once per norm in
it, plus once. Statistics taken from one run on a shrunk copy of the image are no substitute:
the networks' statistics change with the scale (measured at 512 x 384: tiles with the
statistics of a copy at 3/4 of the size are 29-32 dB PSNR from the whole run, at 1/2 21-23 dB).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from impasto.infer.tiling import Tile, plan_tiles, run_tiled
from impasto.nets.magenta import CINTransformer, region_sums
from impasto.style.instant.masks import MaskedCondition

__all__ = ["global_stats", "tiled_instant"]

Stats = dict[int, tuple[Tensor, Tensor]]


class _Reached(Exception):
    """Raised by the statistics hook once the norm being measured has been summed."""


@dataclass
class _TileState:
    """One tile on its way through the segments: where it lies, its padded size, what the
    current segment takes (``x``), its condition and mask weights, and how its output is
    finished (blended with the photo)."""

    tile: Tile
    padded: tuple[int, int]
    x: Tensor
    cond: Tensor
    pyramid: dict | None
    finish: Callable[[Tensor], Tensor]


def _transformer(net: nn.Module) -> CINTransformer:
    inner = getattr(net, "net", None)
    if not isinstance(inner, CINTransformer):
        raise TypeError(f"not an instant network: {type(net).__name__}")
    return inner


def _start(net: nn.Module, piece: Tensor, t: Tile, size: tuple[int, int]) -> _TileState:
    """A tile's state before the first segment (:meth:`CINTransformer.begin`)."""
    transformer = _transformer(net)
    if isinstance(net, MaskedCondition):
        weights, cover = net.shares(size, (t.y0, t.y1, t.x0, t.x1))
        x, cond, pyramid = transformer.begin(piece, net.conds, weights.to(piece.device))
        h, w = piece.shape[-2:]

        def finish(y: Tensor) -> Tensor:
            return net.finish(piece, y[..., :h, :w], cover)
    else:
        x, cond, pyramid = transformer.begin(piece, net.cond.expand(piece.shape[0], -1))
        h, w = piece.shape[-2:]

        def finish(y: Tensor) -> Tensor:
            return net.finish(piece, y[..., :h, :w])
    return _TileState(t, tuple(x.shape[-2:]), x, cond, pyramid, finish)


def _segments(transformer: CINTransformer) -> list[list[nn.Module]]:
    """The stages grouped so that each group's output is at most 1/2 of the resolution (kept
    between groups): the encoder, each residual block, the first decoder layer, the rest."""
    stages = transformer.stages()
    n_enc, n_res = len(transformer.encoder), len(transformer.residuals)
    groups = [stages[:n_enc]] + [[s] for s in stages[n_enc:n_enc + n_res]]
    return groups + [stages[n_enc + n_res:n_enc + n_res + 1], stages[n_enc + n_res + 1:]]


def _norm_ids(segment: list[nn.Module]) -> list[int]:
    ids = []
    for stage in segment:
        for m in stage.modules():
            index = getattr(m, "norm_index", -1)
            if index >= 0 and getattr(m, "norm", None) is not None:
                ids.append(index)
    return sorted(ids)


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


def _as_stats(total: list[Tensor], regions: bool) -> tuple[Tensor, Tensor]:
    """``(mean, var)`` from region sums: ``(N, K, C)``, or ``(N, C, 1, 1)`` for one region
    without masks."""
    s0, s1, s2 = total
    mean = s1 / s0.clamp_min(1e-12)[..., None]
    var = (s2 / s0.clamp_min(1e-12)[..., None] - mean * mean).clamp_min(0)
    if regions:
        return mean, var
    return mean[:, 0, :, None, None], var[:, 0, :, None, None]


def _run(segment: list[nn.Module], s: _TileState, hook: Any) -> Tensor:
    x = s.x
    for stage in segment:
        x = stage(x, s.cond, s.pyramid, hook)
    return x


def _walk(net: nn.Module, x: Tensor, tiles: list[Tile],
          prepare: Callable[[Tensor], Tensor]) -> tuple[Stats, list[_TileState], list]:
    """Every norm's whole-image statistics, segment by segment (module doc); returns them,
    the tiles' states before the last segment, and that segment."""
    transformer = _transformer(net)
    H, W = x.shape[-2:]
    regions = isinstance(net, MaskedCondition)
    fixed: Stats = {}
    states = [_start(net, prepare(x[..., t.y0:t.y1, t.x0:t.x1]), t, (H, W)) for t in tiles]
    segments = _segments(transformer)
    for k, segment in enumerate(segments):
        for j in _norm_ids(segment):
            total: list[Tensor] | None = None
            for s in states:
                got: list = []

                def hook(i: int, a: Tensor, w: Tensor | None, j: int = j, s: _TileState = s,
                         got: list = got) -> tuple[Tensor, Tensor]:
                    if i != j:
                        return fixed[i]
                    got.append(_core_sums(a, w, s.tile, (H, W), s.padded))
                    raise _Reached

                try:
                    _run(segment, s, hook)
                except _Reached:
                    pass
                total = list(got[0]) if total is None else [p + q for p, q in
                                                            zip(total, got[0])]
            assert total is not None
            fixed[j] = _as_stats(total, regions)
        if k + 1 < len(segments):
            for s in states:
                s.x = _run(segment, s, lambda i, a, w: fixed[i])
    return fixed, states, segments[-1]


def global_stats(net: nn.Module, x: Tensor, tiles: list[Tile], *,
                 prepare: Callable[[Tensor], Tensor] = lambda t: t) -> Stats:
    """Each norm layer's statistics over the whole of ``x`` ``(N, 3, H, W)``, by ``index``
    (:data:`~impasto.nets.magenta.NormStats`), computed tile by tile over ``tiles`` (see the
    module doc). ``net``: a :class:`~impasto.nets.magenta.FixedCondition` or
    :class:`~impasto.style.instant.masks.MaskedCondition`; ``prepare`` moves a tile to the
    network's device and dtype."""
    return _walk(net, x, tiles, prepare)[0]


def tiled_instant(runner: Any, x: Tensor, tile: int) -> Tensor:
    """The ``tiled`` hook of :class:`~impasto.infer.runner.InferenceRunner` for the instant
    networks: the whole image's statistics, then the tiles with them, blended."""
    net = runner.model
    H, W = x.shape[-2:]
    overlap = runner.overlap_for(tile)
    tiles = plan_tiles(H, W, tile, overlap, runner.align)
    with runner.context():
        fixed, states, last = _walk(net, x, tiles, runner.prepare)
    by_box = {(s.tile.y0, s.tile.y1, s.tile.x0, s.tile.x1): s for s in states}

    def one(piece: Tensor, box: tuple[int, int, int, int]) -> Tensor:
        s = by_box.pop(box)
        with runner.context():
            y = s.finish(_run(last, s, lambda i, a, w: fixed[i]))
        return y.float().clamp(0, 1).to(x.device)

    return run_tiled(one, x, tile=tile, overlap=overlap, align=runner.align, with_box=True)
