"""``impasto stylize clip.mp4 -s painting.jpg``: Gatys style transfer on video, frame by frame
with the previous result warped by the optical flow and a temporal loss (Ruder et al. 2016;
:mod:`impasto.style.gatys_video`). Its options, and the run, for :mod:`impasto.cli.stylize`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import given_settings, parse_float, positive_int
from impasto.errors import InputError

#: The options of this mode (dest: as written), refused for an image input.
VIDEO_OPTIONS = {"temporal_weight": "--temporal-weight", "frame_iterations": "--frame-iterations"}


def _weight(text: str) -> float:
    v = parse_float(text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {text}")
    return v


def add_video_options(p: argparse.ArgumentParser) -> None:
    """The Gatys video options of ``impasto stylize``."""
    d = _choices.GATYS_VIDEO
    S = argparse.SUPPRESS
    g = p.add_argument_group("Gatys on video (Ruder et al. 2016)")
    g.add_argument("--temporal-weight", type=_weight, default=S, metavar="W",
                   help="Gatys, video input: weight of the temporal loss, which holds each frame "
                   "to the previous result warped by the optical flow where the flow is "
                   f"reliable; 0: warm start only (default {d['temporal_weight']:g})")
    g.add_argument("--frame-iterations", type=positive_int, default=S, metavar="N",
                   help="Gatys, video input: iterations of every frame after the first, at full "
                   "size only (the first frame runs the --iterations schedule) (default "
                   f"{d['frame_iterations']})")


def refuse_video_options(args: argparse.Namespace) -> None:
    """An image input takes none of :data:`VIDEO_OPTIONS`."""
    for dest, flag in VIDEO_OPTIONS.items():
        if hasattr(args, dest):
            raise InputError(f"{flag} applies to a video input only")


def run_gatys_video(args: argparse.Namespace, not_gatys: tuple[str, ...]) -> int:
    """Runs ``impasto stylize VIDEO -s STYLE ...`` with Gatys; returns 0. ``not_gatys``: the
    options in ``args`` that set no :class:`~impasto.style.GatysConfig` field."""
    from impasto.cli._args import check_output_dir
    from impasto.io import DEFAULT_MAX_PIXELS
    from impasto.io.video import OUTPUT_CODECS
    from impasto.style.gatys import INITS, GatysConfig
    from impasto.style.gatys_video import stylize_video

    src = Path(args.content)
    for dest, flag in (("save_every", "--save-every"), ("mask", "--mask")):
        if hasattr(args, dest):
            raise InputError(f"{flag} is not supported for a video input")
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    settings = given_settings(args, GatysConfig, exclude=(*not_gatys, *VIDEO_OPTIONS))
    if settings["size"] is None:
        del settings["size"]
    if settings.get("init", "content") not in INITS:
        raise InputError(f"--init takes {', '.join(INITS)} for a video input (the first frame's "
                         "start), not an image file")
    config = GatysConfig(**settings)
    config.validate(len(args.style))
    out = Path(args.output) if args.output else Path(f"{src.stem}-stylized.mp4")
    if out.suffix.lower() not in OUTPUT_CODECS:
        raise InputError(f"{out}: a video needs a video output ({', '.join(OUTPUT_CODECS)})")
    check_output_dir(out)
    video: dict[str, Any] = {k: getattr(args, k) for k in VIDEO_OPTIONS if hasattr(args, k)}
    # The VGG is built once the video and the styles have been read.
    stylize_video(src, list(args.style), out, progress=not args.quiet,
                  max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, **video, **settings)
    if not args.quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0
