"""Run-time helpers shared by the training commands (``gan train``, ``classify train``,
``fast-style train``, ``adain train``): the progress bar, Ctrl-C handling, and continuing a run
from its checkpoint. Torch and tqdm load only when used.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LossBar", "ProgressBar", "add_run_options", "changed_settings", "is_main_rank",
    "resumed_checkpoint",
    "resumed_config", "run_folder", "run_training", "stop_on_sigint",
]

STOP_MESSAGE = ("\nimpasto: stopping after this step and saving a checkpoint "
                "(Ctrl-C twice more to quit without it)")

#: What a second Ctrl-C prints: it does not interrupt the step nor the save (the checkpoint is
#: written to a temporary file and renamed, so finishing it is cheap); a third one quits.
SAVING_MESSAGE = ("impasto: still finishing the step and saving the checkpoint; Ctrl-C once more "
                  "to quit without it")


def is_main_rank() -> bool:
    """Rank 0 of a ``torchrun`` job, or a single process (``RANK`` unset or empty)."""
    return os.environ.get("RANK", "0") in ("", "0")


class ProgressBar:
    """The ``progress`` callback of a training loop: a tqdm bar on stderr over the steps, from
    the first call's ``info.start_step`` to ``info.total_steps``, followed by the text of
    :meth:`postfix`. With ``quiet`` it shows nothing."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def __call__(self, info: Any) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=info.total_steps, initial=info.start_step, unit="step",
                            dynamic_ncols=True, file=sys.stderr)
        self.bar.update(info.step - self.bar.n)
        text = self.postfix(info)
        if text:
            self.bar.set_postfix_str(text, refresh=False)

    def postfix(self, info: Any) -> str | None:
        """The text after the bar for this step's ``info`` (None: keep the last one)."""
        return None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LossBar(ProgressBar):
    """A bar followed by the content and style losses (and, in adversarial training, the D and
    G losses) of the step's ``info.stats``: the style-training commands."""

    def postfix(self, info: Any) -> str | None:
        s = info.stats
        if not s:
            return None
        text = f"content {s.get('content', math.nan):.4g} style {s.get('style', math.nan):.4g}"
        if "d_loss" in s:
            text += f" D {s['d_loss']:.3f} G {s.get('g_adv', math.nan):.3f}"
        return text


@contextlib.contextmanager
def stop_on_sigint(message: str = STOP_MESSAGE, *,
                   rank0_only: bool = False) -> Iterator[dict[str, bool]]:
    """Within the block the first Ctrl-C sets ``state["stop"]`` (the training loop's ``abort``
    then stops after the current step and saves) and prints ``message`` on stderr; a second
    one does not interrupt that step or save, it prints :data:`SAVING_MESSAGE`; a third one
    raises KeyboardInterrupt (the command then exits with status 130; a checkpoint being
    written is left out, its temporary file removed). With ``rank0_only`` only rank 0 of a
    ``torchrun`` job prints. Data-loader workers (forked: they inherit the handler, and a
    terminal's Ctrl-C reaches them too) ignore it. Outside the main thread, where no handler
    can be set, nothing is done."""
    state = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    presses = 0
    speaks = not rank0_only or is_main_rank()
    owner = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        nonlocal presses
        if os.getpid() != owner:  # a forked data-loader worker: the main process decides
            return
        presses += 1
        if presses >= 3:
            raise KeyboardInterrupt
        state["stop"] = True
        if speaks:
            print(message if presses == 1 else SAVING_MESSAGE, file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, old)


def run_training(train: Callable[..., Any], config: Any, resume: str | None, bar: ProgressBar,
                 message: str = STOP_MESSAGE, *, rank0_only: bool = False) -> Any:
    """``train(config, resume=..., progress=bar, abort=...)`` under :func:`stop_on_sigint`
    (``message``, ``rank0_only``); closes ``bar`` however it ends. Returns train's result."""
    with stop_on_sigint(message, rank0_only=rank0_only) as sig:
        try:
            return train(config, resume=resume, progress=bar, abort=lambda: sig["stop"])
        finally:
            bar.close()


#: The names of model files (:func:`impasto.train.save_model`); ``-o`` naming anything else is
#: the old spelling of the run folder.
MODEL_SUFFIXES = (".pt", ".safetensors")

#: Why every ``--run`` has the alias ``--run-dir``.
RUN_DIR_NOTE = ("Under torchrun write --run-dir: torchrun's own parser (Python < 3.12) takes "
                "--run for an abbreviation of its --run-path")


def add_run_options(p: Any) -> None:
    """``--run RUN`` and ``-o MODEL.pt`` of ``gan train`` and ``classify train`` (default
    ``SUPPRESS``; see :func:`run_folder`)."""
    import argparse

    p.add_argument("--run", "--run-dir", dest="run", default=argparse.SUPPRESS, metavar="RUN",
                   help="the run folder (with --resume: the resumed one; default MODEL.run). "
                   f"{RUN_DIR_NOTE}")
    p.add_argument("-o", "--output", "--out", dest="output", default=argparse.SUPPRESS,
                   metavar="MODEL.pt",
                   help="the model file written at the end (.pt or .safetensors); the run folder "
                   "is MODEL.run unless --run is given. Deprecated: -o/--out RUN naming the run "
                   "folder (a folder, or a name without those suffixes), as before; use --run")


def run_folder(args: Any, command: str) -> None:
    """Settles ``--run`` and ``-o`` of ``command`` (``"gan train"``, ``"classify train"``):
    ``-o MODEL.pt`` (or ``.safetensors``) stays in ``args.output`` (the config's model file) and
    names the run folder ``MODEL.run`` unless ``--run`` (or ``--resume``) gives one; the old
    spelling ``-o RUN`` (an existing folder, or a name without those suffixes) names the run
    folder, with a one-line deprecation note on stderr, and leaves no ``args.output``."""
    from impasto.cli._args import default_run
    from impasto.errors import InputError

    output = getattr(args, "output", None)
    if output is None:
        return
    if Path(output).is_dir() or Path(output).suffix.lower() not in MODEL_SUFFIXES:
        del args.output
        if hasattr(args, "run"):
            raise InputError(f"{command}: give the run folder once, with --run (-o {output} "
                             "names it too, in the deprecated spelling)")
        if is_main_rank():
            print(f"impasto: warning: '{command} -o RUN' for the run folder is deprecated (-o "
                  f"names the model file, MODEL.pt); use --run {output}", file=sys.stderr)
        args.run = output
    elif not hasattr(args, "run") and args.resume is None:
        args.run = default_run(output)


def resumed_checkpoint(resume: str, *, prefix: str = "ckpt",
                       kind: str | None = None) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The checkpoint that ``--resume RESUME`` means (see :func:`impasto.train.resolve_checkpoint`
    and :func:`~impasto.train.load_checkpoint`, ``kind`` refusing other kinds): its path, its
    dict, and a copy of its saved config whose ``run`` is the folder the run continues in, the
    one given or else the checkpoint's (the run folder may have moved since)."""
    from impasto.train import load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(resume, prefix=prefix)
    ckpt = load_checkpoint(ckpt_path, kind=kind)
    base = dict(ckpt.get("config") or {})
    base["run"] = str(Path(resume) if Path(resume).is_dir() else ckpt_path.parent)
    return ckpt_path, ckpt, base


def resumed_config(cls: type, given: Mapping[str, Any], resume: str, *, prefix: str = "ckpt",
                   check_kind: Callable[[Path, str, dict[str, Any]], None],
                   resets: Mapping[str, Sequence[str]] | None = None,
                   fixed: Mapping[str, tuple[str, str]] | None = None) -> tuple[Any, str]:
    """The config ``cls`` of ``--resume RESUME``: the run's saved settings (see
    :func:`resumed_checkpoint`) overridden by the options ``given``, and the checkpoint's
    path. ``check_kind(path, kind, settings)`` refuses a checkpoint of another kind;
    ``resets`` maps an option to the saved settings it drops when given (a new length
    replaces the old; a new optimiser takes its own defaults); ``fixed`` maps the settings
    that cannot change on resume to (option, why): one given with another value than the
    run's is refused. The settings that the options change are listed in one line on stderr
    (rank 0): :func:`changed_settings`."""
    from impasto.errors import InputError
    from impasto.train import config_from_dict, config_to_dict

    ckpt_path, ckpt, base = resumed_checkpoint(resume, prefix=prefix)
    check_kind(ckpt_path, ckpt["kind"], {**base, **given})
    saved = dict(base)
    for option, dropped in (resets or {}).items():
        if option in given:
            for key in dropped:
                base.pop(key, None)
    config = config_from_dict(cls, {**base, **given}, source=str(ckpt_path))
    now = config_to_dict(config)
    for key, (option, why) in (fixed or {}).items():
        if key in given and key in saved and now[key] != saved[key]:
            raise InputError(f"{option} cannot change on --resume ({why}): the run's is "
                             f"{_show(saved[key])}; start a new run for {_show(now[key])}")
    note = changed_settings(saved, config)
    if note and is_main_rank():
        from impasto.errors import escape_line

        print(escape_line(f"impasto: resuming {ckpt_path} (step {ckpt.get('step')}) with "
                          f"changed settings: {note}"), file=sys.stderr)
    return config, str(ckpt_path)


def changed_settings(saved: Mapping[str, Any], config: Any) -> str:
    """``"steps 4 -> 6, lr 0.001 -> 0.0005"``: the fields of the dataclass ``config`` whose
    value differs from the ``saved`` settings (a run's ``config.json``), in field order; ""
    when none does. ``run`` is left out (the folder may have moved)."""
    from impasto.train import config_to_dict

    now = config_to_dict(config)
    return ", ".join(f"{key} {_show(saved.get(key))} -> {_show(value)}"
                     for key, value in now.items()
                     if key != "run" and key in saved and saved[key] != value)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
