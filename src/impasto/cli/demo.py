"""``impasto demo``: style transfer on photos packaged with scikit-image, offline (what
``make demo`` runs); :func:`impasto.demo.run` does the work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from impasto.cli._args import positive_int, positive_number

__all__ = ["add_parser"]

# Kept equal to impasto.demo's defaults by tests/cli/test_demo_cli.py (importing impasto.demo
# here would load PIL for every command).
_OUT, _SIZE, _STYLE_WEIGHT = "demo_out", 256, 1000.0


def add_parser(sub: Any) -> None:
    """Add ``demo`` to the subparsers ``sub`` of the ``impasto`` parser."""
    p = sub.add_parser(
        "demo",
        help="stylise photos packaged with scikit-image (offline; needs impasto[demo])",
        description="The instant styles first (seconds): the 26 presets on scikit-image's cat "
        "photo (presets.png), its astronaut photo with its stained-tissue micrograph as the "
        "painting, the cat in preset 19; then the astronaut by Gatys optimisation (caffe "
        "VGG19, about a minute): each result and a side-by-side figure.png go to --out. Needs scikit-image: pip install 'impasto[demo]'.",
    )
    p.add_argument("--out", type=Path, default=Path(_OUT),
                   help=f"output folder (default {_OUT})")
    p.add_argument("--size", type=positive_int, default=_SIZE,
                   help=f"longest side of the results (default {_SIZE})")
    p.add_argument("--style-weight", type=positive_number, default=_STYLE_WEIGHT,
                   help=f"(default {_STYLE_WEIGHT:g}: stronger than stylize's 100, the "
                   "micrograph is a pale texture)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from impasto.demo import run

    run(args.out, size=args.size, style_weight=args.style_weight, quiet=args.quiet)
    return 0
