"""``impasto fast-style train``: the patch discriminator's options without the adversarial term
are refused with one line saying they belong to adversarial training (exit 2), before any
file is read; with --resume the run's adversarial weight decides."""

from __future__ import annotations

import argparse

import pytest

from impasto.cli import build_parser, main
from impasto.cli._args import refuse_foreign
from impasto.cli.fast_style import ADV_OPTIONS
from impasto.train import save_checkpoint

ADVERSARIAL = "adversarial training (--adversarial-weight > 0)"
PERCEPTUAL = "training without the adversarial term (--adversarial-weight 0, the default)"

# The discriminator's options, each with a valid value.
OPTIONS = {"--adv-loss": ["hinge"], "--adv-crop": ["32"], "--lr-d": ["1e-3"],
           "--disc-width": ["8"], "--disc-layers": ["2"], "--disc-norm": ["none"]}
# Options of every fast-style training.
EVERY = {
    "-s", "-o", "--run", "--resume", "--content-weight", "--style-weight", "--tv-weight",
    "--content-layers", "--style-layers", "--vgg", "--vgg-weights", "--adversarial-weight",
    "--size", "--style-size", "--no-hflip", "--channels", "--num-residual", "--batch-size",
    "--steps", "--lr", "--device", "--precision", "--channels-last", "--deterministic",
    "--seed", "--workers", "--log-every", "--ckpt-every", "--keep-last", "--no-tensorboard",
    "-q", "--sample-every",
}
# How the run trains without the adversarial term: by default, or --adversarial-weight 0.
PERCEPTUAL_RUNS = {"default": [], "weight 0": ["--adversarial-weight", "0"]}


def _parser() -> argparse.ArgumentParser:
    fast = next(a for a in build_parser()._actions
                if isinstance(a, argparse._SubParsersAction)).choices["fast-style"]
    return next(a for a in fast._actions
                if isinstance(a, argparse._SubParsersAction)).choices["train"]


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(["fast-style", "train", *argv])
    out, err = capsys.readouterr()
    line = err.strip()
    assert rc == 2, err
    assert line and "\n" not in line and "Traceback" not in err and out == ""
    return line


def test_the_table_covers_every_fast_style_train_option():
    flags = {a.option_strings[0] for a in _parser()._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)}
    assert flags == set(OPTIONS) | EVERY
    assert {flag for flag, _ in ADV_OPTIONS.only.values()} == set(OPTIONS)


@pytest.mark.parametrize("how", PERCEPTUAL_RUNS)
@pytest.mark.parametrize("flag", OPTIONS)
def test_discriminator_options_need_the_adversarial_term(flag, how, capsys, tmp_path):
    out = tmp_path / "m.pt"
    line = _one_line_error(capsys, [str(tmp_path / "photos"), "-s", "s.png", "-o", str(out),
                                    *PERCEPTUAL_RUNS[how], flag, *OPTIONS[flag]])
    assert f"fast-style train: {flag} applies to {ADVERSARIAL}, not to {PERCEPTUAL}" in line
    assert not out.exists() and not (tmp_path / "m.run").exists()


def test_adversarial_training_takes_them():
    argv = ["p", "--adversarial-weight", "0.1"]
    for flag, value in OPTIONS.items():
        refuse_foreign(_parser().parse_args([*argv, flag, *value]), "adversarial", ADV_OPTIONS)


@pytest.mark.parametrize("saved, extra, refused", [
    (0.0, [], True),                              # a perceptual run stays one
    (0.5, [], False),                             # an adversarial run takes them
    (0.5, ["--adversarial-weight", "0"], True),   # ... unless its term is turned off
])
def test_on_resume_the_runs_adversarial_weight_decides(saved, extra, refused, capsys, tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    save_checkpoint(run / "ckpt-000000002.pt", kind="fast-style/transformer",
                    config={"adversarial_weight": saved, "content": "c", "style": "s.png",
                            "output": "m.pt", "run": str(run)},
                    step=2, images_seen=4, models={}, optimizers={}, rng=False)
    line = _one_line_error(capsys, ["--resume", str(run), *extra, "--lr-d", "1e-3"])
    assert ("--lr-d applies to adversarial training" in line) == refused, line
