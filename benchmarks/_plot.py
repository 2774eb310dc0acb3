"""A small line-plot helper for benchmarks (Pillow only; matplotlib is not a dependency)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75)]


def line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    size: tuple[int, int] = (640, 360),
) -> Path:
    """Draws ``{name: (xs, ys)}`` as lines on one pair of axes and saves a PNG."""
    w, h = size
    left, right, top, bottom = 60, 150, 28, 36
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
    if not xs_all or not ys_all:
        img.save(path)
        return Path(path)
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        _, yp = px(x0, yv)
        d.line([left - 4, yp, left, yp], fill=(0, 0, 0))
        d.text((4, yp - 6), f"{yv:.3g}", fill=(0, 0, 0))
        xv = x0 + (x1 - x0) * k / 4
        xp, _ = px(xv, y0)
        d.line([xp, h - bottom, xp, h - bottom + 4], fill=(0, 0, 0))
        d.text((xp - 12, h - bottom + 6), f"{xv:.4g}", fill=(0, 0, 0))
    for i, (name, (xs, ys)) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        pts = [px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        d.line([w - right + 10, top + 10 + 16 * i, w - right + 30, top + 10 + 16 * i], fill=c,
               width=3)
        d.text((w - right + 34, top + 4 + 16 * i), name, fill=(0, 0, 0))
    d.text((left, 8), title, fill=(0, 0, 0))
    d.text(((w - right) // 2, h - 14), xlabel, fill=(0, 0, 0))
    img.save(path)
    return Path(path)
