"""``impasto demo`` (and ``make demo``, ``python -m impasto.demo``): style transfer on photos
that ship inside scikit-image, fully offline.

First the instant path (seconds; :class:`~impasto.style.instant.InstantStyle`): the 26 built-in
styles on scikit-image's ``chelsea`` (CC0) photo (``presets.png``), its ``astronaut`` (NASA,
public domain) styled by its ``immunohistochemistry`` image (a texture-rich stained-tissue
micrograph) as the painting, and the cat in preset 19 (starry-blue). Then the astronaut refined
by Gatys optimisation with the micrograph as the style (about a minute). Writes each result and
a side-by-side figure to ``--out`` (default ``demo_out/``).

    impasto demo --out demo_out [--size 384] [--quiet]

Needs the ``demo`` extra (scikit-image): without it, one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image

from impasto.errors import InputError

#: The defaults of :func:`run` (and of the command's options).
DEFAULT_OUT = "demo_out"
DEFAULT_SIZE = 256
DEFAULT_STYLE_WEIGHT = 1000.0

MISSING_EXTRA = "impasto demo needs scikit-image, its photos: pip install 'impasto[demo]'"


def check_extra() -> None:
    """:class:`InputError` (one line saying what to install) unless scikit-image imports."""
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        raise InputError(MISSING_EXTRA) from None


def _sample(name: str) -> Image.Image:
    from skimage import data

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


def run(out: str | Path = DEFAULT_OUT, *, size: int = DEFAULT_SIZE,
        style_weight: float = DEFAULT_STYLE_WEIGHT, quiet: bool = False) -> Path:
    """Stylise the packaged photos into ``out`` (the preset sheet, the results and
    ``figure.png``, whose path is returned); prints each file written. :class:`InputError` before any work when scikit-image
    is missing."""
    check_extra()
    out = Path(out)

    import impasto
    from impasto.io import save_image
    from impasto.style import GatysConfig, GatysStyleTransfer
    from impasto.style.instant import InstantStyle, preset_sheet

    style = _sample("immunohistochemistry")
    astronaut, chelsea = _sample("astronaut"), _sample("chelsea")
    source = {"style": "skimage.data.immunohistochemistry"}

    def wrote(path: Path, t: float) -> None:
        print(f"wrote {path} ({time.perf_counter() - t:.1f} s)", flush=True)

    # -- instant: the built-in styles, any painting as a style, one preset (seconds)
    t = time.perf_counter()
    inst = InstantStyle.from_file()
    sheet = preset_sheet(inst, chelsea, size=size)
    wrote(save_image(sheet, out / "presets.png",
                     metadata={"content": "skimage.data.chelsea", "method": "instant",
                               "preset": "all"}), t)
    t = time.perf_counter()
    painted = inst(astronaut, style, size=size)
    wrote(save_image(painted, out / "astronaut_instant.png",
                     metadata={"content": "skimage.data.astronaut", "method": "instant",
                               **source}), t)
    t = time.perf_counter()
    starry = inst(chelsea, preset="starry-blue", size=size)
    wrote(save_image(starry, out / "chelsea_preset19.png",
                     metadata={"content": "skimage.data.chelsea", "method": "instant",
                               "preset": "19 starry-blue"}), t)

    # -- Gatys: the astronaut refined by optimisation from the instant start (full size only,
    # 100 iterations: about 100 s on 2 AVX2 cores in fp32, where the photo's three-scale
    # default took 164 s and the whole demo 2 min 52 s)
    transfer = GatysStyleTransfer(GatysConfig(size=size, style_weight=style_weight, seed=0,
                                              init="instant"))
    t = time.perf_counter()
    result = impasto.stylize(astronaut, style, transfer=transfer, progress=not quiet)
    wrote(save_image(result, out / "astronaut.png",
                     metadata={"content": "skimage.data.astronaut", "method": "gatys", **source,
                               "settings": str(transfer.config.to_dict())}), t)
    rows = {"astronaut": [astronaut, style, painted, result], "chelsea": [chelsea, starry]}
    fig = save_image(_figure(list(rows.values())), out / "figure.png")
    print(f"wrote {fig}")
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m impasto.demo``: the same as ``impasto demo`` (one line and exit status 2
    for a missing extra or weight file)."""
    ap = argparse.ArgumentParser(prog="python -m impasto.demo",
                                 description="impasto demo on packaged photos")
    ap.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="longest side of the results")
    ap.add_argument("--style-weight", type=float, default=DEFAULT_STYLE_WEIGHT,
                    help="stronger than the default 100: the micrograph is a pale texture")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        run(args.out, size=args.size, style_weight=args.style_weight, quiet=args.quiet)
    except InputError as e:
        print(f"impasto: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
