"""``impasto demo`` (what ``make demo`` runs): its options reach :func:`impasto.demo.run`, and
without the demo extra (scikit-image) it says what to install in one line, exit status 2,
before writing anything. The demo itself (minutes of Gatys) is not run here."""

from __future__ import annotations

import sys

import pytest

import impasto.demo
from conftest import one_line_error
from impasto.cli import demo as demo_cli
from impasto.cli import main


def test_the_command_calls_the_demo_with_its_options(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(impasto.demo, "run", lambda out, **kw: calls.append((out, kw)))
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "128", "-q"]) == 0
    assert main(["demo"]) == 0
    assert calls == [
        (tmp_path / "d", {"size": 128, "style_weight": 1000.0, "quiet": True}),
        (impasto.demo.Path("demo_out"), {"size": 256, "style_weight": 1000.0, "quiet": False}),
    ]
    # the command's defaults are the module's (python -m impasto.demo)
    assert (demo_cli._OUT, demo_cli._SIZE, demo_cli._STYLE_WEIGHT) == (
        impasto.demo.DEFAULT_OUT, impasto.demo.DEFAULT_SIZE, impasto.demo.DEFAULT_STYLE_WEIGHT)


@pytest.mark.parametrize("module", ["skimage", "skimage.data"])
def test_without_scikit_image_one_line_and_status_2(monkeypatch, capsys, tmp_path, module):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    out = tmp_path / "demo_out"
    line = one_line_error(capsys, ["demo", "--out", str(out)],
                          "impasto demo needs scikit-image", out)
    assert "pip install 'impasto[demo]'" in line
    # python -m impasto.demo says the same
    assert impasto.demo.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "impasto demo needs scikit-image" in err[0]
    assert not out.exists()


def test_bad_size_is_one_line(capsys):
    one_line_error(capsys, ["demo", "--size", "0"], "--size")
