"""``impasto metrics``: an option of one metric given to another is refused with one line naming
the metrics it belongs to (exit 2), before any set is opened; ``metrics nst`` refuses the FID's
options for a single output. No image sets are needed: the refusals come first."""

from __future__ import annotations

import argparse

import pytest

from impasto.cli import build_parser, main
from impasto.cli._args import refuse_foreign
from impasto.cli.metrics import METRIC_OPTIONS, NST_OPTIONS

METRICS = ("fid", "kid", "is", "pr", "swd", "all")
NETWORK = {"fid", "kid", "is", "pr", "all"}

# Each metric-specific option with a valid value, and the metrics it belongs to.
OPTIONS = {
    "--kid-subsets": (["5"], {"kid", "all"}),
    "--kid-subset-size": (["5"], {"kid", "all"}),
    "--splits": (["2"], {"is", "all"}),
    "--k": (["2"], {"pr", "all"}),
    "--fid-eps": (["1e-5"], {"fid", "all"}),
    "--extractor": (["pixelstats"], NETWORK),
    "--weights": (["w.pth"], NETWORK),
}
# Options every metric takes.
EVERY_METRIC = {"-n", "--seed", "--batch-size", "--device", "--json", "--save-stats",
                "--stats-only", "-q"}


def _table():
    """(metric, option, expected fragment) for every option a metric refuses."""
    rows = []
    for metric in METRICS:
        for flag, (_, owners) in OPTIONS.items():
            if metric not in owners:
                names = [f"metrics {m}" for m in METRICS if m in owners]
                names = names[0] if len(names) == 1 else \
                    f"{', '.join(names[:-1])} and {names[-1]}"
                rows.append((metric, flag,
                             f"metrics: {flag} applies to {names}, not to metrics {metric}"))
    return rows


def _subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {a.option_strings[0] for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)}


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(["metrics", *argv])
    out, err = capsys.readouterr()
    line = err.strip()
    assert rc == 2, err
    assert line and "\n" not in line and "Traceback" not in err and out == ""
    return line


@pytest.mark.parametrize("metric", METRICS)
def test_the_table_covers_every_metrics_option(metric):
    parser = _subparser("metrics", metric)
    assert _flags(parser) == set(OPTIONS) | EVERY_METRIC
    assert {flag for flag, _ in METRIC_OPTIONS.only.values()} == set(OPTIONS)
    for dest in METRIC_OPTIONS.only:  # given is known
        assert next(a for a in parser._actions if a.dest == dest).default is argparse.SUPPRESS
    assert len(_table()) == 2 * 4 + 3 * 4 + 2 * 1  # 22 refusals


@pytest.mark.parametrize("metric, flag, expected", _table())
def test_an_option_of_another_metric_is_refused(metric, flag, expected, capsys, tmp_path):
    out = tmp_path / "out.json"
    line = _one_line_error(capsys, [metric, "nowhere-a", "nowhere-b", flag, *OPTIONS[flag][0],
                                    "--json", str(out)])
    assert expected in line
    assert not out.exists()


@pytest.mark.parametrize("metric", METRICS)
def test_a_metric_accepts_its_own_options(metric):
    for flag, (value, owners) in OPTIONS.items():
        if metric in owners:
            args = _subparser("metrics", metric).parse_args(["a", "b", flag, *value])
            refuse_foreign(args, metric, METRIC_OPTIONS)  # no error


def test_swd_takes_an_extractor_to_save_real_s_encoding(capsys, tmp_path):
    """``metrics swd REAL FAKE --save-stats`` encodes REAL: there --extractor applies."""
    line = _one_line_error(capsys, ["swd", str(tmp_path / "a"), str(tmp_path / "b"),
                                    "--extractor", "pixelstats", "--save-stats",
                                    str(tmp_path / "s.npz")])
    assert "--extractor" not in line  # it got as far as opening the sets


NST_EVERY = {"--size", "--vgg-weights", "--device", "--json", "-q"}


@pytest.mark.parametrize("flag, value", [("--extractor", "vgg19"), ("--weights", "w.pth")])
def test_nst_refuses_the_fid_options_for_one_output(flag, value, capsys, tmp_path):
    image = tmp_path / "o.png"
    image.write_bytes(b"")  # the refusal comes before the image is read
    line = _one_line_error(capsys, ["nst", str(image), "c.png", "s.png", flag, value])
    assert (f"metrics nst: {flag} applies to sets (OUTPUT a folder), not to a single OUTPUT "
            "image (it has no FID)") in line


def test_the_nst_table_covers_every_nst_option():
    assert _flags(_subparser("metrics", "nst")) == {"--extractor", "--weights"} | NST_EVERY
    assert {flag for flag, _ in NST_OPTIONS.only.values()} == {"--extractor", "--weights"}
