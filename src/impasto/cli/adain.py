"""``impasto adain train``: train an AdaIN decoder (Huang & Belongie 2017) on a folder of
content photos and a folder of style images; a thin parser over
:func:`impasto.style.adain.train`. Stylise with ``impasto stylize --method adain --decoder``.

Ctrl-C stops after the current step with a checkpoint (exit status 130); ``--resume RUN``
continues exactly where it stopped, with the run's saved settings (``--content``, ``--styles``
and ``-o`` included): only the options given override them (``--steps 200000`` to train
longer), each change listed in one line; ``--vgg`` (the encoder) cannot change. Under ``torchrun`` the same command trains
data-parallel (rank 0 alone writes files and shows progress).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    add_runtime_options,
    add_subcommands,
    default_run,
    given_settings,
    int_at_least,
    parse_float,
)
from impasto.cli._run import RUN_DIR_NOTE, LossBar, resumed_config, run_training
from impasto.errors import InputError

__all__ = ["add_parser"]


def _float(text: str) -> float:
    v = parse_float(text)
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return v


def add_parser(sub: Any) -> None:
    """Add ``adain`` with its ``train`` sub-command to the ``impasto`` subparsers."""
    d = _choices.ADAIN_TRAIN
    S = argparse.SUPPRESS
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
    )
    t.add_argument("--content", default=S,
                   help="folder of content photos, e.g. MS-COCO (optional with --resume)")
    t.add_argument("--styles", default=S,
                   help="folder of style images, e.g. WikiArt (optional with --resume)")
    t.add_argument("-o", "--output", default=S,
                   help="the decoder file written at the end (optional with --resume)")
    t.add_argument("--run", "--run-dir", dest="run", default=S, metavar="RUN",
                   help="run folder for checkpoints and logs (default: OUTPUT with the suffix "
                   f".run; an existing OUTPUT-run of an earlier release is continued). "
                   f"{RUN_DIR_NOTE}")
    t.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a run folder or checkpoint exactly where it stopped (its "
                   "settings are kept; options given here override them)")
    t.add_argument("--steps", type=int_at_least(1), default=S, help=f"(default {d['steps']})")
    t.add_argument("--batch-size", type=int_at_least(1), default=S,
                   help=f"(default {d['batch_size']})")
    t.add_argument("--image-size", type=int_at_least(32), default=S,
                   help=f"side of the random crops (default {d['image_size']})")
    t.add_argument("--load-size", type=int_at_least(32), default=S,
                   help="images are resized to this shorter side before cropping (default "
                   f"{d['load_size']})")
    t.add_argument("--content-weight", type=_float, default=S,
                   help=f"(default {d['content_weight']:g})")
    t.add_argument("--style-weight", type=_float, default=S,
                   help=f"(default {d['style_weight']:g})")
    t.add_argument("--lr", type=_float, default=S, help=f"(default {d['lr']:g})")
    t.add_argument("--lr-decay", type=_float, default=S,
                   help=f"learning rate = lr / (1 + lr_decay * step) (default {d['lr_decay']:g})")
    t.add_argument("--vgg", choices=_choices.VGG19_WEIGHTS, default=S,
                   help=f"the encoder's VGG19 weight source; fixed on --resume (default "
                   f"{d['vgg']})")
    t.add_argument("--vgg-weights", default=S, help="path of the VGG19 weight file")
    add_runtime_options(t, d)
    t.set_defaults(func=_run_train)


#: The settings ``--resume`` cannot change: (option, why). The others may change, each listed
#: in one line (``--vgg-weights`` only says where the weights of ``--vgg`` lie).
FIXED_ON_RESUME = {
    "vgg": ("--vgg", "the decoder learns to invert the encoder it is trained with"),
}


def _train_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run's AdaINTrainConfig (the defaults, or the resumed run's saved settings,
    overridden by the options given) and the checkpoint to resume."""
    from impasto.style.adain import (
        CHECKPOINT_KIND,
        CHECKPOINT_PREFIX,
        LEGACY_CHECKPOINT_KIND,
        AdaINTrainConfig,
    )

    given = given_settings(args, AdaINTrainConfig)
    if "output" in given and Path(given["output"]).suffix == "":
        raise InputError(f"{given['output']}: give the decoder file a name such as decoder.pt")
    if args.resume is None:
        missing = [opt for opt, key in (("--content", "content"), ("--styles", "styles"),
                                        ("-o/--output", "output")) if key not in given]
        if missing:
            raise InputError(f"adain train: give {', '.join(missing)} (or --resume RUN)")
        given.setdefault("run", default_run(given["output"]))
        config = AdaINTrainConfig(**given)
        config.validate()
        return config, None

    def check_kind(ckpt_path: Any, kind: str, settings: dict[str, Any]) -> None:
        if kind not in (CHECKPOINT_KIND, LEGACY_CHECKPOINT_KIND):
            raise InputError(f"{ckpt_path} is a '{kind}' file, not an AdaIN training "
                             "checkpoint")

    config, resume = resumed_config(AdaINTrainConfig, given, args.resume,
                                    prefix=CHECKPOINT_PREFIX, check_kind=check_kind,
                                    fixed=FIXED_ON_RESUME)
    config.validate()
    return config, resume


def _run_train(args: argparse.Namespace) -> int:
    from impasto.style.adain import train

    config, resume = _train_config(args)
    result = run_training(train, config, resume, LossBar(args.quiet), rank0_only=True)
    if result.aborted:
        print(f"impasto: stopped at step {result.step}; continue with --resume {result.run}",
              file=sys.stderr)
        return 130
    if not args.quiet and result.output is not None:  # rank 0 writes it
        print(f"wrote {result.output}", file=sys.stderr)
    return 0
