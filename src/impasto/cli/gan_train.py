"""``impasto gan train``: the options of :class:`impasto.gan.GanTrainConfig` (and, with
``--arch pggan``, :class:`impasto.gan.progressive.PgganTrainConfig`), parsed into the config
by field name, and the call of the training loop.

Every option defaults to ``SUPPRESS``: the config's defaults, or with ``--resume`` the run's
saved settings, fill what is not given. ``--run RUN`` is the run folder; ``-o MODEL.pt`` the
model file (see :func:`impasto.cli._run.run_folder`). Under ``torchrun --nproc_per_node=N``
it trains on N processes; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import (
    MethodOptions,
    add_runtime_options,
    finite_number,
    given_settings,
    int_list,
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

__all__ = ["add_train"]

S = argparse.SUPPRESS


def _betas(text: str) -> tuple[float, float]:
    parts = [t for t in text.split(",") if t.strip()]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"give two numbers B1,B2, not {text!r}")
    return (finite_number(parts[0]), finite_number(parts[1]))


def add_train(gsub: Any) -> None:
    """Add ``train`` to the sub-commands ``gsub`` of ``impasto gan``."""
    d = _choices.GAN_TRAIN
    defaults = "; ".join(
        f"{arch}: {loss}, lr {lr:g}, betas {b[0]:g},{b[1]:g}, {n} D step(s)"
        for arch, (loss, lr, b, n) in _choices.GAN_ARCH_DEFAULTS.items()
    )
    p = gsub.add_parser(
        "train",
        help="train a GAN",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a GAN; writes config.json, stats.jsonl, TensorBoard events, checkpoints and "
            "sample grids to the run folder.\n"
            f"Defaults per architecture: {defaults}; wgan-gp: lr 1e-4, betas 0,0.9, 5 D steps.\n"
            "Multi-process: torchrun --nproc_per_node=N -m impasto.cli gan train ..."
        ),
    )
    p.add_argument("data", nargs="?", default=S,
                   help="training images: a folder (sub-folders = classes), .zip, IDX, .npy/.npz "
                   "or .pt cache (optional with --resume)")
    add_run_options(p)
    p.add_argument("--resume", default=None, metavar="RUN|CKPT",
                   help="continue a run exactly where it stopped (its settings are kept; options "
                   "given here override them)")
    n = p.add_argument_group("networks")
    n.add_argument("--arch", choices=_choices.GAN_ARCHS, default=S,
                   help=f"(default {d['arch']}); pggan: progressive growing, see below")
    n.add_argument("--resolution", type=int, default=S,
                   help=f"image side (default {d['resolution']})")
    n.add_argument("--channels", type=int, choices=(1, 3), default=S,
                   help=f"1 grey, 3 RGB (default {d['channels']})")
    n.add_argument("--z-dim", type=positive_int, default=S, help=f"(default {d['z_dim']})")
    n.add_argument("--base-width", type=positive_int, default=S,
                   help=f"(default {d['base_width']})")
    n.add_argument("--d-norm", choices=("batch", "layer", "none"), default=S,
                   help="DCGAN discriminator norm (default batch; layer for wgan-gp)")
    n.add_argument("--conditional", action="store_true", default=S,
                   help="class-conditional G and D (needs labelled data; at lr 2e-4 G follows "
                   "the label only after a few thousand steps: docs/gan.md)")
    o = p.add_argument_group("objective and optimiser")
    o.add_argument("--loss", choices=_choices.GAN_LOSSES, default=S, help="(default: per --arch)")
    o.add_argument("--gp-weight", type=finite_number, default=S,
                   help=f"(default {d['gp_weight']:g})")
    o.add_argument("--r1-gamma", type=finite_number, default=S, help="R1 weight (default 0: off)")
    o.add_argument("--d-steps", type=positive_int, default=S, help="D steps per G step")
    o.add_argument("--lr", type=positive_number, default=S, help="learning rate of G and D")
    o.add_argument("--lr-g", type=positive_number, default=S)
    o.add_argument("--lr-d", type=positive_number, default=S)
    o.add_argument("--betas", type=_betas, default=S, metavar="B1,B2", help="Adam betas")
    o.add_argument("--ema-kimg", type=positive_number, default=S, metavar="KIMG",
                   help="half-life of G_ema, the average of G's weights that draws the samples, "
                   "in thousands of images shown to D, at most "
                   f"{_choices.GAN_EMA_RAMPUP_RATIO:.0%} of the images seen so far (default "
                   f"{_choices.GAN_DEFAULT_EMA_KIMG:g})".replace("%", "%%"))
    o.add_argument("--ema-beta", type=finite_number, default=S, metavar="BETA",
                   help="instead of --ema-kimg, a fixed decay of G_ema per G step (runs made "
                   "before --ema-kimg used 0.999 and keep it when resumed)")
    o.add_argument("--ema-rampup", type=finite_number, default=S, metavar="KIMG",
                   help="with --ema-beta: ramp the decay up from 0 over the first KIMG "
                   "(default: off)")
    t = p.add_argument_group("length and data")
    t.add_argument("--batch-size", type=positive_int, default=S,
                   help=f"per process (default {d['batch_size']})")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--kimg", type=positive_number, default=S,
                        help="thousands of real images to show D (default "
                        f"{_choices.GAN_DEFAULT_KIMG:g})")
    length.add_argument("--steps", type=positive_int, default=S, help="generator steps")
    t.add_argument("--diffaugment", default=S, metavar="POLICY",
                   help="DiffAugment policy, comma-separated from "
                   f"{','.join(_choices.DIFFAUGMENT_POLICIES)}")
    t.add_argument("--hflip", action="store_true", default=S, help="random horizontal flips")
    g = add_runtime_options(p, d)
    g.add_argument("--sample-every", type=nonneg_int, default=S,
                   help=f"steps (default {d['sample_every']})")
    g.add_argument("--samples", dest="n_samples", metavar="SAMPLES", type=positive_int,
                   default=S,
                   help=f"images in the sample grid (default {d['n_samples']})")
    g.add_argument("--metric", choices=[m for m in _choices.GAN_TRACKED_METRICS if m], default=S,
                   help="track this metric of G_ema (lower is better) and keep best.pt")
    g.add_argument("--metric-every", type=nonneg_int, default=S,
                   help="steps between measurements (default 0: at the end only)")
    g.add_argument("--metric-samples", type=positive_int, default=S,
                   help=f"images per side of the metric (default {d['metric_samples']})")
    _add_pggan_options(p)
    p.set_defaults(func=_run_train)


# --------------------------------------------------------------------------------------------
# fixed-size GANs (impasto.gan.training)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The GanTrainConfig settings of the command line; ``--lr`` sets both rates."""
    from impasto.gan.config import GanTrainConfig

    given = given_settings(args, GanTrainConfig, exclude=(*_PGGAN_ONLY, "lr"))
    if hasattr(args, "lr"):
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    return given


def _need_data_and_run(given: dict[str, Any]) -> None:
    if "data" not in given:
        raise InputError("gan train: give the training DATA (or --resume RUN)")
    if "run" not in given:
        raise InputError("gan train: give the run folder with --run RUN")


def _train_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run's GanTrainConfig (defaults, or the resumed run's settings, overridden by the
    options given) and the checkpoint to resume."""
    from impasto.gan.config import GanTrainConfig

    given = _given(args)
    if args.resume is None:
        _refuse_by_settings(args, given)
        _need_data_and_run(given)
        return GanTrainConfig(**given), None

    def check_kind(ckpt_path: Any, kind: str, settings: dict[str, Any]) -> None:
        if not kind.startswith("gan/"):
            raise InputError(f"{ckpt_path} is a '{kind}' checkpoint, not a GAN's")
        if f"gan/{settings.get('arch')}" != kind:
            raise InputError(f"{ckpt_path} is a '{kind}' checkpoint, not "
                             f"'gan/{settings.get('arch')}'")
        _refuse_by_settings(args, settings)

    # A new length replaces the old one; a new loss picks its own optimiser defaults.
    resets = {"kimg": ("kimg", "steps"), "steps": ("kimg", "steps"),
              "loss": ("lr_g", "lr_d", "betas", "d_steps"), **_EMA_RESETS}
    return resumed_config(GanTrainConfig, given, args.resume, check_kind=check_kind,
                          resets=resets)


#: On --resume, an EMA setting given replaces the saved ones it cannot go with: a fixed decay
#: (--ema-beta, --ema-rampup) the half-life, and a half-life the fixed decay and its ramp-up.
_EMA_RESETS = {"ema_beta": ("ema_kimg",), "ema_rampup": ("ema_kimg",),
               "ema_kimg": ("ema_beta", "ema_rampup")}


class _Bar(ProgressBar):
    """The progress callback: a tqdm bar with the step, kimg, losses and an ETA."""

    def postfix(self, info: Any) -> str | None:
        s = info.stats
        if not s:
            return None
        text = f"kimg {info.images_seen / 1000:.1f} D {s.get('d_loss', math.nan):.3f} " \
               f"G {s.get('g_loss', math.nan):.3f}"
        if info.images_per_s:
            text += f" {info.images_per_s:.0f} img/s"
        return text


def _report(result: Any, args: argparse.Namespace, *, progressive: bool = False) -> int:
    """Prints how the run ended (rank 0, unless quiet); returns the exit status."""
    if is_main_rank() and not args.quiet:
        stage = getattr(result, "stage", None) if progressive else None
        if result.aborted:
            where = f" ({stage.resolution}px, {stage.phase})" if stage else ""
            print(f"stopped at step {result.step}{where}; continue with: impasto gan train "
                  f"--resume {result.run}", file=sys.stderr)
        else:
            up_to = f" up to {stage.resolution}px" if stage else ""
            print(f"trained {result.step} steps ({result.images_seen / 1000:.1f} kimg){up_to}; "
                  f"checkpoint {result.checkpoint}", file=sys.stderr)
        if getattr(result, "output", None) is not None:
            print(f"wrote {result.output}", file=sys.stderr)
    return 130 if result.aborted else 0


def _run_train(args: argparse.Namespace) -> int:
    run_folder(args, "gan train")
    arch = _arch(args)
    if arch in ARCH_OPTIONS.methods:
        refuse_foreign(args, arch, ARCH_OPTIONS)
    if arch == "pggan":
        return _run_train_pggan(args)
    from impasto.gan.training import train

    config, resume = _train_config(args)
    result = run_training(train, config, resume, _Bar(args.quiet or not is_main_rank()))
    return _report(result, args)


# --------------------------------------------------------------------------------------------
# gan train --arch pggan (impasto.gan.progressive)

# pggan-only options: dest -> flag. The schedule's are keys of PgganTrainConfig.schedule, the
# others fields of PgganTrainConfig.
_SCHEDULE = {
    "schedule_preset": "--schedule", "stable_kimg": "--stable-kimg", "fade_kimg": "--fade-kimg",
    "batch_sizes": "--batch-sizes", "start_resolution": "--start-resolution",
}
_PGGAN_ONLY = {
    **_SCHEDULE, "widths": "--widths", "fmap_base": "--fmap-base", "fmap_max": "--fmap-max",
    "mbstd_group_size": "--mbstd-group", "drift_weight": "--drift-weight",
    "reset_optimizers": "--reset-optimizers",
}

#: The options of ``gan train`` that apply to some architectures only (see
#: :func:`~impasto.cli._args.refuse_foreign`): the progressive GAN's schedule and networks; the
#: fixed-size GANs' loss, optimiser and length in G steps (PGGAN: WGAN-GP with drift, its
#: schedule in kimg); the DCGAN's discriminator norm (SNGAN's D has spectral norm only).
ARCH_OPTIONS = MethodOptions.of(
    "gan train", {arch: f"--arch {arch}" for arch in _choices.GAN_ARCHS},
    (("pggan",), _PGGAN_ONLY),
    (("dcgan", "sngan"), {
        "base_width": "--base-width", "conditional": "--conditional", "loss": "--loss",
        "r1_gamma": "--r1-gamma", "d_steps": "--d-steps", "steps": "--steps",
        "diffaugment": "--diffaugment"}),
    (("dcgan",), {"d_norm": "--d-norm"}),
)

#: The options of a fixed-size GAN that apply to some losses only.
LOSS_OPTIONS = MethodOptions.of(
    "gan train", {loss: f"--loss {loss}" for loss in _choices.GAN_LOSSES},
    (("wgan-gp",), {"gp_weight": "--gp-weight"}),
)


#: The options of a tracked metric (--metric).
TRACKING_OPTIONS = MethodOptions.of(
    "gan train", {"tracked": "a tracked metric (--metric)", "untracked": "a run without --metric"},
    (("tracked",), {"metric_every": "--metric-every", "metric_samples": "--metric-samples"}),
)


def _refuse_by_settings(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """Refuses the options of another loss than that of ``settings`` (the options given, over
    a resumed run's settings; a fixed-size GAN's loss given, else the architecture's default,
    PGGAN's WGAN-GP), and the tracked metric's options without one."""
    arch = settings.get("arch", _choices.GAN_TRAIN["arch"])
    loss = "wgan-gp" if arch == "pggan" else \
        settings.get("loss") or _choices.GAN_ARCH_DEFAULTS.get(arch, (None,))[0]
    if loss in LOSS_OPTIONS.methods:
        refuse_foreign(args, loss, LOSS_OPTIONS)
    refuse_foreign(args, "tracked" if settings.get("metric") else "untracked", TRACKING_OPTIONS)


def _add_pggan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "progressive growing (--arch pggan)",
        "Grows G and D from 4x4 to --resolution (a power of two), fading in each resolution "
        "(Karras et al. 2018): WGAN-GP + drift, Adam 1e-3 betas 0,0.99, reset at every phase. "
        "--kimg is the total length (default: the end of the target's first stable phase); "
        "--batch-size B uses B at every resolution. The paper's fixed EMA decay 0.999 "
        "(--ema-beta 0.999) averages over ~1000 steps, longer than a phase of --schedule cpu; "
        "the default half-life (--ema-kimg) is at most 5% of the images seen. "
        "--metric swd (target 16x16 or more) is measured only in the target resolution's "
        "stable phase, every --metric-every steps and at the end.",
    )
    g.add_argument("--schedule", dest="schedule_preset", choices=_choices.PGGAN_SCHEDULES,
                   default=S, help="paper: 800+800 kimg per resolution, batch "
                   f"{','.join(map(str, _choices.PGGAN_PAPER_BATCH_SIZES))}; cpu: 20+20 kimg, "
                   "larger batches at low resolution (default paper)")
    g.add_argument("--stable-kimg", type=finite_number, default=S, metavar="KIMG",
                   help="real images (thousands) per stable phase")
    g.add_argument("--fade-kimg", type=finite_number, default=S, metavar="KIMG",
                   help="real images (thousands) per fade-in")
    g.add_argument("--batch-sizes", type=int_list, default=S, metavar="B4,B8,...",
                   help="one batch size per resolution from 4x4 (per process)")
    g.add_argument("--start-resolution", type=int, default=S,
                   help="resolution to start at (default 4)")
    g.add_argument("--widths", type=int_list, default=S, metavar="W4,W8,...",
                   help="feature maps per resolution from 4x4 (default: min(8192/(r/2), 512))")
    g.add_argument("--fmap-base", type=positive_int, default=S,
                   help="the default widths' numerator (default 8192)")
    g.add_argument("--fmap-max", type=positive_int, default=S,
                   help="the default widths' cap (default 512)")
    g.add_argument("--mbstd-group", dest="mbstd_group_size", metavar="MBSTD_GROUP",
                   type=nonneg_int, default=S,
                   help="minibatch-stddev group size (default 4; 0 off)")
    g.add_argument("--drift-weight", type=finite_number, default=S, help="(default 0.001)")
    g.add_argument("--reset-optimizers", action=argparse.BooleanOptionalAction, default=S,
                   help="fresh Adam state at every phase, as the paper's code (default on)")


def _arch(args: argparse.Namespace) -> str | None:
    """The architecture: --arch, else the resumed checkpoint's (None when it is no GAN's:
    the resume refuses it), else the default."""
    arch = getattr(args, "arch", None)
    if arch is None and args.resume is not None:
        from impasto.train import load_checkpoint, resolve_checkpoint

        family, _, arch = load_checkpoint(resolve_checkpoint(args.resume))["kind"].partition("/")
        return arch if family == "gan" else None
    return arch or _choices.GAN_TRAIN["arch"]


def _pggan_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The PgganTrainConfig of the command line (over the resumed run's settings). The
    GanTrainConfig options that PgganTrainConfig has are taken as they are; --batch-size and
    --kimg set the schedule (the others were refused by ARCH_OPTIONS)."""
    from impasto.gan.progressive import SCHEDULE_PRESETS, PgganTrainConfig
    from impasto.train import config_from_dict

    fields = {f.name for f in dataclasses.fields(PgganTrainConfig)}
    given = _given(args)  # the fixed-size GANs' options are refused by ARCH_OPTIONS
    if hasattr(args, "batch_size") and hasattr(args, "batch_sizes"):
        raise InputError("gan train: give --batch-size or --batch-sizes, not both")
    given = {k: v for k, v in given.items() if k in fields}
    given.update({k: getattr(args, k) for k in _PGGAN_ONLY if k not in _SCHEDULE
                  and hasattr(args, k)})

    base: dict[str, Any] = {}
    resume, source = args.resume, None
    if resume is not None:
        from impasto.cli._run import resumed_checkpoint

        ckpt_path, _, base = resumed_checkpoint(resume, kind="gan/pggan")
        resume, source = str(ckpt_path), str(ckpt_path)
        for option, dropped in _EMA_RESETS.items():
            if option in given:
                for key in dropped:
                    base.pop(key, None)
    else:
        _need_data_and_run(given)
    _refuse_by_settings(args, {**base, **given, "arch": "pggan"})
    schedule = dict(base.get("schedule") or {})
    if hasattr(args, "schedule_preset") or not schedule:
        preset = SCHEDULE_PRESETS[getattr(args, "schedule_preset", "paper")]()
        schedule = {**dataclasses.asdict(preset), "total_kimg": schedule.get("total_kimg")}
    for dest, key in (("stable_kimg", "stable_kimg"), ("fade_kimg", "fade_kimg"),
                      ("batch_sizes", "batch_sizes"), ("start_resolution", "start_resolution"),
                      ("kimg", "total_kimg")):
        if hasattr(args, dest):
            schedule[key] = getattr(args, dest)
    if hasattr(args, "batch_size"):
        schedule["batch_sizes"] = (args.batch_size,) * 9  # every resolution from 4 to 1024
    config = config_from_dict(PgganTrainConfig, {**base, **given, "schedule": schedule},
                              source=source)
    return config, resume


class _PgBar(_Bar):
    """The progress bar of a progressive run: also the resolution and alpha."""

    def postfix(self, info: Any) -> str | None:
        text = super().postfix(info)
        if not text:
            return None
        stage = f"{info.resolution}px" + (f" fade {info.alpha:.2f}"
                                         if info.phase == "fade" else "")
        return f"{stage} {text}"


def _run_train_pggan(args: argparse.Namespace) -> int:
    from impasto.gan.progressive import train

    config, resume = _pggan_config(args)
    result = run_training(train, config, resume, _PgBar(args.quiet or not is_main_rank()))
    return _report(result, args, progressive=True)
