"""``impasto gan train``: every option of one architecture (or loss) given to another is refused
with one line naming the architecture it belongs to (exit 2), before any data is read; with
--resume the architecture and loss are the run's. No data is needed: the refusals come first."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from impasto.cli import build_parser, main
from impasto.cli._args import refuse_foreign
from impasto.cli.gan_train import ARCH_OPTIONS, LOSS_OPTIONS, TRACKING_OPTIONS

ARCHS = ("dcgan", "sngan", "pggan")
FIXED = {"dcgan", "sngan"}

# Each architecture-specific option with a valid value, and the architectures it belongs to.
OPTIONS = {
    "--schedule": (["cpu"], {"pggan"}),
    "--stable-kimg": (["1"], {"pggan"}),
    "--fade-kimg": (["1"], {"pggan"}),
    "--batch-sizes": (["8,8"], {"pggan"}),
    "--start-resolution": (["8"], {"pggan"}),
    "--widths": (["8,8"], {"pggan"}),
    "--fmap-base": (["64"], {"pggan"}),
    "--fmap-max": (["8"], {"pggan"}),
    "--mbstd-group": (["2"], {"pggan"}),
    "--drift-weight": (["0"], {"pggan"}),
    "--reset-optimizers": ([], {"pggan"}),
    "--base-width": (["8"], FIXED),
    "--conditional": ([], FIXED),
    "--loss": (["hinge"], FIXED),
    "--r1-gamma": (["1"], FIXED),
    "--d-steps": (["2"], FIXED),
    "--steps": (["5"], FIXED),
    "--diffaugment": (["color"], FIXED),
    "--d-norm": (["layer"], {"dcgan"}),
}
# Options every architecture takes (--gp-weight: every one with the WGAN-GP loss, and
# --metric-every, --metric-samples: every one with --metric; below).
EVERY_ARCH = {
    "--run", "-o", "--resume", "--arch", "--resolution", "--channels", "--z-dim", "--lr",
    "--lr-g", "--lr-d", "--betas", "--ema-kimg", "--ema-beta", "--ema-rampup", "--batch-size",
    "--kimg", "--hflip", "--device", "--precision", "--channels-last", "--deterministic",
    "--seed", "--workers", "--log-every", "--ckpt-every", "--keep-last", "--no-tensorboard",
    "-q", "--sample-every", "--samples", "--metric", "--metric-every", "--metric-samples",
    "--gp-weight",
}


def _table():
    """(arch, option, expected fragment) for every option an architecture refuses."""
    rows = []
    for arch in ARCHS:
        for flag, (_, owners) in OPTIONS.items():
            if arch not in owners:
                names = " and ".join(f"--arch {a}" for a in ARCHS if a in owners)
                rows.append((arch, flag, f"gan train: {flag} applies to {names}, not to "
                                         f"--arch {arch}"))
    return rows


def _parser() -> argparse.ArgumentParser:
    gan = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction)).choices["gan"]
    return next(a for a in gan._actions
                if isinstance(a, argparse._SubParsersAction)).choices["train"]


def _one_line_error(argv: list[str], tmp_path) -> str:
    run = tmp_path / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["gan", "train", str(tmp_path / "no-data"), "--run", str(run), *argv])
    line = err.getvalue().strip()
    assert rc == 2, err.getvalue()
    assert line and "\n" not in line and "Traceback" not in line and out.getvalue() == ""
    assert not run.exists()
    return line


def test_the_table_covers_every_gan_train_option():
    flags = {a.option_strings[0] for a in _parser()._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)}
    assert flags == set(OPTIONS) | EVERY_ARCH
    assert {flag for flag, _ in ARCH_OPTIONS.only.values()} == set(OPTIONS)
    assert len(_table()) == 11 * 2 + 7 * 1 + 1 * 2  # 31 refusals
    assert {flag for flag, _ in LOSS_OPTIONS.only.values()} == {"--gp-weight"}
    assert {flag for flag, _ in TRACKING_OPTIONS.only.values()} == {"--metric-every",
                                                                    "--metric-samples"}
    for dest in (*ARCH_OPTIONS.only, *LOSS_OPTIONS.only, *TRACKING_OPTIONS.only):
        assert next(a for a in _parser()._actions if a.dest == dest).default is argparse.SUPPRESS


@pytest.mark.parametrize("arch, flag, expected", _table())
def test_an_option_of_another_arch_is_refused(arch, flag, expected, tmp_path):
    line = _one_line_error(["--arch", arch, flag, *OPTIONS[flag][0]], tmp_path)
    assert expected in line


@pytest.mark.parametrize("arch", ARCHS)
def test_an_arch_accepts_its_own_options(arch):
    for flag, (value, owners) in OPTIONS.items():
        if arch in owners:
            args = _parser().parse_args(["d", "--arch", arch, flag, *value])
            refuse_foreign(args, arch, ARCH_OPTIONS)  # no error


def test_the_default_arch_is_dcgan(tmp_path):
    line = _one_line_error(["--widths", "8,8"], tmp_path)
    assert "--widths applies to --arch pggan, not to --arch dcgan" in line


@pytest.mark.parametrize("argv, loss", [
    (["--arch", "dcgan"], "nonsaturating"),  # the architectures' default losses
    (["--arch", "sngan"], "hinge"),
    (["--arch", "sngan", "--loss", "nonsaturating"], "nonsaturating"),
])
def test_gp_weight_applies_to_wgan_gp_only(argv, loss, tmp_path):
    line = _one_line_error([*argv, "--gp-weight", "5"], tmp_path)
    assert f"gan train: --gp-weight applies to --loss wgan-gp, not to --loss {loss}" in line


@pytest.mark.parametrize("argv", [["--arch", "dcgan", "--loss", "wgan-gp"],
                                  ["--arch", "pggan"]])
def test_gp_weight_is_taken_with_wgan_gp(argv, tmp_path):
    line = _one_line_error([*argv, "--gp-weight", "5"], tmp_path)
    assert "--gp-weight" not in line and "no-data" in line  # it got as far as the data


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("flag", ["--metric-every", "--metric-samples"])
def test_metric_options_need_a_tracked_metric(arch, flag, tmp_path):
    line = _one_line_error(["--arch", arch, flag, "16"], tmp_path)
    assert (f"gan train: {flag} applies to a tracked metric (--metric), not to a run without "
            "--metric") in line
    line = _one_line_error(["--arch", arch, "--metric", "swd", flag, "16"], tmp_path)
    assert "applies to" not in line and "no-data" in line  # it got as far as the data


def _checkpoint(tmp_path, arch: str, loss: str):
    from impasto.train import save_checkpoint

    run = tmp_path / "old"
    run.mkdir()
    save_checkpoint(run / "ckpt-000000004.pt", kind=f"gan/{arch}",
                    config={"arch": arch, "loss": loss, "data": "d", "run": str(run)},
                    step=4, images_seen=16, models={}, optimizers={}, rng=False)
    return run


@pytest.mark.parametrize("arch, argv, expected", [
    ("sngan", ["--d-norm", "layer"], "--d-norm applies to --arch dcgan, not to --arch sngan"),
    ("pggan", ["--loss", "hinge"], "--loss applies to --arch dcgan and --arch sngan, not to "
                                   "--arch pggan"),
    ("dcgan", ["--widths", "8,8"], "--widths applies to --arch pggan, not to --arch dcgan"),
    ("sngan", ["--gp-weight", "1"], "--gp-weight applies to --loss wgan-gp, not to --loss hinge"),
    ("dcgan", ["--metric-every", "5"], "--metric-every applies to a tracked metric"),
    ("pggan", ["--metric-samples", "64"], "--metric-samples applies to a tracked metric"),
])
def test_on_resume_the_runs_arch_and_loss_decide(arch, argv, expected, tmp_path, capsys):
    run = _checkpoint(tmp_path, arch, "wgan-gp" if arch == "pggan" else
                      {"dcgan": "nonsaturating", "sngan": "hinge"}[arch])
    assert main(["gan", "train", "--resume", str(run), *argv]) == 2
    line = capsys.readouterr().err.strip()
    assert expected in line and "\n" not in line
