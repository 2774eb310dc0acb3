"""``impasto gan train|sample|interpolate``: thin argparse handlers over :func:`impasto.gan.train`
and :class:`impasto.gan.GanGenerator`, registered by :mod:`impasto.cli`.

Every option is checked before any work: a bad value, file or checkpoint is one line on stderr
and exit status 2, and leaves no output behind (no run folder, no image). ``gan train`` under
``torchrun --nproc_per_node=N`` trains on N processes; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from impasto.cli._args import (
    add_subcommands,
    add_training_runtime,
    finite_number,
    int_list,
    nonneg_int,
    positive_int,
    positive_number,
    seeds,
)
from impasto.cli._run import ProgressBar, is_main_rank, resumed_checkpoint, run_training
from impasto.errors import InputError

__all__ = ["add_parser"]

_HELP_FMT = argparse.RawDescriptionHelpFormatter


# --------------------------------------------------------------------------------------------
# argument types


def _betas(text: str) -> tuple[float, float]:
    parts = [t for t in text.split(",") if t.strip()]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"give two numbers B1,B2, not {text!r}")
    return (finite_number(parts[0]), finite_number(parts[1]))


# --------------------------------------------------------------------------------------------
# registration


def add_parser(sub: Any) -> None:
    """Add ``gan`` with its sub-commands to the subparsers ``sub`` of the ``impasto`` parser."""
    p = sub.add_parser(
        "gan",
        help="train GANs (DCGAN, SNGAN) and sample from them",
        description="Train a GAN on a folder of images, sample from it, make interpolations.",
    )
    gsub = add_subcommands(p, "gan_command")
    _add_train(gsub)
    _add_sample(gsub)
    _add_interpolate(gsub)
    _add_prepare(gsub)


def _add_prepare(gsub: Any) -> None:
    p = gsub.add_parser(
        "prepare",
        help="decode and resize a dataset once into a uint8 cache file for `gan train`",
        description="Decode, resize and centre-crop every image once and write them, with "
        "their labels, to one .pt file; `gan train CACHE.pt` then skips decoding each epoch.",
    )
    p.add_argument("data", help="a folder, .zip, IDX file or .npy/.npz array")
    p.add_argument("-o", "--output", required=True, metavar="CACHE.pt")
    p.add_argument("--resolution", type=positive_int, required=True, help="image side")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="(default 3)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from impasto.data import build_cache, open_dataset

    out = Path(args.output)
    if out.suffix.lower() != ".pt":
        raise InputError(f"{out}: a cache file must end in .pt")
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not a file")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: the output folder does not exist")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"{out.parent}: the output folder is not writable")
    dataset = open_dataset(args.data, resolution=args.resolution, channels=args.channels)
    build_cache(dataset, out, args.resolution, args.channels)
    if not args.quiet:
        print(f"wrote {out}: {len(dataset)} images, {args.channels}x{args.resolution}x"
              f"{args.resolution}", file=sys.stderr)
    return 0


# Options of `gan train` that map to GanTrainConfig fields (dest -> field). Their argparse
# default is SUPPRESS, so only the options given on the command line override the defaults
# or, with --resume, the resumed run's settings.
_FIELDS = {
    "out": "run", "arch": "arch", "resolution": "resolution", "channels": "channels",
    "z_dim": "z_dim", "base_width": "base_width", "d_norm": "d_norm",
    "conditional": "conditional", "loss": "loss", "gp_weight": "gp_weight",
    "r1_gamma": "r1_gamma", "d_steps": "d_steps", "lr_g": "lr_g", "lr_d": "lr_d",
    "betas": "betas", "batch_size": "batch_size", "kimg": "kimg", "steps": "steps",
    "ema_beta": "ema_beta", "ema_rampup": "ema_rampup", "diffaugment": "diffaugment",
    "hflip": "hflip",
    "precision": "precision", "channels_last": "channels_last",
    "deterministic": "deterministic", "seed": "seed", "device": "device",
    "workers": "num_workers", "log_every": "log_every", "sample_every": "sample_every",
    "ckpt_every": "ckpt_every", "keep_last": "keep_last", "samples": "n_samples",
    "tensorboard": "tensorboard", "metric": "metric", "metric_every": "metric_every",
    "metric_samples": "metric_samples",
}


def _add_train(gsub: Any) -> None:
    from impasto.gan.augment import DIFFAUGMENT_POLICIES
    from impasto.gan.config import ARCH_DEFAULTS, DEFAULT_KIMG, TRACKED_METRICS, GanTrainConfig
    from impasto.gan.losses import GAN_LOSS_KINDS
    from impasto.nets.gan import GAN_ARCHS

    d = GanTrainConfig(data="-")
    S = argparse.SUPPRESS
    defaults = "; ".join(
        f"{arch}: {loss}, lr {lr:g}, betas {b[0]:g},{b[1]:g}, {n} D step(s)"
        for arch, (loss, lr, b, n) in ARCH_DEFAULTS.items()
    )
    p = gsub.add_parser(
        "train",
        help="train a GAN",
        formatter_class=_HELP_FMT,
        description=(
            "Train a GAN; writes config.json, stats.jsonl, TensorBoard events, checkpoints and "
            "sample grids to the run folder.\n"
            f"Defaults per architecture: {defaults}; wgan-gp: lr 1e-4, betas 0,0.9, 5 D steps.\n"
            "Multi-process: torchrun --nproc_per_node=N -m impasto.cli gan train ..."
        ),
    )
    p.add_argument("data", nargs="?", default=None,
                   help="training images: a folder (sub-folders = classes), .zip, IDX, .npy/.npz "
                   "or .pt cache (optional with --resume)")
    p.add_argument("-o", "--out", default=S, help="the run folder (with --resume: the resumed one)")
    p.add_argument("--resume", default=None, metavar="RUN|CKPT",
                   help="continue a run exactly where it stopped (its settings are kept; options "
                   "given here override them)")
    n = p.add_argument_group("networks")
    n.add_argument("--arch", choices=(*GAN_ARCHS, "pggan"), default=S,
                   help=f"(default {d.arch}); pggan: progressive growing, see below")
    n.add_argument("--resolution", type=int, default=S, help=f"image side (default {d.resolution})")
    n.add_argument("--channels", type=int, choices=(1, 3), default=S,
                   help=f"1 grey, 3 RGB (default {d.channels})")
    n.add_argument("--z-dim", type=positive_int, default=S, help=f"(default {d.z_dim})")
    n.add_argument("--base-width", type=positive_int, default=S, help=f"(default {d.base_width})")
    n.add_argument("--d-norm", choices=("batch", "layer", "none"), default=S,
                   help="DCGAN discriminator norm (default batch; layer for wgan-gp)")
    n.add_argument("--conditional", action="store_true", default=S,
                   help="class-conditional G and D (needs labelled data)")
    o = p.add_argument_group("objective and optimiser")
    o.add_argument("--loss", choices=GAN_LOSS_KINDS, default=S, help="(default: per --arch)")
    o.add_argument("--gp-weight", type=finite_number, default=S, help=f"(default {d.gp_weight:g})")
    o.add_argument("--r1-gamma", type=finite_number, default=S, help="R1 weight (default 0: off)")
    o.add_argument("--d-steps", type=positive_int, default=S, help="D steps per G step")
    o.add_argument("--lr", type=positive_number, default=S, help="learning rate of G and D")
    o.add_argument("--lr-g", type=positive_number, default=S)
    o.add_argument("--lr-d", type=positive_number, default=S)
    o.add_argument("--betas", type=_betas, default=S, metavar="B1,B2", help="Adam betas")
    o.add_argument("--ema-beta", type=finite_number, default=S, help=f"(default {d.ema_beta:g})")
    o.add_argument("--ema-rampup", type=finite_number, default=S, metavar="KIMG",
                   help="ramp the EMA decay up from 0 over the first KIMG (default: off)")
    t = p.add_argument_group("length and data")
    t.add_argument("--batch-size", type=positive_int, default=S,
                   help=f"per process (default {d.batch_size})")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--kimg", type=positive_number, default=S,
                        help=f"thousands of real images to show D (default {DEFAULT_KIMG:g})")
    length.add_argument("--steps", type=positive_int, default=S, help="generator steps")
    t.add_argument("--diffaugment", default=S, metavar="POLICY",
                   help="DiffAugment policy, comma-separated from "
                   f"{','.join(DIFFAUGMENT_POLICIES)}")
    t.add_argument("--hflip", action="store_true", default=S, help="random horizontal flips")
    t.add_argument("--workers", type=nonneg_int, default=S, help="data loader processes")
    add_training_runtime(p, device=d.device, seed=d.seed, default=S)
    g = p.add_argument_group("logging")
    g.add_argument("--log-every", type=nonneg_int, default=S,
                   help=f"steps (default {d.log_every})")
    g.add_argument("--sample-every", type=nonneg_int, default=S,
                   help=f"steps (default {d.sample_every})")
    g.add_argument("--ckpt-every", type=nonneg_int, default=S,
                   help=f"steps (default {d.ckpt_every})")
    g.add_argument("--keep-last", type=positive_int, default=S,
                   help=f"checkpoints kept (default {d.keep_last})")
    g.add_argument("--samples", type=positive_int, default=S,
                   help=f"images in the sample grid (default {d.n_samples})")
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=S)
    g.add_argument("--metric", choices=[m for m in TRACKED_METRICS if m], default=S,
                   help="track this metric of G_ema (lower is better) and keep best.pt")
    g.add_argument("--metric-every", type=nonneg_int, default=S,
                   help="steps between measurements (default 0: at the end only)")
    g.add_argument("--metric-samples", type=positive_int, default=S,
                   help=f"images per side of the metric (default {d.metric_samples})")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_pggan_options(p)
    p.set_defaults(func=_run_train)


def _add_common_sampling(p: argparse.ArgumentParser) -> None:
    from impasto.device import DEVICES

    p.add_argument("source", metavar="RUN|CKPT|MODEL", help="a run folder (its latest "
                   "checkpoint), a checkpoint file or a model file (impasto.gan.export_model)")
    p.add_argument("--truncation", type=positive_number, default=None,
                   help="truncation trick: resample latent entries beyond +-T (e.g. 0.7)")
    p.add_argument("--class", dest="class_", default=None, metavar="C",
                   help="class index or name (conditional models only)")
    p.add_argument("--no-ema", dest="ema", action="store_false",
                   help="use the raw generator weights instead of their moving average")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--resolution", type=int, default=None,
                   help="progressive GANs: render at this resolution, any the run has reached "
                   "(default: its current one)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")


def _add_sample(gsub: Any) -> None:
    p = gsub.add_parser("sample", help="write images from a trained GAN",
                        description="Write n images from a trained GAN as one grid or as files.")
    _add_common_sampling(p)
    p.add_argument("-n", type=positive_int, default=64, help="number of images (default 64)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="(default 0)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--grid", default=None, metavar="OUT.png", help="one grid image")
    where.add_argument("--out-dir", default=None, metavar="DIR", help="one PNG per image")
    p.add_argument("--nrow", type=positive_int, default=None,
                   help="images per grid row (default: a square grid)")
    p.set_defaults(func=_run_sample)


def _add_interpolate(gsub: Any) -> None:
    p = gsub.add_parser("interpolate", help="animate a slerp between seeds (GIF or MP4)",
                        description="Interpolate spherically between the latents of seeds and "
                        "write the frames as a GIF (Pillow) or MP4 (imageio + imageio-ffmpeg).")
    _add_common_sampling(p)
    p.add_argument("--seeds", type=seeds, required=True, help="comma-separated, e.g. 1,2,3")
    p.add_argument("--frames", type=positive_int, required=True, help="frames in all")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gif|OUT.mp4")
    p.add_argument("--fps", type=positive_number, default=12.0, help="(default 12)")
    p.add_argument("--loop", action="store_true", help="return to the first seed at the end")
    p.add_argument("--scale", type=positive_int, default=1,
                   help="enlarge each frame by this whole factor (nearest neighbour)")
    p.set_defaults(func=_run_interpolate)


# --------------------------------------------------------------------------------------------
# gan train


def _train_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The run's GanTrainConfig (defaults, or the resumed run's settings, overridden by the
    options given) and the resume path."""
    from impasto.gan.config import GanTrainConfig
    from impasto.train import config_from_dict

    given = {field: getattr(args, dest) for dest, field in _FIELDS.items() if hasattr(args, dest)}
    if hasattr(args, "lr"):
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    if args.data is not None:
        given["data"] = args.data
    resume = args.resume
    if resume is None:
        if args.data is None:
            raise InputError("gan train: give the training DATA (or --resume RUN)")
        if "run" not in given:
            raise InputError("gan train: give the run folder with --out RUN")
        return GanTrainConfig(**given), None
    ckpt_path, ckpt, base = resumed_checkpoint(resume)
    if not ckpt["kind"].startswith("gan/"):
        raise InputError(f"{ckpt_path} is a '{ckpt['kind']}' checkpoint, not a GAN's")
    arch = given.get("arch", base.get("arch"))
    if f"gan/{arch}" != ckpt["kind"]:
        raise InputError(f"{ckpt_path} is a '{ckpt['kind']}' checkpoint, not 'gan/{arch}'")
    if "kimg" in given or "steps" in given:
        base.pop("kimg", None)
        base.pop("steps", None)
    if "loss" in given:  # let the new loss pick its own defaults
        for key in ("lr_g", "lr_d", "betas", "d_steps"):
            base.pop(key, None)
    config = config_from_dict(GanTrainConfig, {**base, **given}, source=str(ckpt_path))
    return config, str(ckpt_path)


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


def _run_train(args: argparse.Namespace) -> int:
    from impasto.gan.training import train

    if _wants_pggan(args):
        return _run_train_pggan(args)
    config, resume = _train_config(args)
    main_rank = is_main_rank()
    result = run_training(train, config, resume, _Bar(args.quiet or not main_rank))
    if main_rank and not args.quiet:
        if result.aborted:
            print(f"stopped at step {result.step}; continue with: impasto gan train "
                  f"--resume {result.run}", file=sys.stderr)
        else:
            print(f"trained {result.step} steps ({result.images_seen / 1000:.1f} kimg); "
                  f"checkpoint {result.checkpoint}", file=sys.stderr)
    return 130 if result.aborted else 0


# --------------------------------------------------------------------------------------------
# gan sample / interpolate


def _load(args: argparse.Namespace) -> Any:
    from impasto.gan.pipeline import GanGenerator

    gen = GanGenerator.from_file(args.source, args.device, ema=args.ema,
                                 resolution=args.resolution)
    if args.class_ is not None:
        gen.class_index(args.class_)  # checks it now: unconditional model, unknown class
    return gen


def _class(gen: Any, value: str | None) -> int | None:
    return None if value is None else gen.class_index(value)


def _rgb(x: Any) -> Any:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def _run_sample(args: argparse.Namespace) -> int:
    from torchvision.utils import make_grid

    from impasto.io import check_output_path, save_image

    if args.n > 10000:
        raise InputError(f"-n {args.n} is too many; write at most 10000 images at once")
    grid_path = check_output_path(args.grid) if args.grid else None
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file, not a folder")
    gen = _load(args)
    images = gen(args.n, seed=args.seed, truncation=args.truncation,
                 class_=_class(gen, args.class_))
    meta = {"source": str(gen.source), "seed": args.seed, "n": args.n,
            "truncation": args.truncation, "class": args.class_}
    if grid_path is not None:
        nrow = args.nrow or max(1, math.ceil(math.sqrt(args.n)))
        grid = make_grid(images, nrow=nrow, padding=2, pad_value=0.0)
        save_image(grid, grid_path, metadata=meta)
        written = str(grid_path)
    else:
        assert out_dir is not None
        for i, x in enumerate(images):
            save_image(_rgb(x), out_dir / f"seed{args.seed}-{i:05d}.png",
                       metadata={**meta, "index": i})
        written = f"{len(images)} images to {out_dir}"
    if not args.quiet:
        print(f"wrote {written}", file=sys.stderr)
    return 0


def _check_video_path(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise InputError(f"{path}: unsupported animation format {path.suffix or '(none)'!r}; "
                         "use .gif or .mp4")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name such as out.gif")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise InputError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {folder} is not writable")
    if suffix == ".mp4":
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise InputError(
                "writing .mp4 needs imageio and imageio-ffmpeg: pip install imageio "
                "imageio-ffmpeg (or write a .gif)"
            ) from None
    return suffix


def _frames_u8(frames: Any, scale: int) -> list[Any]:
    import torch

    x = frames
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    x = (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return list(x.numpy())


def _write_animation(path: Path, suffix: str, frames: list[Any], fps: float) -> None:
    """Write atomically: a temporary file in the same folder, renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.absolute().parent)
    os.close(fd)
    try:
        if suffix == ".gif":
            from PIL import Image

            pics = [Image.fromarray(f) for f in frames]
            pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:],
                         duration=max(1, round(1000 / fps)), loop=0)
        else:
            import imageio.v2 as iio

            iio.mimwrite(tmp, frames, fps=fps, macro_block_size=1)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise


def _run_interpolate(args: argparse.Namespace) -> int:
    out = Path(args.output)
    suffix = _check_video_path(out)
    if len(args.seeds) < 2:
        raise InputError(f"--seeds needs at least two seeds, got {len(args.seeds)}")
    if args.frames < 2 or args.frames > 10000:
        raise InputError(f"--frames must be from 2 to 10000, not {args.frames}")
    if args.scale > 16:
        raise InputError(f"--scale must be from 1 to 16, not {args.scale}")
    gen = _load(args)
    frames = gen.interpolate(list(args.seeds), args.frames, truncation=args.truncation,
                             class_=_class(gen, args.class_), loop=args.loop)
    _write_animation(out, suffix, _frames_u8(frames, args.scale), args.fps)
    if not args.quiet:
        print(f"wrote {out} ({args.frames} frames)", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# gan train --arch pggan (impasto.gan.progressive)

# pggan-only options: dest -> flag (argparse default SUPPRESS, so "given" is "present").
_PGGAN_ONLY = {
    "schedule_preset": "--schedule", "stable_kimg": "--stable-kimg", "fade_kimg": "--fade-kimg",
    "batch_sizes": "--batch-sizes", "start_resolution": "--start-resolution",
    "widths": "--widths", "fmap_base": "--fmap-base", "fmap_max": "--fmap-max",
    "mbstd_group": "--mbstd-group", "drift_weight": "--drift-weight",
    "reset_optimizers": "--reset-optimizers",
}
# The GanTrainConfig fields (of _FIELDS) that a progressive run takes as they are; the
# others are refused, except --batch-size and --kimg, which set the schedule.
_PGGAN_FIELDS = {
    "run", "resolution", "channels", "arch", "z_dim", "gp_weight", "lr_g", "lr_d", "betas",
    "ema_beta", "ema_rampup", "hflip", "precision", "channels_last", "deterministic", "seed",
    "device", "num_workers", "log_every", "sample_every", "ckpt_every", "keep_last",
    "n_samples", "tensorboard", "metric", "metric_every", "metric_samples",
}


def _add_pggan_options(p: argparse.ArgumentParser) -> None:
    from impasto.gan.progressive import PAPER_BATCH_SIZES, SCHEDULE_PRESETS

    S = argparse.SUPPRESS
    g = p.add_argument_group(
        "progressive growing (--arch pggan)",
        "Grows G and D from 4x4 to --resolution (a power of two), fading in each resolution "
        "(Karras et al. 2018): WGAN-GP + drift, Adam 1e-3 betas 0,0.99, reset at every phase. "
        "--kimg is the total length (default: the end of the target's first stable phase); "
        "--batch-size B uses B at every resolution. With short phases (--schedule cpu) use "
        "--ema-beta 0.99: the paper's 0.999 averages over ~1000 steps, longer than a phase. "
        "--metric swd (target 16x16 or more) is measured only in the target resolution's "
        "stable phase, every --metric-every steps and at the end.",
    )
    g.add_argument("--schedule", dest="schedule_preset", choices=tuple(SCHEDULE_PRESETS),
                   default=S, help="paper: 800+800 kimg per resolution, batch "
                   f"{','.join(map(str, PAPER_BATCH_SIZES))}; cpu: 20+20 kimg, larger batches "
                   "at low resolution (default paper)")
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
    g.add_argument("--mbstd-group", type=nonneg_int, default=S,
                   help="minibatch-stddev group size (default 4; 0 off)")
    g.add_argument("--drift-weight", type=finite_number, default=S, help="(default 0.001)")
    g.add_argument("--reset-optimizers", action=argparse.BooleanOptionalAction, default=S,
                   help="fresh Adam state at every phase, as the paper's code (default on)")


def _wants_pggan(args: argparse.Namespace) -> bool:
    """--arch pggan, or --resume of a pggan run without --arch; refuses pggan-only options
    for the other architectures."""
    arch = getattr(args, "arch", None)
    if arch is None and args.resume is not None:
        from impasto.train import load_checkpoint, resolve_checkpoint

        arch = "pggan" if load_checkpoint(resolve_checkpoint(args.resume))["kind"] == \
            "gan/pggan" else None
    if arch == "pggan":
        return True
    for dest, flag in _PGGAN_ONLY.items():
        if hasattr(args, dest):
            raise InputError(f"gan train: {flag} applies to --arch pggan only")
    return False


def _pggan_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The PgganTrainConfig of the command line (over the resumed run's settings)."""
    import dataclasses

    from impasto.gan.progressive import SCHEDULE_PRESETS, PgganTrainConfig
    from impasto.train import config_from_dict

    for dest, fld in _FIELDS.items():
        if hasattr(args, dest) and fld not in _PGGAN_FIELDS and dest not in ("batch_size", "kimg"):
            flag = "--" + dest.replace("_", "-")
            raise InputError(f"gan train: {flag} does not apply to --arch pggan")
    if hasattr(args, "batch_size") and hasattr(args, "batch_sizes"):
        raise InputError("gan train: give --batch-size or --batch-sizes, not both")
    given = {f: getattr(args, d) for d, f in _FIELDS.items() if hasattr(args, d)
             and f in _PGGAN_FIELDS}
    if hasattr(args, "lr"):
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    for dest, key in (("widths", "widths"), ("fmap_base", "fmap_base"),
                      ("fmap_max", "fmap_max"), ("mbstd_group", "mbstd_group_size"),
                      ("drift_weight", "drift_weight"), ("reset_optimizers", "reset_optimizers")):
        if hasattr(args, dest):
            given[key] = getattr(args, dest)
    if args.data is not None:
        given["data"] = args.data

    base: dict[str, Any] = {}
    resume, source = args.resume, None
    if resume is not None:
        ckpt_path, _, base = resumed_checkpoint(resume, kind="gan/pggan")
        resume, source = str(ckpt_path), str(ckpt_path)
    else:
        if args.data is None:
            raise InputError("gan train: give the training DATA (or --resume RUN)")
        if "run" not in given:
            raise InputError("gan train: give the run folder with --out RUN")
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
    main_rank = is_main_rank()
    result = run_training(train, config, resume, _PgBar(args.quiet or not main_rank))
    if main_rank and not args.quiet:
        if result.aborted:
            print(f"stopped at step {result.step} ({result.stage.resolution}px, "
                  f"{result.stage.phase}); continue with: impasto gan train --resume "
                  f"{result.run}", file=sys.stderr)
        else:
            print(f"trained {result.step} steps ({result.images_seen / 1000:.1f} kimg) up to "
                  f"{result.stage.resolution}px; checkpoint {result.checkpoint}", file=sys.stderr)
    return 130 if result.aborted else 0
