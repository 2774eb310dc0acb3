"""Argparse helpers shared by the command modules (imports no torch).

Each ``type=`` here parses one option's text or raises :class:`argparse.ArgumentTypeError`
with a one-line reason; the ``impasto`` parser (:class:`impasto.cli._Parser`) prints it as
``impasto <command>: argument --opt: <reason>`` with exit status 2, no usage dump.
:func:`add_subcommands` gives a command its sub-commands with the same one-line errors.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "add_subcommands",
    "add_training_runtime",
    "finite_number",
    "int_at_least",
    "int_list",
    "nonneg_int",
    "nonneg_number",
    "parse_float",
    "parse_int",
    "positive_int",
    "positive_number",
    "seeds",
]


def add_training_runtime(p: argparse.ArgumentParser, *, device: str, seed: int,
                         default: Any) -> argparse._ArgumentGroup:
    """The "runtime" option group every training command shares: ``--device``,
    ``--precision``, ``--channels-last``, ``--deterministic`` and ``--seed``, each with
    ``default`` (a sentinel: unset options keep the config's value, named in the help)."""
    from impasto.device import DEVICES, PRECISIONS

    r = p.add_argument_group("runtime")
    r.add_argument("--device", choices=DEVICES, default=default, help=f"(default {device})")
    r.add_argument("--precision", choices=PRECISIONS, default=default,
                   help="auto: bf16 autocast where the hardware is fast at it (default auto)")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=default,
                   help="NHWC memory format (default on)")
    r.add_argument("--deterministic", action="store_true", default=default,
                   help="deterministic algorithms: bit-identical reruns and resumes")
    r.add_argument("--seed", type=nonneg_int, default=default, help=f"(default {seed})")
    return r


def add_subcommands(p: argparse.ArgumentParser, dest: str, metavar: str = "COMMAND") -> Any:
    """The subparsers of ``p``, built by ``p``'s own class (so their errors are one line too);
    ``p`` given no sub-command prints its help on stderr and exits with status 2."""

    def no_command(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=no_command)
    return p.add_subparsers(dest=dest, metavar=metavar, parser_class=type(p))


# --------------------------------------------------------------------------------------------
# argument types


def parse_int(text: str) -> int:
    """Any whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def parse_float(text: str) -> float:
    """Any number, ``nan`` and ``inf`` included (see :func:`finite_number`)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def finite_number(text: str) -> float:
    """A finite number."""
    v = parse_float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return v


def positive_number(text: str) -> float:
    """A finite number > 0."""
    v = finite_number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return v


def nonneg_number(text: str) -> float:
    """A finite number >= 0."""
    v = finite_number(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return v


def int_at_least(minimum: int, problem: str | None = None) -> Callable[[str], int]:
    """A type: a whole number no smaller than ``minimum``; a smaller one is refused with
    ``problem`` (default ``"must be at least <minimum>"``)."""
    problem = problem or f"must be at least {minimum}"

    def parse(text: str) -> int:
        v = parse_int(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{problem}, not {v}")
        return v

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0, "must not be negative")


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers (at least one), e.g. ``4,8,16``."""
    try:
        items = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of whole numbers: {text!r}"
        ) from None
    if not items:
        raise argparse.ArgumentTypeError("empty list")
    return items


def seeds(text: str) -> tuple[int, ...]:
    """Comma-separated non-negative seeds (at least one), e.g. ``1,2,3``."""
    items = int_list(text)
    if any(s < 0 for s in items):
        raise argparse.ArgumentTypeError(f"seeds must not be negative: {text!r}")
    return items
