"""``make demo``: style transfer on photos that ship inside scikit-image, fully offline.

Stylises scikit-image's ``astronaut`` (NASA, public domain) and ``chelsea`` (CC0) photos with
its ``immunohistochemistry`` image as the style: a texture-rich stained-tissue micrograph.
Writes each result and a side-by-side figure to ``--out`` (default ``demo_out/``).

    python -m impasto.demo --out demo_out [--size 384] [--quiet]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image


def _sample(name: str) -> Image.Image:
    try:
        from skimage import data
    except ImportError:
        sys.exit("impasto demo: needs scikit-image (pip install 'impasto[demo]')")
    return Image.fromarray(getattr(data, name)())


def _figure(rows: list[list[Image.Image]], height: int = 256) -> Image.Image:
    """A grid with one row per (content, style, result...)."""
    scaled = [[im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)
               for im in row] for row in rows]
    width = max(sum(im.width for im in row) + 8 * (len(row) - 1) for row in scaled)
    fig = Image.new("RGB", (width, len(rows) * height + 8 * (len(rows) - 1)), "white")
    y = 0
    for row in scaled:
        x = 0
        for im in row:
            fig.paste(im, (x, y))
            x += im.width + 8
        y += height + 8
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="impasto demo on packaged photos")
    ap.add_argument("--out", type=Path, default=Path("demo_out"))
    ap.add_argument("--size", type=int, default=256, help="longest side of the results")
    ap.add_argument("--style-weight", type=float, default=1000.0,
                    help="stronger than the default 100: the micrograph is a pale texture")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import impasto
    from impasto.io import save_image
    from impasto.style import GatysConfig, GatysStyleTransfer

    style = _sample("immunohistochemistry")
    jobs = [("astronaut", "none"), ("chelsea", "none"), ("chelsea", "luminance")]
    transfers: dict[str, GatysStyleTransfer] = {}
    rows: dict[str, list[Image.Image]] = {}
    for name, colour in jobs:
        content = _sample(name)
        if colour not in transfers:
            transfers[colour] = GatysStyleTransfer(
                GatysConfig(size=args.size, preserve_color=colour, style_weight=args.style_weight,
                            seed=0)
            )
        t = time.perf_counter()
        out = impasto.stylize(content, style, transfer=transfers[colour], progress=not args.quiet)
        suffix = "" if colour == "none" else f"_{colour}"
        path = save_image(
            out, args.out / f"{name}{suffix}.png",
            metadata={"content": f"skimage.data.{name}",
                      "style": "skimage.data.immunohistochemistry",
                      "settings": str(transfers[colour].config.to_dict())},
        )
        print(f"wrote {path} ({time.perf_counter() - t:.0f} s)", flush=True)
        rows.setdefault(name, [content, style]).append(out)
    fig = save_image(_figure(list(rows.values())), args.out / "figure.png")
    print(f"wrote {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
