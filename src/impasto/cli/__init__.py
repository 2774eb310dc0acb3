"""The ``impasto`` command line: a thin layer that parses, builds a config and calls the library.

``main(argv)`` is testable in-process and returns the exit status. A user's mistake (a bad file,
a bad option) prints one line on stderr and returns 2; it never shows a traceback.

Building the parser imports no torch (a test guards it): ``impasto --help``, ``--version``,
``COMMAND --help`` and argument errors answer at once; each command imports the library when
it runs. One module per command: :mod:`~impasto.cli.stylize` (its trained networks in
:mod:`~impasto.cli.stylize_networks`), :mod:`~impasto.cli.gan`
(``gan train`` in :mod:`~impasto.cli.gan_train`), :mod:`~impasto.cli.metrics`,
:mod:`~impasto.cli.classify`, :mod:`~impasto.cli.fast_style`, :mod:`~impasto.cli.adain`,
:mod:`~impasto.cli.demo`, :mod:`~impasto.cli.serve` (the web studio, :mod:`impasto.web`),
:mod:`~impasto.cli.instant` (``presets``, and the instant styles of ``stylize``).
:mod:`~impasto.cli._args` holds the shared options, the config-from-options path and the
argument types; :mod:`~impasto.cli._run` the run folder, resume, progress bars and Ctrl-C
handling of the training commands; :mod:`~impasto.cli._choices` the library's names and
defaults that the parser shows (written by :mod:`~impasto.cli._snapshot`).
The library never imports this package.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from impasto import __version__
from impasto.cli import (
    adain,
    classify,
    demo,
    fast_style,
    gan,
    instant,
    metrics,
    serve,
    stylize,
    texture,
)
from impasto.errors import InputError

__all__ = ["build_parser", "main"]


class UsageError(InputError):
    """A bad command line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The ``impasto`` parser with every command (imports no torch)."""
    parser = _Parser(prog="impasto", description="Neural style transfer and GANs on PyTorch.")
    parser.add_argument("--version", action="version", version=f"impasto {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in (stylize, instant, texture, gan, metrics, classify, fast_style, adain,
                    demo, serve):
        command.add_parser(sub)
    return parser


def _diverged(exc: BaseException) -> bool:
    """Whether ``exc`` is the training guard's NaN/inf stop. The guard's module is looked up
    only if something imported it: a command that never trained cannot have raised it, and
    ``main`` stays free of torch until a command runs."""
    guard = sys.modules.get("impasto.train.guard")
    return guard is not None and isinstance(exc, guard.NonFiniteLossError)


def _swallowed_here(frame: FrameType | None) -> bool:
    """Whether a KeyboardInterrupt raised in ``frame`` would be printed and dropped instead of
    stopping the command: importlib's module-lock weakref callback (``cb``), which runs when an
    import's lock is freed, is the one such place a command's start reaches (seen as a rare
    "Exception ignored in ... cb" traceback when Ctrl-C landed while torch was importing)."""
    code = frame.f_code if frame is not None else None
    return (code is not None and code.co_name == "cb"
            and code.co_filename.startswith("<frozen importlib"))


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C while a command runs: KeyboardInterrupt, so that the command's clean-ups run.
    Where Python would swallow it (:func:`_swallowed_here`), the signal is sent again a moment
    later instead, from a helper thread: Python runs the handler again in the main thread, at
    its next instruction, out of the callback."""
    if _swallowed_here(frame):
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """Within the block Ctrl-C raises KeyboardInterrupt (so that a command's clean-ups run)
    where the entry's quit handler (:mod:`impasto.__main__`) was in place; restored after."""
    old = signal.getsignal(signal.SIGINT)
    swap = getattr(old, "impasto_entry", False)
    if swap:
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        if swap:
            signal.signal(signal.SIGINT, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 training diverged, 2 bad input,
    130 interrupted)."""
    try:
        with _interrupts_raise():
            return _main(argv)
    except InputError as e:
        msg = " ".join(str(e).split())
        print(msg if msg.startswith("impasto") else f"impasto: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("impasto: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _diverged(e):
            raise
        print(f"impasto: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)
