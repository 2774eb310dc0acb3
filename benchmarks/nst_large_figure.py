"""The figure of docs/large.md: one large Gatys result (``nst_large.py --save DIR``) shrunk to
fit, beside two crops at full resolution (1:1), with the crops' places outlined.

    python benchmarks/nst_large_figure.py out/nst_large_4096.png docs/images/nst_large_4096.jpg

Made from scikit-image's packaged images only (astronaut as the photo, immunohistochemistry
as the style: see nst_large.py), never from ../shared/data.
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result")
    p.add_argument("output")
    p.add_argument("--panel", type=int, default=640, help="side of each panel, px")
    p.add_argument("--quality", type=int, default=88)
    args = p.parse_args()
    im = Image.open(args.result).convert("RGB")
    w, h = im.size
    n = args.panel
    # Two 1:1 crops: the face (detail of the stylised photo) and the flat background.
    boxes = [(int(0.38 * w), int(0.14 * h)), (int(0.62 * w), int(0.62 * h))]
    crops = [im.crop((x, y, x + n, y + n)) for x, y in boxes]
    whole = im.resize((n, round(n * h / w)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(whole)
    s = n / w
    for x, y in boxes:
        draw.rectangle((x * s, y * s, (x + n) * s, (y + n) * s), outline=(255, 255, 0), width=2)
    fig = Image.new("RGB", (3 * n + 2 * 8, max(whole.height, n)), (255, 255, 255))
    for k, panel in enumerate([whole, *crops]):
        fig.paste(panel, (k * (n + 8), 0))
    fig.save(args.output, quality=args.quality, optimize=True)
    print(f"wrote {args.output}: {fig.size[0]}x{fig.size[1]} px")


if __name__ == "__main__":
    main()
