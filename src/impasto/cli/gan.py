"""``impasto gan prepare|train|sample|interpolate``: thin argparse handlers over
:func:`impasto.data.build_cache`, :func:`impasto.gan.train` (in :mod:`impasto.cli.gan_train`)
and :class:`impasto.gan.GanGenerator`.

Every option is checked before any work: a bad value, file or checkpoint is one line on stderr
and exit status 2, and leaves no output behind (no run folder, no image).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from impasto.cli import _choices, gan_train
from impasto.cli._args import (
    MethodOptions,
    add_subcommands,
    nonneg_int,
    positive_int,
    positive_number,
    refuse_foreign,
    seeds,
)
from impasto.errors import InputError

__all__ = ["add_parser"]


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
    gan_train.add_train(gsub)
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


def _add_common_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RUN|CKPT|MODEL", help="a run folder (its latest "
                   "checkpoint), a checkpoint file or a model file (impasto.gan.export_model)")
    p.add_argument("--truncation", type=positive_number, default=None,
                   help="truncation trick: resample latent entries beyond +-T (e.g. 0.7)")
    p.add_argument("--class", dest="class_", default=None, metavar="C",
                   help="class index or name (conditional models only)")
    p.add_argument("--no-ema", dest="ema", action="store_false",
                   help="use the raw generator weights instead of their moving average")
    p.add_argument("--device", choices=_choices.DEVICES, default="cpu")
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


def _finite(images: Any, gen: Any) -> Any:
    """``images``, unless the generator made NaN or infinite pixels (finite weights can still
    overflow: the last checkpoint before a divergence); those would be written black."""
    import torch

    if not bool(torch.isfinite(images).all()):
        raise InputError(f"{gen.source}: the generator's outputs are NaN or infinite: the "
                         "training had diverged when it was written; use an earlier checkpoint")
    return images


def _rgb(x: Any) -> Any:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


#: ``gan sample``'s options of one way of writing the images (--grid or --out-dir) only.
SAMPLE_OPTIONS = MethodOptions.of(
    "gan sample", {"grid": "one grid image (--grid)", "out_dir": "one file per image (--out-dir)"},
    (("grid",), {"nrow": "--nrow"}),
)


def _run_sample(args: argparse.Namespace) -> int:
    from impasto.gan.pipeline import image_grid, sample_metadata
    from impasto.io import check_output_path, save_image

    refuse_foreign(args, "grid" if args.grid else "out_dir", SAMPLE_OPTIONS)
    if args.n > 10000:
        raise InputError(f"-n {args.n} is too many; write at most 10000 images at once")
    grid_path = check_output_path(args.grid) if args.grid else None
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: is a file, not a folder")
    gen = _load(args)
    images = _finite(gen(args.n, seed=args.seed, truncation=args.truncation,
                         class_=_class(gen, args.class_)), gen)
    meta = sample_metadata(gen.source, args.seed, args.n, args.truncation, args.class_)
    if grid_path is not None:
        save_image(image_grid(images, args.nrow), grid_path, metadata=meta)
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
    """Write atomically: a temporary file in the same folder, renamed over ``path``, with the
    mode of any other output (``0666 & ~umask``, not ``mkstemp``'s 0600)."""
    from impasto._fileutil import _umask

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
        os.chmod(tmp, 0o666 & ~_umask())
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
    frames = _finite(gen.interpolate(list(args.seeds), args.frames, truncation=args.truncation,
                                     class_=_class(gen, args.class_), loop=args.loop), gen)
    _write_animation(out, suffix, _frames_u8(frames, args.scale), args.fps)
    if not args.quiet:
        print(f"wrote {out} ({args.frames} frames)", file=sys.stderr)
    return 0
