"""``impasto stylize`` with a trained network: ``--model FILE`` (a per-style network),
``--method adain --decoder FILE -s STYLE ...`` (AdaIN) or an instant style (``--method instant``,
``--preset``), on an image, a folder or a video, or ``--export onnx|torchscript``; and which
options belong to which method (:data:`METHOD_OPTIONS`, for the Gatys path too).

Every option and input is checked before the network runs: a mistake is one line on stderr
and exit status 2, with no output left behind.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from impasto.cli._args import MethodOptions, check_output_dir, refuse_foreign
from impasto.cli._masks import network_keep_mask, note_mask_size
from impasto.errors import InputError

__all__ = ["METHOD_OPTIONS", "run_network"]


#: The options of ``impasto stylize`` that apply to some methods only (each defaults to
#: ``argparse.SUPPRESS``, so one in the namespace was given; any other method refuses it). The
#: options not listed apply to every method, or select one (``--model``, ``--method``,
#: ``--decoder``), or are refused with their own message (``-s`` for a per-style network).
METHOD_OPTIONS = MethodOptions.of(
    "stylize",
    {"gatys": "Gatys (the default method)", "fast": "per-style networks (--model)",
     "adain": "AdaIN (--method adain)",
     "instant": "instant styles (--method instant, --preset)"},
    (("gatys",), {
        "style_scale": "--style-scale", "scales": "--scales", "iterations": "--iterations",
        "content_weight": "--content-weight", "style_weight": "--style-weight",
        "tv_weight": "--tv-weight", "content_layers": "--content-layers",
        "style_layers": "--style-layers", "content_layer_weights": "--content-layer-weights",
        "style_layer_weights": "--style-layer-weights", "init": "--init",
        "optimizer": "--optimizer", "lr": "--lr", "lbfgs_history": "--lbfgs-history",
        "pooling": "--pooling", "seed": "--seed", "save_every": "--save-every",
        "weights": "--vgg", "temporal_weight": "--temporal-weight",
        "frame_iterations": "--frame-iterations", "tileable": "--tileable",
        "preview_repeat": "--preview-repeat"}),
    (("gatys", "adain", "instant"), {"style_blend_weights": "--style-blend-weights"}),
    (("gatys", "adain", "instant"), {"mask": "--mask"}),
    (("gatys", "adain"), {"vgg_weights": "--vgg-weights"}),
    (("instant",), {"strength": "--strength"}),
    (("adain",), {"alpha": "--alpha", "style_size": "--style-size"}),
    (("fast", "adain", "instant"), {"batch_size": "--batch-size", "temporal": "--temporal"}),
    (("fast", "adain"), {"compile": "--compile"}),
    (("fast", "adain", "instant"), {"export": "--export"}),
)

#: The values the network path reads for the method-specific options not given.
_NETWORK_DEFAULTS = {"alpha": 1.0, "mask": None, "style_size": 512, "batch_size": 4,
                     "tile": None, "compile": "auto", "export": None, "temporal": None,
                     "style_blend_weights": None, "vgg_weights": None, "strength": 1.0,
                     "preset": None, "keep_mask": None}


def _method(args: argparse.Namespace) -> str:
    if args.method == "instant" or args.preset is not None:
        if args.model is not None or args.decoder is not None:
            raise InputError("the instant styles (--method instant, --preset) take no --model "
                             "or --decoder")
        if args.method not in (None, "instant"):
            raise InputError(f"--preset is an instant style; it takes no --method {args.method}")
        return "instant"
    if args.model is not None:
        if args.method is not None or args.decoder is not None:
            raise InputError("--model is a per-style network: it takes no --method or --decoder")
        return "fast"
    if args.method == "gatys":
        raise InputError("--decoder needs --method adain")
    if args.decoder is None:
        raise InputError("--method adain needs --decoder FILE (a trained AdaIN decoder)")
    return "adain"


def _network_method(args: argparse.Namespace) -> str:
    """``"fast"`` or ``"adain"``, after refusing the options of other methods; fills in the
    network options not given."""
    method = _method(args)
    if method == "fast" and args.style:
        raise InputError("a per-style network (--model) has its style built in; it takes no "
                         "-s/--style")
    refuse_foreign(args, method, METHOD_OPTIONS)
    for dest, value in _NETWORK_DEFAULTS.items():
        if not hasattr(args, dest):
            setattr(args, dest, value)
    return method


def _default_output(kind: str, src: Path | None) -> Path:
    if kind == "folder" and src is not None:
        return src.with_name(f"{src.name}-stylized")
    if kind == "video" and src is not None:
        return Path(f"{src.stem}-stylized.mp4")
    return Path("out.png")


def run_network(args: argparse.Namespace) -> int:  # noqa: C901  (checks, in order)
    """Runs ``impasto stylize`` with ``--model`` or ``--method adain``; returns 0."""
    from impasto.io import DEFAULT_MAX_PIXELS, check_output_path, load_image
    from impasto.io.video import OUTPUT_CODECS, probe_video
    from impasto.style.apply import apply_folder, apply_image, apply_video, input_kind

    method = _network_method(args)
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    if args.size is not None and args.size <= 0:
        raise InputError(f"--size must be positive, not {args.size}")
    styles = list(args.style or [])
    weights = args.style_blend_weights
    if method == "fast":
        if args.preserve_color == "histogram":
            raise InputError("--preserve-color histogram needs the style image (AdaIN); a "
                             "per-style network supports 'luminance'")
    elif method == "adain":
        if not styles:
            raise InputError("--method adain needs one or more style images (-s/--style)")
        # The blend weights and masks are checked by AdaIN (style/adain.py) before it runs.
        if args.mask is not None and len(args.mask) != len(styles):
            raise InputError(f"{len(args.mask)} masks for {len(styles)} style image(s); give "
                             "one --mask per style")
    if args.export and args.preserve_color != "none":
        raise InputError("--export writes the network alone; --preserve-color cannot be "
                         "exported")

    # -- input and output, checked before anything is loaded
    src: Path | None = None
    kind = "export"
    if args.export:
        if args.output is None:
            raise InputError(f"--export {args.export} needs -o FILE")
        from impasto.infer.export import _check_suffix

        out = Path(args.output)
        _check_suffix(out, args.export)
        check_output_dir(out)
    else:
        if args.content is None:
            raise InputError("stylize: the input (an image, a folder or a video) is required")
        src = Path(args.content)
        if not src.exists():
            raise InputError(f"{src}: no such file or folder")
        kind = input_kind(src)
        if args.temporal is not None and kind != "video":
            raise InputError(f"--temporal is for a video input; {src} is "
                             f"{'a folder' if kind == 'folder' else 'an image'}")
        out = Path(args.output) if args.output else _default_output(kind, src)
        if kind == "image":
            check_output_path(out)
        elif kind == "folder":
            if out.exists() and not out.is_dir():
                raise InputError(f"{out}: is a file; a folder of images needs an output folder")
            check_output_dir(out / "x")
        else:
            if out.suffix.lower() not in OUTPUT_CODECS:
                raise InputError(f"{out}: a video needs a video output "
                                 f"({', '.join(OUTPUT_CODECS)})")
            check_output_dir(out)
            probe_video(src)  # a video that cannot be decoded fails here
    if args.keep_mask is not None and kind != "image":
        network_keep_mask(args, kind, None, max_pixels)  # refused before the network loads

    # -- the network and its inputs
    style_images = [load_image(s, max_pixels=max_pixels) for s in styles]
    if kind == "image":
        photo = load_image(src, max_pixels=max_pixels)  # a bad image fails before the network
        if args.mask and not args.export and not args.quiet:
            note_mask_size(args.mask[0], photo, args.size, max_pixels)
        keep = network_keep_mask(args, kind, photo, max_pixels)
    if method == "fast":
        from impasto.style.fast import FastStyle

        model = FastStyle.load(args.model, device=args.device)
        net = model.net
        label = {"model": Path(args.model).name, "style": model.style_name}
        transform = model.transform(precision=args.precision, tile=args.tile,
                                    compile=args.compile, preserve_color=args.preserve_color)
        precision = transform.precision  # type: ignore[union-attr]
    elif method == "instant":
        from impasto.cli.instant import instant_network, instant_transform

        if args.export:
            net = instant_network(args, style_images)
        else:
            transform, label, precision = instant_transform(args, style_images)
    else:
        from impasto.io import resize, to_tensor
        from impasto.style.adain import AdaIN, _load_masks
        from impasto.style.masks import check_masks

        # one mask per style, none black everywhere: as for Gatys and the instant styles
        masks = check_masks(_load_masks(args.mask, max_pixels), len(styles)) \
            if args.mask else None
        ada = AdaIN.load(args.decoder, vgg_weights=args.vgg_weights, device=args.device,
                         precision=args.precision)
        style_ts = [to_tensor(resize(im, longest=args.style_size)
                              if max(im.size) > args.style_size else im) for im in style_images]
        label = {"decoder": Path(args.decoder).name,
                 "style": json.dumps([Path(s).name for s in styles])}
        net = None
        if args.export:
            net = ada.stylizer(style_ts, alpha=args.alpha, weights=weights, masks=masks,
                               precision="fp32")
            transform = None
        else:
            transform = ada.transform(
                style_ts, alpha=args.alpha, weights=weights, masks=masks,
                preserve_color=args.preserve_color, precision=args.precision,
                tile=args.tile, compile=args.compile,
            )
            precision = transform.precision  # type: ignore[attr-defined]

    if args.export:
        from impasto.infer.export import export_model

        report = export_model(net, out, args.export)
        print(report.summary())
        return 0

    from impasto.style.pipeline import network_metadata

    metadata = network_metadata(
        method, src.name if src else "", precision=precision,
        alpha=args.alpha if method == "adain" else None, preserve_color=args.preserve_color,
        size=args.size, style_blend_weights=weights,
        mask=[Path(m).name for m in args.mask] if args.mask else None,
        strength=args.strength if method == "instant" else None, **label)
    progress = not args.quiet
    if kind == "image":
        if keep is not None:  # the photo composited back by the keep mask
            transform = functools.partial(_kept, transform, keep)
            metadata["keep_mask"] = Path(args.keep_mask).name
        apply_image(transform, src, out, size=args.size, max_pixels=max_pixels,
                    metadata=metadata)
    elif kind == "folder":
        written = apply_folder(transform, src, out, batch_size=args.batch_size, size=args.size,
                               max_pixels=max_pixels, metadata=metadata, progress=progress)
        if not args.quiet:
            print(f"wrote {len(written)} image(s) to {out}", file=sys.stderr)
            return 0
    else:
        apply_video(transform, src, out, batch_size=args.batch_size, size=args.size,
                    progress=progress, temporal=args.temporal)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _kept(transform: Any, keep: Any, x: Any) -> Any:
    from impasto.style.masks import keep_photo

    return keep_photo(x, transform(x), keep)
