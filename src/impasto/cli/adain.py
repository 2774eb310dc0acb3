"""``impasto adain train``: train an AdaIN decoder (Huang & Belongie 2017) on a folder of
content photos and a folder of style images; a thin parser over
:func:`impasto.style.adain.train`. Stylise with ``impasto stylize --method adain --decoder``.

Ctrl-C stops after the current step with a checkpoint (exit status 130); ``--resume RUN``
continues exactly where it stopped. Under ``torchrun`` the same command trains data-parallel
(rank 0 alone writes files and shows progress).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from impasto.cli._args import add_subcommands, int_at_least, parse_float
from impasto.cli._run import LossBar, run_training
from impasto.errors import InputError

__all__ = ["add_parser"]


def _float(text: str) -> float:
    v = parse_float(text)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return v


def add_parser(sub: Any) -> None:
    """Add ``adain`` with its ``train`` sub-command to the ``impasto`` subparsers."""
    from impasto.device import DEVICES, PRECISIONS
    from impasto.nets.vgg import VGG19_WEIGHTS
    from impasto.style.adain import AdaINTrainConfig

    d = AdaINTrainConfig(content="", styles="")
    p = sub.add_parser(
        "adain",
        help="train AdaIN decoders for arbitrary style transfer (Huang & Belongie 2017)",
        description="Arbitrary style transfer with adaptive instance normalisation.",
    )
    asub = add_subcommands(p, "adain_command")
    t = asub.add_parser(
        "train",
        help="train a decoder on a content folder and a style folder",
        description="Train the AdaIN decoder: VGG19 to relu4_1 (frozen) encodes content and "
        "style crops, AdaIN mixes them, the decoder learns to paint the result (content loss "
        "against the AdaIN target, mean/std style loss on relu1_1..relu4_1).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument("--content", required=True, help="folder of content photos (e.g. MS-COCO)")
    t.add_argument("--styles", required=True, help="folder of style images (e.g. WikiArt)")
    t.add_argument("-o", "--output", required=True, help="the decoder file written at the end")
    t.add_argument("--run", default=None,
                   help="run folder for checkpoints and logs (default: OUTPUT without its "
                   "suffix + '-run')")
    t.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a run folder or checkpoint where it stopped")
    t.add_argument("--steps", type=int_at_least(1), default=d.steps)
    t.add_argument("--batch-size", type=int_at_least(1), default=d.batch_size)
    t.add_argument("--image-size", type=int_at_least(32), default=d.image_size,
                   help="side of the random crops")
    t.add_argument("--load-size", type=int_at_least(32), default=d.load_size,
                   help="images are resized to this shorter side before cropping")
    t.add_argument("--content-weight", type=_float, default=d.content_weight)
    t.add_argument("--style-weight", type=_float, default=d.style_weight)
    t.add_argument("--lr", type=_float, default=d.lr)
    t.add_argument("--lr-decay", type=_float, default=d.lr_decay,
                   help="learning rate = lr / (1 + lr_decay * step)")
    t.add_argument("--seed", type=int_at_least(0), default=d.seed)
    t.add_argument("--device", choices=DEVICES, default=d.device)
    t.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    t.add_argument("--vgg", choices=tuple(VGG19_WEIGHTS), default=d.vgg)
    t.add_argument("--vgg-weights", default=None, help="path of the VGG19 weight file")
    t.add_argument("--workers", type=int_at_least(0), default=d.num_workers,
                   help="data loading processes")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms: bit-identical reruns and resumes (data "
                   "loaded in the main process)")
    t.add_argument("--log-every", type=int_at_least(0), default=d.log_every)
    t.add_argument("--ckpt-every", type=int_at_least(0), default=d.ckpt_every)
    t.add_argument("--no-tensorboard", action="store_true")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from impasto.style.adain import AdaINTrainConfig, train

    out = Path(args.output)
    if out.suffix == "":
        raise InputError(f"{out}: give the decoder file a name such as decoder.pt")
    run = args.run or str(out.with_name(f"{out.stem}-run"))
    config = AdaINTrainConfig(
        content=args.content, styles=args.styles, run=run, output=str(out), steps=args.steps,
        batch_size=args.batch_size, image_size=args.image_size, load_size=args.load_size,
        content_weight=args.content_weight, style_weight=args.style_weight, lr=args.lr,
        lr_decay=args.lr_decay, vgg=args.vgg, vgg_weights=args.vgg_weights, seed=args.seed,
        device=args.device, precision=args.precision, deterministic=args.deterministic,
        num_workers=args.workers,
        log_every=args.log_every, ckpt_every=args.ckpt_every,
        tensorboard=not args.no_tensorboard,
    )
    result = run_training(train, config, args.resume, LossBar(args.quiet), rank0_only=True)
    if result.aborted:
        print(f"impasto: stopped at step {result.step}; continue with --resume {result.run}",
              file=sys.stderr)
        return 130
    if not args.quiet and result.output is not None:  # rank 0 writes it
        print(f"wrote {result.output}", file=sys.stderr)
    return 0
