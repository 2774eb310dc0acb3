"""``impasto classify``: an option of another architecture, of the other kind of validation, or
``--latest`` for a checkpoint file is refused with one line naming what it belongs to (exit 2),
before any data is read; with --resume the run's architecture and validation decide."""

from __future__ import annotations

import argparse

import pytest

from impasto.cli import build_parser, main
from impasto.cli._args import refuse_foreign
from impasto.cli.classify import ARCH_OPTIONS, SOURCE_OPTIONS, VAL_OPTIONS
from impasto.train import save_checkpoint

SPLIT = "a validation share split off DATA (no --val-data)"
VAL_DATA = "a separate validation set (--val-data)"

# (method-choosing arguments, option with a value, expected fragment) for every refusal.
TRAIN = [
    (["--arch", "lenet"], ["--blocks", "2"],
     "classify train: --blocks applies to --arch resnet, not to --arch lenet"),
    ([], ["--blocks", "2"],  # lenet is the default
     "classify train: --blocks applies to --arch resnet, not to --arch lenet"),
    ([], ["--val-labels", "v.npy"],
     f"classify train: --val-labels applies to {VAL_DATA}, not to {SPLIT}"),
    (["--val-data", "v"], ["--val-split", "0.2"],
     f"classify train: --val-split applies to {SPLIT}, not to {VAL_DATA}"),
]
# Options every architecture and validation takes, or that choose them.
EVERY = {
    "--run", "-o", "--resume", "--labels", "--val-data", "--arch", "--image-size", "--channels",
    "--width", "--dropout", "--crop-pad", "--hflip", "--optimizer", "--lr", "--momentum",
    "--weight-decay", "--schedule", "--warmup", "--label-smoothing", "--batch-size", "--epochs",
    "--steps", "--device", "--precision", "--channels-last", "--deterministic", "--seed",
    "--workers", "--log-every", "--ckpt-every", "--keep-last", "--no-tensorboard", "-q",
    "--eval-every",
}


def _subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    line = err.strip()
    assert rc == 2, err
    assert line and "\n" not in line and "Traceback" not in err and out == ""
    return line


def test_the_tables_cover_every_classify_train_option():
    parser = _subparser("classify", "train")
    flags = {a.option_strings[0] for a in parser._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)}
    specific = {flag for t in (ARCH_OPTIONS, VAL_OPTIONS) for flag, _ in t.only.values()}
    assert specific == {"--blocks", "--val-split", "--val-labels"}
    assert flags == specific | EVERY
    assert {tuple(option) for _, option, _ in TRAIN} >= {("--blocks", "2"),
                                                          ("--val-labels", "v.npy"),
                                                          ("--val-split", "0.2")}


@pytest.mark.parametrize("choose, option, expected", TRAIN)
def test_classify_train_refuses_options_of_another_method(choose, option, expected, capsys,
                                                          tmp_path):
    run = tmp_path / "run"
    line = _one_line_error(capsys, ["classify", "train", str(tmp_path / "no-data"), "--run",
                                    str(run), *choose, *option])
    assert expected in line
    assert not run.exists()


def test_classify_train_accepts_each_methods_own_options():
    parser = _subparser("classify", "train")
    refuse_foreign(parser.parse_args(["d", "--arch", "resnet", "--blocks", "3"]), "resnet",
                   ARCH_OPTIONS)
    refuse_foreign(parser.parse_args(["d", "--val-split", "0.2"]), "split", VAL_OPTIONS)
    refuse_foreign(parser.parse_args(["d", "--val-data", "v", "--val-labels", "l"]),
                   "val_data", VAL_OPTIONS)


@pytest.mark.parametrize("saved, option, expected", [
    ({"arch": "lenet"}, ["--blocks", "2"], "--blocks applies to --arch resnet, not to --arch "
                                           "lenet"),
    ({"arch": "lenet", "val_data": "v"}, ["--val-split", "0.3"],
     f"--val-split applies to {SPLIT}, not to {VAL_DATA}"),
])
def test_on_resume_the_runs_settings_decide(saved, option, expected, capsys, tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    save_checkpoint(run / "ckpt-000000002.pt", kind=f"classify/{saved['arch']}",
                    config={**saved, "data": "d", "run": str(run)}, step=2, images_seen=8,
                    models={}, optimizers={}, rng=False)
    assert expected in _one_line_error(capsys, ["classify", "train", "--resume", str(run),
                                                *option])


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_latest_applies_to_a_run_folder_not_a_file(command, capsys, tmp_path):
    ckpt = tmp_path / "ckpt-000000002.pt"
    save_checkpoint(ckpt, kind="classify/lenet", config={}, step=2, images_seen=8, models={},
                    optimizers={}, rng=False)
    line = _one_line_error(capsys, ["classify", command, str(ckpt), "x.png", "--latest"])
    assert (f"classify {command}: --latest applies to a run folder, not to a checkpoint or "
            "model file") in line
    assert {flag for flag, _ in SOURCE_OPTIONS[command].only.values()} == {"--latest"}
    # a run folder takes it
    (tmp_path / "run").mkdir()
    line = _one_line_error(capsys, ["classify", command, str(tmp_path / "run"), "x.png",
                                    "--latest"])
    assert "applies to" not in line  # it got as far as the images or the checkpoint
