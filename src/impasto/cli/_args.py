"""Argparse helpers shared by the command modules (imports no torch): the shared options
(:func:`add_runtime_options`), the settings of a config from the parsed options
(:func:`given_settings`), the default run folder (:func:`default_run`) and argument types.

Each ``type=`` here parses one option's text or raises :class:`argparse.ArgumentTypeError`
with a one-line reason; the ``impasto`` parser (:class:`impasto.cli._Parser`) prints it as
``impasto <command>: argument --opt: <reason>`` with exit status 2, no usage dump.
:func:`add_subcommands` gives a command its sub-commands with the same one-line errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from impasto.cli import _choices
from impasto.errors import InputError

__all__ = [
    "NOT_SETTINGS",
    "MethodOptions",
    "add_runtime_options",
    "add_subcommands",
    "default_run",
    "finite_number",
    "given_settings",
    "int_at_least",
    "int_list",
    "nonneg_int",
    "nonneg_number",
    "parse_float",
    "parse_int",
    "positive_int",
    "positive_number",
    "refuse_foreign",
    "seeds",
]


#: Namespace attributes that set no config field: argparse's bookkeeping and the options each
#: command reads itself.
NOT_SETTINGS = frozenset({
    "func", "command", "verbose", "quiet", "resume",
    "gan_command", "classify_command", "fast_command", "adain_command",
})


def given_settings(args: argparse.Namespace, cls: type, *,
                   exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The settings ``args`` gives for the dataclass ``cls``, by field name: an option's dest
    is the name of the field it sets. Options whose default is ``argparse.SUPPRESS`` appear
    only when given, so the config's defaults (or a resumed run's settings) fill the rest.

    Every attribute of ``args`` but :data:`NOT_SETTINGS` and ``exclude`` must name a field of
    ``cls``: an option left behind by a renamed field is a ``TypeError``, not a silently
    ignored value."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    skip = NOT_SETTINGS | set(exclude)
    given = {k: v for k, v in vars(args).items() if k not in skip}
    stray = sorted(set(given) - names)
    if stray:
        raise TypeError(f"option(s) {', '.join(stray)} set no field of {cls.__name__}")
    return given


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """The options of a command that apply to some of its methods (or modes) only, for
    :func:`refuse_foreign`.

    ``command`` names the command in messages (``"gan train"``); ``methods`` maps each method
    to how messages name it (``{"pggan": "--arch pggan"}``); ``only`` maps an option's dest to
    the option as written and the methods it applies to. Each listed option defaults to
    ``argparse.SUPPRESS`` (or None), so one present in the namespace was given. Build it with
    :meth:`of`."""

    command: str
    methods: Mapping[str, str]
    only: Mapping[str, tuple[str, frozenset[str]]]

    @classmethod
    def of(cls, command: str, methods: Mapping[str, str],
           *groups: tuple[Iterable[str], Mapping[str, str]]) -> MethodOptions:
        """The table of ``groups``: (the methods, ``{dest: option}`` of the options that apply
        to those methods only)."""
        only: dict[str, tuple[str, frozenset[str]]] = {}
        for owners, options in groups:
            owners = frozenset(owners)
            unknown = owners - set(methods)
            if unknown:
                raise ValueError(f"unknown method(s) {sorted(unknown)}")
            for dest, flag in options.items():
                if dest in only:
                    raise ValueError(f"{flag} is listed twice")
                only[dest] = (flag, owners)
        return cls(command, dict(methods), only)

    def owners(self, dest: str) -> str:
        """The methods the option ``dest`` applies to, as messages name them ("A, B and C")."""
        names = [name for m, name in self.methods.items() if m in self.only[dest][1]]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def refuse_foreign(args: argparse.Namespace, method: str, table: MethodOptions, *,
                   allow: Iterable[str] = ()) -> None:
    """Raise :class:`~impasto.errors.InputError` with one line naming the method it belongs
    to for the first option of ``table`` given in ``args`` (present and not None) that does
    not apply to ``method``; the dests in ``allow`` are let through."""
    allowed = set(allow)
    for dest, (flag, owners) in table.only.items():
        if method in owners or dest in allowed or getattr(args, dest, None) is None:
            continue
        raise InputError(f"{table.command}: {flag} applies to {table.owners(dest)}, not to "
                         f"{table.methods[method]}")


def add_runtime_options(p: argparse.ArgumentParser, defaults: Mapping[str, Any]
                        ) -> argparse._ArgumentGroup:
    """The options of the runtime and logging settings every training config shares
    (:class:`~impasto.train.config.RuntimeConfig`, :class:`~impasto.train.config.LoggingConfig`):
    one per field that ``defaults`` (the config's defaults, from :mod:`impasto.cli._choices`)
    holds, each with dest = the field and default ``SUPPRESS``, its default named in the help;
    and ``-q/--quiet``. Returns the "logging" group for the command's own logging options."""
    d, S = defaults, argparse.SUPPRESS
    r = p.add_argument_group("runtime")
    if "device" in d:
        r.add_argument("--device", choices=_choices.DEVICES, default=S,
                       help=f"(default {d['device']})")
    if "precision" in d:
        r.add_argument("--precision", choices=_choices.PRECISIONS, default=S,
                       help="auto: bf16 autocast where the hardware is fast at it "
                       f"(default {d['precision']})")
    if "channels_last" in d:
        r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S,
                       help=f"NHWC memory format (default {'on' if d['channels_last'] else 'off'})")
    if "deterministic" in d:
        r.add_argument("--deterministic", action="store_true", default=S,
                       help="deterministic algorithms and data loading in the main process: "
                       "bit-identical reruns and resumes")
    if "seed" in d:
        r.add_argument("--seed", type=nonneg_int, default=S, help=f"(default {d['seed']})")
    if "num_workers" in d:
        r.add_argument("--workers", dest="num_workers", metavar="WORKERS", type=nonneg_int,
                       default=S,
                       help=f"data loader processes (default {d['num_workers']})")
    g = p.add_argument_group("logging")
    if "log_every" in d:
        g.add_argument("--log-every", type=nonneg_int, default=S,
                       help=f"steps (default {d['log_every']})")
    if "ckpt_every" in d:
        g.add_argument("--ckpt-every", type=nonneg_int, default=S,
                       help=f"steps between checkpoints (default {d['ckpt_every']})")
    if "keep_last" in d:
        g.add_argument("--keep-last", type=positive_int, default=S,
                       help=f"checkpoints kept (default {d['keep_last']})")
    if "tensorboard" in d:
        g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=S,
                       help="no TensorBoard event files")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return g


def default_run(output: str) -> str:
    """The run folder of the model file ``output`` when none is given: ``<stem>.run`` beside
    it, or the ``<stem>-run`` that ``adain train`` named it before when only that exists (so
    runs started then continue)."""
    out = Path(output)
    new, old = out.with_suffix(".run"), out.with_name(f"{out.stem}-run")
    return str(old if old.is_dir() and not new.exists() else new)


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


def check_output_dir(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a writable folder."""
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: cannot create its folder: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {ancestor} is not writable")
