"""docs/cli.md is what tools/gen_cli_reference.py makes of the current parser."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference",
                                                  ROOT / "tools" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date():
    gen = _generator()
    expected = gen.render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    if current != expected:
        old, new = current.splitlines(), expected.splitlines()
        line = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        raise AssertionError(
            f"docs/cli.md is stale (first difference at line {line + 1}: "
            f"{new[line] if line < len(new) else '<end>'!r}); regenerate it with: {gen.COMMAND}"
        )


def test_reference_lists_every_command_and_option():
    from impasto.cli import build_parser

    gen = _generator()
    text = gen.render()
    seen = 0
    stack = [build_parser()]
    while stack:
        parser = stack.pop()
        assert f"`{parser.prog}`" in text
        for action in parser._actions:
            for flag in action.option_strings:
                if action.help is not argparse.SUPPRESS and flag not in ("-h", "--help"):
                    assert f"`{flag}`" in text, (parser.prog, flag)
                    seen += 1
        stack += [sub for _, sub, _ in gen._subcommands(parser)]
    assert seen > 100  # the parser was walked, not just its top level


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    gen = _generator()
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert "run: python tools/gen_cli_reference.py" in capsys.readouterr().err
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
