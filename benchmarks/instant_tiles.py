"""The instant styles in tiles and with masks (issues #15, #17): how close tiled results come to
the untiled one, and what per-region styles cost and look like at the border.

    python benchmarks/instant_tiles.py tiles --size 2048 --tile 1024 [--json-lines out.jsonl]
    python benchmarks/instant_tiles.py masks --size 256

``tiles``: for a painting and preset 19, PSNR and max difference to the untiled run, and CPU
seconds, of tiles normalised with the whole image's statistics (the default,
style/instant/tiled.py) and with their own (the generic tiling), at 128 px overlaps (at most
half a tile). ``masks``: two styles on the left and right halves, three ways: one pass with each
style normalised over its own region (the default, style/instant/masks.py), one pass with the
whole image's statistics, and one run per style cut together by the masks; the mean absolute
difference of each half (16 px from the border) to each style's own result, the jump at the
border against the median jump between neighbouring columns, and CPU seconds. Images: the
shared test photos (golden_gate.jpg; starry_night.jpg and the_scream.jpg) when ``--data`` has
them, else scikit-image's astronaut, coffee and immunohistochemistry. One thread; fp32.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
from pathlib import Path

import torch

from impasto.infer.runner import InferenceRunner
from impasto.io import load_image, resize, to_tensor
from impasto.style.instant import InstantStyle
from impasto.style.instant.tiled import tiled_instant


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _images(data: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    root = data / "styletransfer"
    if (root / "content" / "golden_gate.jpg").exists():
        photo = load_image(root / "content" / "golden_gate.jpg")
        a, b = (load_image(root / "style" / n) for n in ("starry_night.jpg", "the_scream.jpg"))
        source = "golden_gate x starry_night, the_scream"
    else:
        from PIL import Image
        from skimage import data as sk

        photo, a, b = (Image.fromarray(f()) for f in (sk.astronaut, sk.coffee,
                                                      sk.immunohistochemistry))
        source = "skimage astronaut x coffee, immunohistochemistry"
    photo = photo.resize((size, size * 3 // 4))
    a, b = (to_tensor(resize(im, longest=512)) for im in (a, b))
    return to_tensor(photo), a, b, source


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-20))


def _timed(fn, *args):
    t = _cpu()
    y = fn(*args)
    return y, _cpu() - t


def tiles(args, inst: InstantStyle, x, a, _b, source: str) -> list[dict]:
    rows = []
    for kind, net in (("painting", inst.stylizer(a)), ("preset 19", inst.stylizer(preset=19))):
        kw = {"device": "cpu", "precision": "fp32", "compile": "off", "align": 4}
        whole, t_whole = _timed(InferenceRunner(net, tile=0, **kw), x)
        row = {"bench": "tiles", "kind": kind, "size": list(x.shape[-2:]), "tile": args.tile,
               "source": source, "untiled_cpu_s": round(t_whole, 2)}
        for name, hook in (("global", tiled_instant), ("own", None)):
            run = InferenceRunner(net, tile=args.tile, overlap=128, tiled=hook, **kw)
            y, t = _timed(run, x)
            row[name] = {"psnr_db": round(_psnr(y, whole), 1),
                         "max_abs": round(float((y - whole).abs().max()), 4),
                         "cpu_s": round(t, 2)}
        rows.append(row)
    return rows


def masks(args, inst: InstantStyle, x, a, b, source: str) -> list[dict]:
    import impasto.nets.magenta as magenta

    h, w = x.shape[-2:]
    m = torch.zeros(2, h, w)
    m[0, :, : w // 2] = 1
    m[1, :, w // 2:] = 1
    ya, t_a = _timed(inst, x, a)
    yb, t_b = _timed(inst, x, b)
    region, t_region = _timed(lambda: inst(x, [a, b], masks=m))
    norm = magenta.ConditionalInstanceNorm
    moments, original = norm.moments, norm.forward

    def forward(self, y, gamma, beta, stats=None, weights=None, **kw):
        # every style normalised with the whole image's statistics
        if weights is None:
            return original(self, y, gamma, beta, stats, weights, **kw)
        mean, var = moments(y)
        k = weights.shape[1]
        stats = (mean[:, None, :, 0, 0].expand(-1, k, -1),
                 var[:, None, :, 0, 0].expand(-1, k, -1))
        return original(self, y, gamma, beta, stats, weights, **kw)

    norm.forward = forward
    try:
        mixed, t_mixed = _timed(lambda: inst(x, [a, b], masks=m))
    finally:
        norm.forward = original
    cut = ya * m[0] + yb * m[1]
    left, right = slice(0, w // 2 - 16), slice(w // 2 + 16, w)

    def dist(y, ref, cols):
        return round(float((y[..., cols] - ref[..., cols]).abs().mean()), 3)

    def seam(y):
        jumps = (y[..., 1:] - y[..., :-1]).abs().mean((0, 1, 2))
        return round(float(jumps[w // 2 - 1] / jumps.median()), 2)

    rows = []
    for name, y, t in (("region statistics (default)", region, t_region),
                       ("whole-image statistics", mixed, t_mixed),
                       ("one run per style, cut", cut, t_a + t_b)):
        rows.append({"bench": "masks", "way": name, "size": [h, w], "source": source,
                     "left_to_own": dist(y, ya, left), "left_to_other": dist(y, yb, left),
                     "right_to_own": dist(y, yb, right), "right_to_other": dist(y, ya, right),
                     "border_jump": seam(y), "cpu_s": round(t, 3)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("tiles", "masks"))
    p.add_argument("--size", type=int, default=512, help="the photo's width, px (height 3/4)")
    p.add_argument("--tile", type=int, default=256, help="tiles: tile side, px")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--json-lines", default=None, help="append one JSON object per row")
    p.add_argument("--quick", action="store_true", help="a 256 px photo, 128 px tiles")
    args = p.parse_args()
    if args.quick:
        args.size, args.tile = 256, 128
    torch.set_num_threads(1)
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    x, a, b, source = _images(args.data, args.size)
    rows = (tiles if args.what == "tiles" else masks)(args, inst, x, a, b, source)
    for row in rows:
        print(json.dumps(row))
        if args.json_lines:
            with open(args.json_lines, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
