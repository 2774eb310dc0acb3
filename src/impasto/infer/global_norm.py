"""Tiles that normalise with the whole image's instance-norm statistics, for networks built of
:class:`torch.nn.InstanceNorm2d` layers (the per-style :class:`~impasto.nets.transformer.
TransformerNet`).

Instance normalisation takes its statistics over the whole image; a tile run on its own takes
its own, so tiles differ in tone from the same parts of the whole image. :func:`tiled_global_norm`
(the ``tiled`` hook of :class:`~impasto.infer.runner.InferenceRunner`) first finds every norm
layer's mean and variance over the whole image, layer by layer over the tiles: pass ``i`` runs
every tile up to the ``i``-th norm, with the norms before it fixed to the statistics already
found, and sums that norm's input over the tile's core (the cores partition the image); then the
tiles run with every norm fixed and are blended (:func:`~impasto.infer.tiling.run_tiled`).
Memory stays one tile. The norms are replaced through forward hooks (the module's own output
is recomputed with the fixed statistics). Assumes the first norm runs at the input's
resolution (after the network's own padding), as in Johnson et al.'s networks. An int8 network
(:mod:`impasto.nets.int8`) has its own norms and keeps per-tile statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from impasto.infer.tiling import Tile, plan_tiles, run_tiled

__all__ = ["instance_norms", "tiled_global_norm"]


class _Reached(Exception):
    """Raised by a hook once the norm being measured has been summed."""


def instance_norms(net: nn.Module) -> list[nn.InstanceNorm2d]:
    """The :class:`~torch.nn.InstanceNorm2d` modules of ``net``."""
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


def _normalise(m: nn.InstanceNorm2d, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """``m``'s output on ``x`` with the fixed statistics ``(N, C, 1, 1)`` float32."""
    scale = torch.rsqrt(var + m.eps)
    shift = -mean * scale
    if m.weight is not None:
        w = m.weight.float()[None, :, None, None]
        scale, shift = scale * w, shift * w
    if m.bias is not None:
        shift = shift + m.bias.float()[None, :, None, None]
    return x * scale.to(x.dtype) + shift.to(x.dtype)


def _core(a: Tensor, t: Tile, full: tuple[int, int], padded: tuple[int, int]) -> Tensor:
    """The part of a norm's input ``a`` that lies in the tile's core; the last tiles' cores
    include the network's padding, as the whole image's run counts it."""
    sy, sx = max(1, padded[0] // a.shape[-2]), max(1, padded[1] // a.shape[-1])
    y0, y1 = (t.cy0 - t.y0) // sy, ((t.cy1 - t.y0) // sy if t.cy1 < full[0] else a.shape[-2])
    x0, x1 = (t.cx0 - t.x0) // sx, ((t.cx1 - t.x0) // sx if t.cx1 < full[1] else a.shape[-1])
    return a[..., y0:y1, x0:x1]


def tiled_global_norm(runner: Any, x: Tensor, tile: int) -> Tensor:
    """The ``tiled`` hook of :class:`~impasto.infer.runner.InferenceRunner` for networks with
    :class:`~torch.nn.InstanceNorm2d` layers (module doc); other networks, and int8 ones, are
    tiled as usual (each tile its own statistics)."""
    net = runner.model
    norms = instance_norms(net)
    overlap = runner.overlap_for(tile)
    if runner.int8 or not norms:
        return run_tiled(runner.run_whole, x, tile=tile, overlap=overlap, align=runner.align)
    H, W = x.shape[-2:]
    tiles = plan_tiles(H, W, tile, overlap, runner.align)
    fixed: list[tuple[Tensor, Tensor]] = []
    state: dict[str, Any] = {}

    def hook(m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        a = inputs[0]
        k = state["count"]
        state["count"] = k + 1
        if k == 0:
            state["padded"] = tuple(a.shape[-2:])
        if k < len(fixed):
            return _normalise(m, a, *fixed[k])
        core = _core(a, state["tile"], (H, W), state["padded"]).float()
        state["sums"] = (core.shape[-2] * core.shape[-1], core.sum((2, 3), keepdim=True),
                         (core * core).sum((2, 3), keepdim=True))
        raise _Reached

    handles = [m.register_forward_hook(hook) for m in norms]
    try:
        with runner.context():
            while True:  # one pass per norm, until a pass runs through every norm
                total: list[Any] | None = None
                for t in tiles:
                    state.update(count=0, tile=t, sums=None)
                    try:
                        net(runner.prepare(x[..., t.y0:t.y1, t.x0:t.x1]))
                    except _Reached:
                        pass
                    if state["sums"] is None:
                        break
                    s = state["sums"]
                    total = list(s) if total is None else [p + q for p, q in zip(total, s)]
                if total is None or state["sums"] is None:
                    break
                mean = total[1] / total[0]
                fixed.append((mean, (total[2] / total[0] - mean * mean).clamp_min(0)))

        def one(piece: Tensor) -> Tensor:
            state.update(count=0)
            with runner.context():
                y = net(runner.prepare(piece))
            return y.float().clamp(0, 1).to(x.device)

        return run_tiled(one, x, tile=tile, overlap=overlap, align=runner.align)
    finally:
        for h in handles:
            h.remove()
