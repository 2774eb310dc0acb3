"""``impasto serve``: the web studio (:mod:`impasto.web`) on this machine's address, parsed here
and served by :func:`impasto.web.serve` (needs ``pip install 'impasto[web]'``)."""

from __future__ import annotations

import argparse
from typing import Any

from impasto.cli import _choices
from impasto.cli._args import int_at_least, parse_int

__all__ = ["add_parser"]


def _port(text: str) -> int:
    v = parse_int(text)
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, not {v}")
    return v


def add_parser(sub: Any) -> None:
    """Add ``serve`` to the subparsers ``sub`` of the ``impasto`` parser."""
    p = sub.add_parser(
        "serve",
        help="the web studio: stylise, refine and generate from a browser",
        description="Serve the studio, a web page over the same pipelines as the command "
        "line: stylise a photo at once (26 built-in styles, any painting, your per-style "
        "networks), refine it with Gatys (live preview, cancel), stylise clips, sample from "
        "GANs and make interpolation videos, browse training runs (loss curves, samples, "
        "metrics, TensorBoard). Fully offline; listens on this machine only unless --host says otherwise. "
        "Needs pip install 'impasto[web]'.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another "
                   "address is warned about: the studio has no login)")
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="folder of trained models the studio offers besides the built-in "
                   "styles: per-style model files, GAN model files and run folders; the Runs "
                   "tab shows every training run under it (default: none)")
    p.add_argument("--max-jobs", type=int_at_least(1), default=None, metavar="N",
                   help="heavy jobs (refinements) at once; the rest wait in a queue "
                   "(default: one per two cores)")
    p.add_argument("--device", choices=_choices.DEVICES, default="auto",
                   help="where the pipelines run (default auto)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from impasto.web import serve

    return serve(args.host, args.port, args.runs, args.max_jobs, device=args.device)
