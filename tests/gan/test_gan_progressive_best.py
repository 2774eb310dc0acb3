"""The tracked metric of progressive runs: SWD of G_ema at the target resolution, measured only
in the target's stable phase, logged, and ``best.pt`` kept at its lowest value; measuring does
not change the training, and a resume keeps the best value.

Tiny networks (widths 16, 16, 8; z 16) on 36 synthetic grey 16x16 images, deterministic fp32
on CPU. The schedule (as in test_gan_progressive.py) runs 4 steps stable at 4x4, 6 fading in
8x8, 4 stable, 12 fading in 16x16 and 8 stable at 16x16: 34 steps, the target's stable phase
being steps 27 to 34. With ``metric_every=4`` the due steps are 4, 8, ..., 32 and the end, 34;
only 28, 32 and 34 fall in that phase.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same_checkpoints, blobs
from test_gan_progressive import N_IMAGES, TOTAL_STEPS, config
from impasto.cli import main
from impasto.data import open_dataset
from impasto.errors import InputError
from impasto.gan.progressive import (
    generator_from_checkpoint,
    train,
)
from impasto.gan.common import metric_reference, tracked_metric
from impasto.train import load_checkpoint, read_stats

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET_STABLE = range(27, 35)  # the steps of the 16x16 stable phase
MEASURED = [28, 32, 34]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pgbest") / "blobs.npz"
    np.savez(path, images=blobs(N_IMAGES))
    return str(path)


MEASURE = dict(metric="swd", metric_every=4, metric_samples=16)


@pytest.fixture(scope="module")
def measured(data, tmp_path_factory):
    """The whole run with the metric on."""
    run = tmp_path_factory.mktemp("pgbest") / "measured"
    return train(config(data, run, **MEASURE))


def metric_rows(run: Path) -> list[dict]:
    return [r for r in read_stats(run) if "metric/swd" in r]


def test_measured_only_at_the_stable_target_resolution(measured):
    rows = read_stats(measured.run)
    assert measured.step == TOTAL_STEPS
    stage = {r["step"]: r for r in rows if "resolution" in r}
    assert len(stage) == TOTAL_STEPS
    got = [r["step"] for r in metric_rows(measured.run)]
    assert got == MEASURED
    for s in got:
        assert (stage[s]["resolution"], stage[s]["fading"], stage[s]["alpha"]) == (16, 0, 1.0)
    # steps 4 to 24 were due too, but at 4x4, 8x8 or fading in 16x16 (the 16x16 fade is
    # steps 15 to 26: 16, 20 and 24 were due there and left out)
    assert [s for s in range(4, 25, 4) if stage[s]["resolution"] == 16] == [16, 20, 24]
    assert all(stage[s]["fading"] == 1 for s in (16, 20, 24))
    assert all(s in TARGET_STABLE for s in got)


def test_best_checkpoint_holds_the_lowest_value(measured):
    run = measured.run
    rows = metric_rows(run)
    values = [r["metric/swd"] for r in rows]
    assert all(v > 0 and np.isfinite(v) for v in values)
    assert len(set(values)) == len(values)  # the generator changed between measurements
    best = json.loads((run / "best.json").read_text())
    i = int(np.argmin(values))
    assert best["metric"] == "swd" and best["mode"] == "min"
    assert best["value"] == pytest.approx(values[i]) and best["step"] == rows[i]["step"]
    ckpt = load_checkpoint(run / "best.pt", kind="gan/pggan")
    assert ckpt["step"] == best["step"]
    assert ckpt["extra"]["best_value"] == pytest.approx(values[i])
    assert (ckpt["extra"]["stage"]["resolution"], ckpt["extra"]["stage"]["phase"]) == (16, "stable")
    # a numbered checkpoint was written at every measurement (every rank saves alike)
    names = {p.name for p in run.glob("ckpt-*.pt")}
    assert {f"ckpt-{s:09d}.pt" for s in MEASURED} <= names


def test_the_logged_value_is_the_swd_of_the_saved_generator(measured, data):
    """Recompute from best.pt's G_ema at the target resolution against the fixed reals."""
    cfg = measured.config
    ckpt = load_checkpoint(measured.run / "best.pt", kind="gan/pggan")
    G = generator_from_checkpoint(ckpt)
    assert G.stage == (16, None)
    real = metric_reference(open_dataset(data, resolution=16, channels=1), 16, cfg.seed)
    assert real.dtype == torch.uint8 and real.shape == (16, 1, 16, 16)
    again = tracked_metric(G, real, cfg, 0, torch.device("cpu"), None)
    assert again == pytest.approx(json.loads((measured.run / "best.json").read_text())["value"],
                                  rel=1e-6)
    # another generator (the raw G instead of its average) gives another value
    raw = generator_from_checkpoint(ckpt, ema=False)
    assert tracked_metric(raw, real, cfg, 0, torch.device("cpu"), None) != pytest.approx(again)


def test_measuring_does_not_change_the_training(measured, data, tmp_path):
    plain = train(config(data, tmp_path / "plain"))
    assert not (tmp_path / "plain" / "best.pt").exists()
    assert not metric_rows(tmp_path / "plain")
    a = load_checkpoint(plain.checkpoint)
    b = load_checkpoint(measured.checkpoint)
    assert a["step"] == b["step"] == TOTAL_STEPS
    assert_same_checkpoints(a, b, ("models", "optimizers", "rng"))


def test_resume_keeps_the_best_value(measured, data, tmp_path):
    run = tmp_path / "run"
    calls = []
    first = train(config(data, run, **MEASURE),
                  abort=lambda: calls.append(1) or len(calls) == 30)
    # measured at step 28 (due) and at the abort, step 30
    rows = metric_rows(run)
    assert first.aborted and [r["step"] for r in rows] == [28, 30]
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == min(r["metric/swd"] for r in rows)
    assert best["step"] == min(rows, key=lambda r: r["metric/swd"])["step"]
    at_abort = (30, rows[1]["metric/swd"])
    # A best value below any SWD: a resumed run that remembers it never replaces best.pt.
    (run / "best.json").write_text(json.dumps({**best, "value": 0.0}) + "\n")
    resumed = train(config(data, run, **MEASURE), resume=run)
    assert resumed.step == TOTAL_STEPS
    # the resumed run measures exactly what the straight one did
    def measures(folder):
        return [(r["step"], r["metric/swd"]) for r in metric_rows(folder)]

    # ... plus the measurement at the abort, which the straight run did not make
    assert measures(run) == sorted(measures(measured.run) + [at_abort])
    after = json.loads((run / "best.json").read_text())
    assert after["value"] == 0.0 and after["step"] == best["step"]
    assert load_checkpoint(run / "best.pt")["step"] == best["step"]


def test_config_checks_the_metric_settings(data, tmp_path):
    with pytest.raises(InputError, match="unknown tracked metric 'fid'; choose from '', 'swd'"):
        config(data, tmp_path / "a", metric="fid")
    with pytest.raises(InputError, match="metric_every"):
        config(data, tmp_path / "a", metric="swd", metric_every=-1)
    with pytest.raises(InputError, match="metric_samples"):
        config(data, tmp_path / "a", metric="swd", metric_samples=8)
    with pytest.raises(InputError, match="needs a target resolution of at least 16, not 8"):
        config(data, tmp_path / "a", resolution=8, widths=(16, 16), metric="swd")
    config(data, tmp_path / "a", resolution=8, widths=(16, 16))  # fine without the metric


# --------------------------------------------------------------------------------------------
# the command line

CLI = ["--arch", "pggan", "--resolution", "16", "--channels", "1", "--z-dim", "8",
       "--widths", "8,8,8", "--stable-kimg", "0.016", "--fade-kimg", "0.016", "--batch-size", "8",
       "--precision", "fp32", "--device", "cpu", "--no-tensorboard", "--deterministic", "-q"]


def test_cli_accepts_the_metric_options_for_pggan(data, tmp_path):
    # 2 steps per phase: 4 stable, 8 fade, 8 stable, 16 fade, 16 stable (steps 9 and 10)
    run = tmp_path / "run"
    assert main(["gan", "train", data, "--run", str(run), *CLI, "--metric", "swd",
                 "--metric-every", "1", "--metric-samples", "16"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["metric"], cfg["metric_every"], cfg["metric_samples"]) == ("swd", 1, 16)
    rows = metric_rows(run)
    assert [r["step"] for r in rows] == [9, 10]
    best = json.loads((run / "best.json").read_text())
    assert best["value"] == pytest.approx(min(r["metric/swd"] for r in rows))
    assert load_checkpoint(run / "best.pt", kind="gan/pggan")["step"] == best["step"]
    # --resume keeps the run's metric settings
    assert main(["gan", "train", "--resume", str(run), "--kimg", "0.096", "--precision", "fp32",
                 "--device", "cpu", "--no-tensorboard", "-q"]) == 0
    assert [r["step"] for r in metric_rows(run)] == [9, 10, 11, 12]


@pytest.mark.parametrize("options,expect", [
    (["--metric", "fid"], "invalid choice: 'fid'"),
    (["--metric", "swd", "--metric-samples", "8"], "metric_samples"),
    (["--metric", "swd", "--resolution", "8", "--widths", "8,8"],
     "metric 'swd' needs a target resolution of at least 16, not 8"),
])
def test_bad_metric_settings_exit_2(capsys, data, tmp_path, options, expect):
    run = tmp_path / "run"
    rc = main(["gan", "train", data, "--run", str(run), *CLI, *options])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], err
    assert not run.exists()
