"""The command line as its own layer: building the parser imports no torch (so ``--help``,
``--version`` and argument errors answer at once), the choices and defaults it shows equal the
library's, every option of a command sets a field of the command's config by name, and no
library module imports the CLI."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import impasto
from impasto.cli import _choices, _snapshot, build_parser
from impasto.cli._args import NOT_SETTINGS, given_settings

SRC = Path(impasto.__file__).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC.parent), env.get("PYTHONPATH", "")])
    return env


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env())


def test_building_the_parser_imports_no_torch():
    proc = _python("import impasto.cli, sys; impasto.cli.build_parser(); "
                   "assert 'torch' not in sys.modules, 'torch imported'; "
                   "assert 'gradio' not in sys.modules, 'gradio imported'")
    assert proc.returncode == 0, proc.stderr


def test_help_version_and_argument_errors_import_no_torch():
    code = """
import contextlib, io, sys
from impasto.cli import main
runs = [["--help"], ["--version"], ["stylize", "--help"], ["gan", "train", "--help"],
        ["gan", "sample", "--help"], ["classify", "train", "--help"], ["metrics", "fid", "--help"],
        ["fast-style", "train", "--help"], ["adain", "train", "--help"], ["gan"],
        ["gan", "train", "--steps", "x"], ["fast-style", "train", "--style-layers", "relu9_9"],
        ["stylize", "--device", "tpu"], ["nope"], ["serve", "--help"], ["serve", "--port", "0"],
        ["serve", "--max-jobs", "0"]]
for argv in runs:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    print(" ".join(argv), rc, len(out.getvalue() + err.getvalue()) > 0)
print("torch" in sys.modules or "gradio" in sys.modules)
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "False"  # neither torch nor gradio (impasto serve) imported
    codes = {line.rsplit(" ", 2)[0]: line.rsplit(" ", 2)[1:] for line in lines[:-1]}
    assert codes["--help"] == ["0", "True"] and codes["--version"] == ["0", "True"]
    assert codes["gan train --steps x"] == ["2", "True"]
    assert codes["fast-style train --style-layers relu9_9"] == ["2", "True"]
    assert codes["stylize --device tpu"] == ["2", "True"]
    assert codes["gan"] == ["2", "True"]  # no sub-command: the help, status 2
    assert codes["serve --help"] == ["0", "True"]
    assert codes["serve --port 0"] == codes["serve --max-jobs 0"] == ["2", "True"]


def test_python_m_impasto_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "impasto", "--version"], capture_output=True,
                          text=True, timeout=120, env=_env())
    assert proc.returncode == 0 and proc.stdout.strip() == f"impasto {impasto.__version__}"


def test_choices_equal_the_library():
    # _choices.py is what _snapshot writes from the registries and configs now; when this
    # fails, run: python -m impasto.cli._snapshot
    assert Path(_choices.__file__).read_text() == _snapshot.render(_snapshot.collect())


def test_the_parser_shows_the_library_defaults_and_choices():
    from impasto.gan.config import GanTrainConfig
    from impasto.nets.gan import GAN_ARCH_REGISTRY

    gan_train = _subparser("gan", "train")
    arch = _action(gan_train, "arch")
    assert tuple(arch.choices) == GAN_ARCH_REGISTRY.names()
    assert f"(default {GanTrainConfig(data='-', run='-').z_dim})" in _action(gan_train,
                                                                              "z_dim").help


def _subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in parser._actions if a.dest == dest)


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def test_every_training_option_sets_a_config_field_by_name():
    from impasto.cli.gan_train import _PGGAN_ONLY, _SCHEDULE
    from impasto.cli.metrics import _NOT_OPTIONS
    from impasto.cli.stylize import _NOT_GATYS
    from impasto.classify.config import ClassifierTrainConfig
    from impasto.gan.config import GanTrainConfig
    from impasto.gan.progressive import PgganTrainConfig
    from impasto.metrics.evaluation import MetricOptions
    from impasto.style.adain import AdaINTrainConfig
    from impasto.style.fast import FastStyleTrainConfig
    from impasto.style.gatys import GatysConfig

    cases = [
        (("gan", "train"), _fields(GanTrainConfig), {"lr", "output", *_PGGAN_ONLY}),
        (("classify", "train"), _fields(ClassifierTrainConfig), {"output"}),
        (("fast-style", "train"), _fields(FastStyleTrainConfig), set()),
        (("adain", "train"), _fields(AdaINTrainConfig), set()),
        (("stylize",), _fields(GatysConfig), set(_NOT_GATYS)),
        (("metrics", "fid"), _fields(MetricOptions), set(_NOT_OPTIONS)),
    ]
    for names, fields, extra in cases:
        stray = _dests(_subparser(*names)) - fields - NOT_SETTINGS - extra
        assert not stray, (names, stray)
    # the pggan-only options are PgganTrainConfig fields or keys of its schedule
    pg = _fields(PgganTrainConfig)
    from impasto.gan.progressive import PgganSchedule

    schedule_keys = _fields(PgganSchedule)
    assert all(d in pg for d in _PGGAN_ONLY if d not in _SCHEDULE)
    assert {d for d in _SCHEDULE if d != "schedule_preset"} <= schedule_keys


def test_given_settings_are_by_field_name_and_refuse_strays():
    @dataclasses.dataclass
    class Config:
        lr: float = 1.0
        steps: int = 10

    args = argparse.Namespace(lr=0.5, quiet=True, func=None, resume=None)
    assert given_settings(args, Config) == {"lr": 0.5}
    with pytest.raises(TypeError, match="stepz"):
        given_settings(argparse.Namespace(stepz=3), Config)
    assert given_settings(argparse.Namespace(stepz=3), Config, exclude=("stepz",)) == {}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "impasto":
                names.update(f"impasto.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_library_module_imports_the_cli():
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if p.parent.name != "cli" and p.name != "__main__.py"
             and any(n == "impasto.cli" or n.startswith("impasto.cli.") for n in _imports(p))]
    assert users == []
