"""The divergence drill (#13): training pushed over the edge with absurd learning rates. The
guard must stop with exit status 1 and one line, every checkpoint left behind must be good
(finite weights and buffers, finite validation loss), the line must say which is the last
good one or that there is none yet, and the logs must stay valid JSON. Before the fix a
DCGAN's batch-norm variance overflowed to inf while its losses stayed finite (checkpoints full
of inf, an all-black grid, exit 0), and a classifier's checkpoint was written with a NaN
validation loss and weights at 1e29.
"""

from __future__ import annotations

from pathlib import Path

import drillkit
import numpy as np
import pytest
from drillkit import CLS_TINY, GAN_TINY, cli, one_line, strict_json_lines
from PIL import Image

from impasto.train import load_checkpoint

drill_world = drillkit.drill_world  # a fixture
pytestmark = pytest.mark.usefixtures("one_thread")


def _all_checkpoints_good(run: Path) -> list[Path]:
    """Every checkpoint of ``run`` loads (checksum and finite check) and so does best.pt."""
    ckpts = sorted(run.glob("ckpt-*.pt")) + sorted(run.glob("best.pt"))
    for c in ckpts:
        load_checkpoint(c)
    return ckpts


@pytest.mark.parametrize("arch, extra", [
    ("dcgan", ["--lr", "1e8"]),
    ("sngan", ["--lr", "1e4", "--d-steps", "1"]),
])
def test_gan_lr_overflow(arch, extra, drill_world, tmp_path):
    run = tmp_path / "run"
    rc, out, err = cli(["gan", "train", drill_world.images, "--run", run, "--arch", arch,
                        "--steps", "12", "--ckpt-every", "1", *extra, *GAN_TINY])
    assert rc == 1, err  # diverged, and said so
    line = one_line(err)
    assert "became" in line and "at step" in line, line
    ckpts = _all_checkpoints_good(run)
    assert ckpts, "the run wrote no checkpoint before it diverged"
    assert f"the last good checkpoint ({ckpts[-1]}) is kept" in line, line
    rows = strict_json_lines(run / "stats.jsonl")
    assert rows and all(r["step"] <= int(ckpts[-1].stem.split("-")[1]) + 1 for r in rows)
    # sampling the run gives images, or refuses: never NaN written as an all-black grid
    grid = tmp_path / "grid.png"
    rc, out, err = cli(["gan", "sample", run, "--grid", grid, "-n", "4", "--device", "cpu", "-q"])
    if rc == 0:
        assert np.asarray(Image.open(grid)).std() > 0
    else:
        assert rc == 2 and "outputs are NaN or infinite" in one_line(err), err
        assert not grid.exists()


def test_gan_diverging_before_the_first_checkpoint(drill_world, tmp_path):
    run = tmp_path / "run"
    rc, out, err = cli(["gan", "train", drill_world.images, "--run", run, "--steps", "12",
                        "--ckpt-every", "0", "--lr", "1e8", *GAN_TINY])
    assert rc == 1, err
    line = one_line(err)
    assert line.endswith("no checkpoint had been written yet"), line
    assert "last good checkpoint" not in line
    assert not list(run.glob("*.pt"))


def test_classifier_nan_validation_loss(drill_world, tmp_path):
    run = tmp_path / "run"
    rc, out, err = cli(["classify", "train", drill_world.digits, "--run", run, "--lr", "1e30",
                        "--schedule", "constant", "--eval-every", "1", "--steps", "6", *CLS_TINY])
    assert rc == 1, err
    line = one_line(err)
    # the first evaluation's loss was already NaN: no checkpoint may carry it
    assert "'val_loss' became nan at step 1; no checkpoint had been written yet" in line, line
    assert _all_checkpoints_good(run) == []
    assert not (run / "best.json").exists()
    rows = strict_json_lines(run / "stats.jsonl")  # NaN written as a string: valid JSON
    assert rows[-1]["step"] == 1 and rows[-1]["val_loss"] == "nan", rows  # the evaluation
    rc, out, err = cli(["classify", "eval", run, drill_world.digits, "--latest"])
    assert rc == 2 and "no checkpoint" in one_line(err), err


def test_classifier_diverging_after_a_good_checkpoint(drill_world, tmp_path):
    """A sane first stretch, then --resume with an absurd rate: the guard keeps the good
    checkpoint and names it; evaluating the run uses it."""
    run = tmp_path / "run"
    assert cli(["classify", "train", drill_world.digits, "--run", run, "--steps", "2",
                "--eval-every", "2", *CLS_TINY])[0] == 0
    rc, out, err = cli(["classify", "train", "--resume", run, "--steps", "8", "--lr", "1e30",
                        "--schedule", "constant", "--eval-every", "1", *CLS_TINY])
    assert rc == 1, err
    line = one_line(err.split("\n", 1)[1])  # after the "resuming ... changed settings" line
    assert f"the last good checkpoint ({run / 'ckpt-000000002.pt'}) is kept" in line, line
    assert [c.name for c in _all_checkpoints_good(run)] == ["ckpt-000000002.pt", "best.pt"]
    rc, out, err = cli(["classify", "eval", run, drill_world.digits, "--latest", "-q"])
    assert rc == 0 and "mean loss nan" not in out, err
