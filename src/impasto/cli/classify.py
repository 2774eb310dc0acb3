"""``impasto classify train|eval|predict``: thin argparse handlers over
:func:`impasto.classify.train`, :func:`~impasto.classify.evaluate` and
:func:`~impasto.classify.predict_topk`, registered by :mod:`impasto.cli`.

Every option is checked before any work: a bad value, file or checkpoint is one line on stderr
and exit status 2. ``classify train`` under ``torchrun --nproc_per_node=N`` trains on N
processes; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    MethodOptions,
    add_runtime_options,
    add_subcommands,
    finite_number,
    given_settings,
    nonneg_int,
    positive_int,
    positive_number,
    refuse_foreign,
)
from impasto.cli._run import (
    ProgressBar,
    add_run_options,
    is_main_rank,
    resumed_config,
    run_folder,
    run_training,
)
from impasto.errors import InputError

__all__ = ["add_parser"]

S = argparse.SUPPRESS


# --------------------------------------------------------------------------------------------
# argument types


def _share(text: str) -> float:
    v = finite_number(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to below 1, not {text}")
    return v


# --------------------------------------------------------------------------------------------
# registration


def add_parser(sub: Any) -> None:
    """Add ``classify`` with its sub-commands to the subparsers ``sub`` of the ``impasto``
    parser."""
    p = sub.add_parser(
        "classify",
        help="train image classifiers (LeNet, ResNet), evaluate them, predict classes",
        description="Train a classifier on labelled images, evaluate it (accuracy, per-class "
        "accuracy, confusion matrix) and predict the top classes of images.",
    )
    csub = add_subcommands(p, "classify_command")
    _add_train(csub)
    _add_eval(csub)
    _add_predict(csub)


def _add_train(csub: Any) -> None:
    d = _choices.CLASSIFY_TRAIN
    archs = "; ".join(
        f"{name}: {a['channels']} channel(s), {a['image_size']}px, width {a['width']}"
        + (f", {a['blocks']} blocks/stage" if a["blocks"] else "")
        + (", flips" if a["hflip"] else "")
        for name, a in _choices.CLASSIFIER_ARCHS.items()
    )
    opts = "; ".join(f"{o}: lr {lr:g}, weight decay {wd:g}" for o, (lr, wd) in
                     _choices.CLASSIFY_OPTIMIZER_DEFAULTS.items())
    p = csub.add_parser(
        "train",
        help="train a classifier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a classifier; writes config.json, stats.jsonl, TensorBoard events, "
            "checkpoints and best.pt (best validation accuracy) to the run folder.\n"
            f"Architectures: {archs}.\nOptimisers: {opts}.\n"
            "Multi-process: torchrun --nproc_per_node=N -m impasto.cli classify train ..."
        ),
    )
    p.add_argument("data", nargs="?", default=S,
                   help="labelled training images: a folder with one sub-folder per class, an "
                   "IDX images file, .npz (images, labels), .npy (+ --labels), .zip or .pt cache "
                   "(optional with --resume)")
    add_run_options(p)
    p.add_argument("--resume", default=None, metavar="RUN|CKPT",
                   help="continue a run exactly where it stopped (its settings are kept; options "
                   "given here override them)")
    g = p.add_argument_group("data")
    g.add_argument("--labels", default=S, metavar="FILE", help="labels of an IDX or .npy source")
    g.add_argument("--val-data", default=S, metavar="DATA", help="a separate validation set")
    g.add_argument("--val-labels", default=S, metavar="FILE", help="labels of --val-data")
    g.add_argument("--val-split", type=_share, default=S,
                   help=f"share of each class held out for validation without --val-data "
                   f"(default {d['val_split']:g}; 0: none)")
    n = p.add_argument_group("network")
    n.add_argument("--arch", choices=tuple(_choices.CLASSIFIER_ARCHS), default=S,
                   help=f"(default {d['arch']})")
    n.add_argument("--image-size", type=positive_int, default=S,
                   help="image side (default: per --arch)")
    n.add_argument("--channels", type=int, choices=(1, 3), default=S,
                   help="1 grey, 3 RGB (default: per --arch)")
    n.add_argument("--width", type=positive_int, default=S, help="first layer's channels")
    n.add_argument("--blocks", type=positive_int, default=S, help="resnet blocks per stage")
    n.add_argument("--dropout", type=_share, default=S,
                   help=f"before the last layer (default {d['dropout']:g})")
    a = p.add_argument_group("augmentation")
    a.add_argument("--crop-pad", type=nonneg_int, default=S,
                   help="random crops after padding by this many pixels (default: size/8; 0 off)")
    a.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=S,
                   help="random horizontal flips (default: off for lenet, on for resnet)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=_choices.CLASSIFY_OPTIMIZERS, default=S,
                   help=f"(default {d['optimizer']})")
    o.add_argument("--lr", type=positive_number, default=S, help="peak learning rate")
    o.add_argument("--momentum", type=_share, default=S, help=f"(default {d['momentum']:g})")
    o.add_argument("--weight-decay", type=finite_number, default=S)
    o.add_argument("--schedule", choices=_choices.CLASSIFY_SCHEDULES, default=S,
                   help=f"(default {d['schedule']})")
    o.add_argument("--warmup", type=_share, default=S, help="warm-up share of the run")
    o.add_argument("--label-smoothing", type=_share, default=S,
                   help=f"(default {d['label_smoothing']:g})")
    o.add_argument("--batch-size", type=positive_int, default=S,
                   help=f"per process (default {d['batch_size']})")
    length = o.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=S,
                        help=f"(default {_choices.CLASSIFY_DEFAULT_EPOCHS})")
    length.add_argument("--steps", type=positive_int, default=S)
    lg = add_runtime_options(p, d)
    lg.add_argument("--eval-every", type=nonneg_int, default=S,
                    help="steps between evaluations and checkpoints (default: every epoch)")
    p.set_defaults(func=_run_train)


def _add_eval(csub: Any) -> None:
    p = csub.add_parser(
        "eval",
        help="accuracy, per-class accuracy and confusion matrix on labelled images",
        description="Evaluate a trained classifier on labelled images: prints the accuracy, a "
        "per-class table and the confusion matrix; can also draw the matrix as a PNG and write "
        "everything as JSON.",
    )
    p.add_argument("model", metavar="RUN|CKPT",
                   help="a run folder (its best.pt, else its latest checkpoint) or a checkpoint")
    p.add_argument("data", help="labelled images: a folder with one sub-folder per class, IDX, "
                   ".npz (images, labels), .npy (+ --labels) ...")
    p.add_argument("--labels", default=None, metavar="FILE", help="labels of an IDX/.npy source")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="draw the confusion matrix")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the results as JSON")
    p.add_argument("--latest", action="store_true", default=None,
                   help="with a run folder, use its latest checkpoint instead of best.pt")
    p.add_argument("--batch-size", type=positive_int, default=256, help="(default 256)")
    p.add_argument("--device", choices=_choices.DEVICES, default="cpu")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the accuracy line")
    p.set_defaults(func=_run_eval)


def _add_predict(csub: Any) -> None:
    p = csub.add_parser(
        "predict",
        help="the most probable classes of images",
        description="Print the top-k classes (with probabilities) of each image.",
    )
    p.add_argument("model", metavar="RUN|CKPT",
                   help="a run folder (its best.pt, else its latest checkpoint) or a checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE|FOLDER",
                   help="image files, or folders searched recursively")
    p.add_argument("-k", "--top", type=positive_int, default=5,
                   help="classes per image (default 5; capped at the number of classes)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--latest", action="store_true", default=None,
                   help="with a run folder, use its latest checkpoint instead of best.pt")
    p.add_argument("--device", choices=_choices.DEVICES, default="cpu")
    p.set_defaults(func=_run_predict)


# --------------------------------------------------------------------------------------------
# classify train

#: The options of ``classify train`` that apply to some architectures only.
ARCH_OPTIONS = MethodOptions.of(
    "classify train", {arch: f"--arch {arch}" for arch in _choices.CLASSIFIER_ARCHS},
    (("resnet",), {"blocks": "--blocks"}),
)

#: The validation options: a share split off DATA, or a separate set (--val-data).
VAL_OPTIONS = MethodOptions.of(
    "classify train", {"split": "a validation share split off DATA (no --val-data)",
                       "val_data": "a separate validation set (--val-data)"},
    (("split",), {"val_split": "--val-split"}),
    (("val_data",), {"val_labels": "--val-labels"}),
)


def _refuse_foreign(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """Refuses the options of another architecture or validation than those of ``settings``
    (the options given, over a resumed run's settings)."""
    arch = settings.get("arch", _choices.CLASSIFY_TRAIN["arch"])
    if arch in ARCH_OPTIONS.methods:
        refuse_foreign(args, arch, ARCH_OPTIONS)
    refuse_foreign(args, "split" if settings.get("val_data") is None else "val_data",
                   VAL_OPTIONS)


def _train_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run's ClassifierTrainConfig (defaults, or the resumed run's settings, overridden by
    the options given) and the checkpoint to resume."""
    from impasto.classify.config import ClassifierTrainConfig, checkpoint_arch, checkpoint_kind

    given = given_settings(args, ClassifierTrainConfig)
    if args.resume is None:
        _refuse_foreign(args, given)
        if "data" not in given:
            raise InputError("classify train: give the training DATA (or --resume RUN)")
        if "run" not in given:
            raise InputError("classify train: give the run folder with --run RUN")
        return ClassifierTrainConfig(**given), None

    def check_kind(ckpt_path: Any, kind: str, settings: dict[str, Any]) -> None:
        if checkpoint_arch(kind) is None:
            raise InputError(f"{ckpt_path} is a '{kind}' checkpoint, not a classifier's")
        arch = settings.get("arch")
        if checkpoint_arch(kind) != arch:
            raise InputError(f"{ckpt_path} is a '{kind}' checkpoint, not "
                             f"'{checkpoint_kind(str(arch))}'")
        _refuse_foreign(args, settings)

    # A new length replaces the old one; a new optimiser or schedule takes its own defaults.
    resets = {"epochs": ("epochs", "steps"), "steps": ("epochs", "steps"),
              "optimizer": ("lr", "weight_decay"), "schedule": ("warmup",)}
    return resumed_config(ClassifierTrainConfig, given, args.resume, check_kind=check_kind,
                          resets=resets)


class _Bar(ProgressBar):
    """The progress callback: a tqdm bar with the step, loss, accuracy and validation."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.val = ""

    def postfix(self, info: Any) -> str | None:
        if info.val:
            self.val = f" val {100 * info.val['val_acc']:.2f}%"
        s = info.stats
        if not s:
            return None
        text = f"ep {info.epoch} loss {s['loss']:.3f} acc {100 * s['acc']:.1f}%{self.val}"
        if info.images_per_s:
            text += f" {info.images_per_s:.0f} img/s"
        return text


def _run_train(args: argparse.Namespace) -> int:
    from impasto.classify.training import train

    run_folder(args, "classify train")
    config, resume = _train_config(args)
    main_rank = is_main_rank()
    result = run_training(train, config, resume, _Bar(args.quiet or not main_rank))
    if main_rank and not args.quiet:
        if result.aborted:
            print(f"stopped at step {result.step}; continue with: impasto classify train "
                  f"--resume {result.run}", file=sys.stderr)
        else:
            best = ("" if result.best_val_acc is None else
                    f"; best validation accuracy {100 * result.best_val_acc:.2f}% "
                    f"({result.best_checkpoint})")
            print(f"trained {result.step} steps; checkpoint {result.checkpoint}{best}",
                  file=sys.stderr)
        if getattr(result, "output", None) is not None:
            print(f"wrote {result.output}", file=sys.stderr)
    return 130 if result.aborted else 0


# --------------------------------------------------------------------------------------------
# classify eval / predict


#: ``--latest`` chooses among a run folder's checkpoints; a file is what it is.
SOURCE_OPTIONS = {command: MethodOptions.of(
    f"classify {command}", {"run": "a run folder", "file": "a checkpoint or model file"},
    (("run",), {"latest": "--latest"}),
) for command in ("eval", "predict")}


def _which(args: argparse.Namespace) -> str:
    """``"latest"`` or ``"best"``; refuses --latest for a file."""
    source = "file" if Path(args.model).is_file() else "run"  # else missing: said on loading
    refuse_foreign(args, source, SOURCE_OPTIONS[args.classify_command])
    return "latest" if args.latest else "best"


def _check_json_path(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a folder; give a file name such as results.json")
    return p


def _run_eval(args: argparse.Namespace) -> int:
    from impasto._fileutil import write_text_atomic
    from impasto.classify.evaluate import evaluate, format_report, load_classifier, plot_confusion
    from impasto.io import check_output_path

    plot = check_output_path(args.plot) if args.plot else None
    out_json = _check_json_path(args.json) if args.json else None
    model = load_classifier(args.model, device=args.device, which=_which(args))
    result = evaluate(model, args.data, args.labels, batch_size=args.batch_size)
    if not math.isfinite(result.loss):
        raise InputError(_diverged_model(args.model, f"mean loss {result.loss}"))
    report = format_report(result)
    print(report.splitlines()[0] if args.quiet else report)
    if plot is not None:
        title = f"{Path(str(args.data)).name}: accuracy {100 * result.accuracy:.2f}% (n={result.n})"
        plot_confusion(result.confusion, result.class_names, plot, title=title)
    if out_json is not None:
        data = {"model": str(model.source), "data": str(args.data), **result.to_dict()}
        write_text_atomic(out_json, json.dumps(data, indent=2) + "\n")
    if not args.quiet:
        for what, path in (("plot", plot), ("results", out_json)):
            if path is not None:
                print(f"wrote {what} {path}", file=sys.stderr)
    return 0


def _diverged_model(model: str, what: str) -> str:
    """The refusal of a model whose outputs are NaN or infinite (finite weights can overflow:
    a checkpoint written before the guard checked evaluations)."""
    return (f"{model}: the model's outputs are NaN or infinite ({what}): the training had "
            "diverged when it was written; use an earlier checkpoint")


def _run_predict(args: argparse.Namespace) -> int:
    from impasto.classify.evaluate import (
        collect_image_paths,
        load_classifier,
        load_images,
        predict_topk,
    )

    which = _which(args)
    paths = collect_image_paths(args.images)
    model = load_classifier(args.model, device=args.device, which=which)
    rows: list[dict[str, Any]] = []
    chunk = 256
    for i in range(0, len(paths), chunk):
        part = paths[i : i + chunk]
        top = predict_topk(model, load_images(model, part), args.top)
        if not all(math.isfinite(q) for t in top for _, q in t):
            raise InputError(_diverged_model(args.model, "probabilities nan"))
        rows += [{"image": str(p), "top": [{"class": c, "p": q} for c, q in t]}
                 for p, t in zip(part, top)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            best = ", ".join(f"{t['class']} ({t['p']:.3f})" for t in row["top"])
            print(f"{row['image']}: {best}")
    return 0
