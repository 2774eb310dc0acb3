"""Run an image-to-image network over a large image in overlapping tiles, with bounded memory.

The image is cut into a grid of tiles of at most ``tile`` x ``tile`` pixels that overlap their
neighbours by about ``overlap`` pixels. Each tile is run through the network on its own and
the outputs are blended with weights that, across each overlap, are zero over the outer
quarter (the pixels nearest the tile's edge, which see the tile's padding instead of the
neighbouring image), ramp linearly over the middle half and are one beyond; the weights of
the tiles covering a pixel sum to one. So for a network whose receptive field reaches less
than ``overlap / 4`` pixels, the tiled output equals the untiled one up to rounding; for
networks with image-wide operations (instance normalisation) each tile normalises with its
own statistics, and the blending hides the seams.

Memory: the network sees one tile at a time; besides it only the input and a float32 output
of the whole image are held. :func:`bytes_per_pixel` estimates a network's activation memory
per pixel from a small probe run, :func:`auto_tile` picks a tile that fits a memory budget
(:func:`default_memory_budget`: a quarter of the available RAM, at most 4 GiB, or
``$IMPASTO_MEMORY_BUDGET`` in bytes, with an optional K/M/G suffix).
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from impasto.errors import InputError

__all__ = [
    "Tile",
    "auto_tile",
    "bytes_per_pixel",
    "default_memory_budget",
    "plan_tiles",
    "run_tiled",
]

DEFAULT_OVERLAP = 64
_MIN_TILE = 32


@dataclass(frozen=True)
class Tile:
    """One tile: the box the network runs on, ``[y0, y1) x [x0, x1)``, and its core
    ``[cy0, cy1) x [cx0, cx1)``: the cores of all tiles partition the image (each boundary in
    the middle of an overlap)."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def _axis(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` of the tiles along one axis; starts are multiples of ``align``."""
    if length <= tile:
        return [(0, length)]
    step = max(align, tile - overlap - align)
    n = math.ceil((length - tile) / step) + 1
    last = (length - tile) // align * align
    starts = sorted({min(last, i * step // align * align) for i in range(n - 1)} | {last})
    spans = [(s, min(s + tile, length)) for s in starts]
    spans[-1] = (last, length)  # up to align - 1 pixels longer than tile
    return spans


def _cores(spans: list[tuple[int, int]], align: int) -> list[tuple[int, int]]:
    cuts = [0]
    for (_, end), (start, _) in zip(spans, spans[1:]):
        cuts.append(max(cuts[-1], (start + end) // 2 // align * align))
    cuts.append(spans[-1][1])
    return list(zip(cuts, cuts[1:]))


def _check(tile: int, overlap: int) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < _MIN_TILE:
        raise InputError(f"tile size must be a whole number of at least {_MIN_TILE} pixels, "
                         f"not {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= tile // 2:
        raise InputError(f"tile overlap must lie in [0, tile/2], not {overlap!r} (tile {tile})")


def plan_tiles(height: int, width: int, tile: int, overlap: int = DEFAULT_OVERLAP,
               align: int = 8) -> list[Tile]:
    """The tiles covering an image of ``height`` x ``width`` (row by row); see :class:`Tile`.
    Tile origins are multiples of ``align`` (a network's total stride), so a tile's pixels
    meet the same strided grid as in the whole image."""
    _check(tile, overlap)
    rows, cols = _axis(height, tile, overlap, align), _axis(width, tile, overlap, align)
    rcores, ccores = _cores(rows, align), _cores(cols, align)
    return [
        Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1)
        for (y0, y1), (cy0, cy1) in zip(rows, rcores)
        for (x0, x1), (cx0, cx1) in zip(cols, ccores)
    ]


def _ramp(spans: list[tuple[int, int]], length: int) -> list[Tensor]:
    """Per tile along one axis, weights over its span that sum to one at every position."""
    raw = []
    for i, (s, e) in enumerate(spans):
        pos = torch.arange(s, e, dtype=torch.float64)
        w = torch.ones(e - s, dtype=torch.float64)
        if i > 0:  # overlap with the previous tile at the low end
            o = spans[i - 1][1] - s
            if o > 0:
                w *= ((pos - s - o / 4 + 0.5) / max(o / 2, 1.0)).clamp(0, 1)
        if i + 1 < len(spans):
            o = e - spans[i + 1][0]
            if o > 0:
                w *= ((e - 1 - pos - o / 4 + 0.5) / max(o / 2, 1.0)).clamp(0, 1)
        raw.append(w)
    total = torch.zeros(length, dtype=torch.float64)
    for (s, e), w in zip(spans, raw):
        total[s:e] += w
    if bool((total <= 0).any()):  # cannot happen for overlap < tile/2; keep it safe
        total = total.clamp_min(1e-12)
    return [(w / total[s:e]).float() for (s, e), w in zip(spans, raw)]


def run_tiled(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    align: int = 8,
    progress: Callable[[int, int], None] | None = None,
    with_box: bool = False,
) -> Tensor:
    """``fn`` over ``x`` ``(N, C, H, W)`` tile by tile; returns float32 ``(N, C', H, W)`` on
    ``x``'s device, blended as the module doc says. ``fn`` maps ``(N, C, h, w)`` to
    ``(N, C', h, w)`` (it may move tiles to another device; its outputs are moved back).
    ``progress(done, total)`` is called after each tile. With ``with_box``, ``fn`` is called
    as ``fn(tile, (y0, y1, x0, x1))`` (where the tile lies in the image)."""
    _check(tile, overlap)
    n, _, H, W = x.shape
    rows = _axis(H, tile, overlap, align)
    cols = _axis(W, tile, overlap, align)
    wr, wc = _ramp(rows, H), _ramp(cols, W)
    out: Tensor | None = None
    total, done = len(rows) * len(cols), 0
    for (y0, y1), wy in zip(rows, wr):
        for (x0, x1), wx in zip(cols, wc):
            piece = x[..., y0:y1, x0:x1]
            y = fn(piece, (y0, y1, x0, x1)) if with_box else fn(piece)
            if y.shape[-2:] != (y1 - y0, x1 - x0):
                raise ValueError(
                    f"run_tiled: the network changed the tile size {(y1 - y0, x1 - x0)} to "
                    f"{tuple(y.shape[-2:])}; only same-size image-to-image networks can be tiled"
                )
            if out is None:
                out = torch.zeros((n, y.shape[1], H, W), dtype=torch.float32, device=x.device)
            weight = (wy[:, None] * wx[None, :]).to(x.device)
            out[..., y0:y1, x0:x1] += y.to(device=x.device, dtype=torch.float32) * weight
            done += 1
            if progress is not None:
                progress(done, total)
    assert out is not None
    return out


# --------------------------------------------------------------------------------------------
# memory


_BPP_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def bytes_per_pixel(net: nn.Module, *, channels: int = 3, probe: int = 64,
                    dtype: torch.dtype = torch.float32) -> float:
    """Estimated peak activation memory of ``net`` per input pixel (bytes), from one probe run
    at ``probe`` x ``probe``: three times the largest activation any layer produces (its input,
    its output and one more held at the same time, e.g. a residual) plus input and output,
    at the element size of ``dtype``. Cached per network, or per ``net.memory_owner`` when it
    has one (a wrapper built per call around a shared network, whose activations it does not
    change: the instant styles' :class:`~impasto.nets.magenta.FixedCondition`)."""
    key = (channels, probe, dtype)
    owner = getattr(net, "memory_owner", net)
    cache = _BPP_CACHE.setdefault(owner, {}) if _weakable(owner) else {}
    if key in cache:
        return cache[key]
    largest = [0]

    def hook(_m, _inp, out):
        if isinstance(out, Tensor):
            largest[0] = max(largest[0], out.numel())
        elif isinstance(out, dict):
            for v in out.values():
                if isinstance(v, Tensor):
                    largest[0] = max(largest[0], v.numel())

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        p = next(iter(net.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        with torch.inference_mode():
            y = net(torch.rand(1, channels, probe, probe, device=device))
    finally:
        for h in handles:
            h.remove()
    elem = torch.finfo(dtype).bits // 8
    out_numel = y.numel() if isinstance(y, Tensor) else 0
    value = (3 * largest[0] + channels * probe * probe + out_numel) * elem / (probe * probe)
    cache[key] = value
    return value


def _weakable(net: nn.Module) -> bool:
    try:
        weakref.ref(net)
    except TypeError:
        return False
    return True


def _parse_bytes(text: str) -> int:
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMGT" and t[-1:] else t
    try:
        value = float(num) * mult
    except ValueError:
        raise InputError(f"IMPASTO_MEMORY_BUDGET: not a size such as 2G: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"IMPASTO_MEMORY_BUDGET must be positive, not {text!r}")
    return int(value)


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_memory_budget() -> int:
    """Bytes the network's activations may take: ``$IMPASTO_MEMORY_BUDGET``, else a quarter of
    the available RAM capped at 4 GiB (2 GiB when it cannot be read)."""
    env = os.environ.get("IMPASTO_MEMORY_BUDGET")
    if env:
        return _parse_bytes(env)
    ram = _available_ram()
    return min(ram // 4, 4 << 30) if ram else 2 << 30


def auto_tile(
    net: nn.Module,
    height: int,
    width: int,
    *,
    budget: int | None = None,
    dtype: torch.dtype = torch.float32,
    align: int = 8,
    overlap: int = DEFAULT_OVERLAP,
) -> int | None:
    """A tile side for an image of ``height`` x ``width`` whose activations would exceed
    ``budget`` bytes (default :func:`default_memory_budget`) run whole; None when it fits."""
    budget = default_memory_budget() if budget is None else int(budget)
    bpp = bytes_per_pixel(net, dtype=dtype)
    if height * width * bpp <= budget:
        return None
    side = int(math.sqrt(budget / bpp)) // align * align
    return max(side, 4 * overlap, _MIN_TILE)
