"""``impasto stylize``: every option of one method given to another is refused with one line
naming the method it belongs to (exit 2, before any file is read); Gatys on a video checks
its output name before reading the video; the help states each option's default once and the
Gatys schedule rule. No files are needed: the refusals come before anything is loaded."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from impasto.cli import build_parser, main
from impasto.cli._args import refuse_foreign
from impasto.cli.stylize import METHOD_OPTIONS

GATYS = "Gatys (the default method)"
FAST = "per-style networks (--model)"
ADAIN = "AdaIN (--method adain)"
INSTANT = "instant styles (--method instant, --preset)"

BASE = {
    "gatys": ["stylize", "c.png", "-s", "s.png"],
    "fast": ["stylize", "c.png", "--model", "m.pt"],
    "adain": ["stylize", "c.png", "--method", "adain", "--decoder", "d.pt", "-s", "s.png"],
    "instant": ["stylize", "c.png", "--method", "instant", "-s", "s.png"],
}

# Each method-specific option with a valid value, and the methods it belongs to.
OPTIONS = {
    "--style-scale": (["2"], {"gatys"}),
    "--scales": (["2"], {"gatys"}),
    "--iterations": (["5"], {"gatys"}),
    "--content-weight": (["1"], {"gatys"}),
    "--style-weight": (["1"], {"gatys"}),
    "--tv-weight": (["0"], {"gatys"}),
    "--content-layers": (["relu1_1"], {"gatys"}),
    "--style-layers": (["relu1_1"], {"gatys"}),
    "--content-layer-weights": (["1"], {"gatys"}),
    "--style-layer-weights": (["1"], {"gatys"}),
    "--init": (["noise"], {"gatys"}),
    "--optimizer": (["adam"], {"gatys"}),
    "--lr": (["0.1"], {"gatys"}),
    "--lbfgs-history": (["5"], {"gatys"}),
    "--pooling": (["avg"], {"gatys"}),
    "--seed": (["1"], {"gatys"}),
    "--save-every": (["5"], {"gatys"}),
    "--vgg": (["torchvision"], {"gatys"}),
    "--temporal-weight": (["10"], {"gatys"}),
    "--frame-iterations": (["5"], {"gatys"}),
    "--tileable": (["x"], {"gatys"}),
    "--preview-repeat": ([], {"gatys"}),
    "--style-blend-weights": (["1"], {"gatys", "adain", "instant"}),
    "--strength": (["0.5"], {"instant"}),
    "--vgg-weights": (["w.pth"], {"gatys", "adain"}),
    "--alpha": (["0.5"], {"adain"}),
    "--mask": (["m.png"], {"gatys", "adain", "instant"}),
    "--style-size": (["64"], {"adain"}),
    "--batch-size": (["2"], {"fast", "adain", "instant"}),
    "--temporal": (["0.5"], {"fast", "adain", "instant"}),
    "--tile": (["64"], {"gatys", "fast", "adain", "instant"}),
    "--compile": ([], {"fast", "adain"}),
    "--export": (["onnx"], {"fast", "adain", "instant"}),
}
# Options every method takes, or that choose the method.
EVERY_METHOD = {"-s", "-o", "--size", "--max-pixels", "--preserve-color", "--device",
                "--precision", "-q", "--model", "--method", "--decoder", "--preset",
                "--keep-mask"}

NAMES = {"gatys": GATYS, "fast": FAST, "adain": ADAIN, "instant": INSTANT}
# The refusals that keep their own wording (they name the method as well).
OWN_WORDS = {("gatys", "--export"): "--export needs a network: --model FILE or --method adain"}


def _table():
    """(method, option, expected fragment) for every option a method refuses."""
    rows = []
    for method in BASE:
        for flag, (_, owners) in OPTIONS.items():
            if method in owners:
                continue
            names = [NAMES[m] for m in NAMES if m in owners]
            owner_names = (names[0] if len(names) == 1
                           else f"{', '.join(names[:-1])} and {names[-1]}")
            expected = OWN_WORDS.get((method, flag),
                                     f"{flag} applies to {owner_names}, not to {NAMES[method]}")
            rows.append((method, flag, expected))
    return rows


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _one_line_error(argv: list[str], tmp_path) -> str:
    out = tmp_path / "o.png"
    rc, stdout, stderr = _run([*argv, "-o", str(out)])
    line = stderr.strip()
    assert rc == 2, stderr
    assert line and "\n" not in line and "Traceback" not in stderr and stdout == ""
    assert not out.exists()
    return line


def test_the_table_covers_every_stylize_option():
    parser = next(a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction)).choices["stylize"]
    flags = {a.option_strings[0] for a in parser._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)}
    assert flags == set(OPTIONS) | EVERY_METHOD
    # 22 Gatys-only options refused by 3 methods, --style-blend-weights by 1, --vgg-weights by
    # 2, --mask by 1, --alpha and --style-size by 3, --strength by 3, --batch-size and
    # --temporal by 1, --compile by 2, --export by 1
    assert len(_table()) == 22 * 3 + 1 + 2 + 1 + 2 * 3 + 3 + 2 * 1 + 2 + 1


@pytest.mark.parametrize("method, flag, expected", _table())
def test_an_option_of_another_method_is_refused(method, flag, expected, tmp_path):
    line = _one_line_error([*BASE[method], flag, *OPTIONS[flag][0]], tmp_path)
    assert expected in line


@pytest.mark.parametrize("method", list(BASE))
def test_a_method_accepts_its_own_options(method):
    parser = build_parser()
    for flag, (value, owners) in OPTIONS.items():
        if method in owners:
            args = parser.parse_args([*BASE[method], flag, *value])
            refuse_foreign(args, method, METHOD_OPTIONS)  # no error


@pytest.mark.parametrize("output, expected", [
    ("out.mp4", "clip.mp4: video file not found"),
    ("out.png", "out.png: a video needs a video output"),
])
def test_gatys_on_a_video_checks_the_output_then_the_video(output, expected, tmp_path):
    rc, stdout, stderr = _run(["stylize", str(tmp_path / "clip.mp4"), "-s", "s.png", "-o",
                               str(tmp_path / output)])
    line = stderr.strip()
    assert rc == 2 and "\n" not in line and stdout == ""
    assert expected in line
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("flag, value", [("--temporal-weight", "10"),
                                         ("--frame-iterations", "5")])
def test_the_video_options_are_refused_for_an_image(flag, value, tmp_path):
    line = _one_line_error([*BASE["gatys"], flag, value], tmp_path)
    assert f"{flag} applies to a video input only" in line


def test_help_states_each_default_once_and_the_schedule():
    parser = next(a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction)).choices["stylize"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        assert action.help, f"{action.option_strings[0]} has no help"
        assert action.help.count("default") <= 1, action.help
    text = parser.format_help()
    assert "(default: None)" not in text  # argparse's own default suffix, added a second time
    flat = " ".join(text.split())
    for phrase in ("content loss weight (default 5)", "style loss weight (default 100)",
                   "L-BFGS or Adam (default lbfgs)", "on neural-style's scale",
                   ("100 iterations at each coarse scale and 150 at full size, with L-BFGS or "
                    "Adam: 150 at 128 px")):
        assert phrase in flat, phrase
