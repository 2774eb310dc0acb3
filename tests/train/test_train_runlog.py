"""RunLogger: stats.jsonl lines with the values, TensorBoard events, PNG grids, rank != 0 silent."""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import impasto.train.runlog as runlog
from impasto.errors import InputError
from impasto.train import RunLogger, read_stats

pytest.importorskip("tensorboard")  # installed for the tests


def _events(folder):
    return sorted(folder.glob("events.out.tfevents.*"))


def test_scalars_go_to_stats_jsonl_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t0 = time.time()
    with RunLogger(tmp_path / "run") as logger:
        assert logger.tensorboard
        for i in range(5):
            logger.scalars(
                10 * i, {"d_loss": torch.tensor(0.5 * i), "g_loss": 1.0 - i, "lr": np.float32(0.25)}
            )
            # each line is on disk as soon as it is logged
            assert len((tmp_path / "run" / "stats.jsonl").read_text().splitlines()) == i + 1
    rows = read_stats(tmp_path / "run" / "stats.jsonl")
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
    assert [r["d_loss"] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [r["g_loss"] for r in rows] == [1.0, 0.0, -1.0, -2.0, -3.0]
    assert all(r["lr"] == 0.25 for r in rows)
    times = [r["time"] for r in rows]
    assert times == sorted(times) and t0 - 1 <= times[0] <= time.time() + 1
    assert read_stats(tmp_path / "run") == rows  # a run folder works too

    events = _events(tmp_path / "run")
    assert events
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("d_loss")]
    assert got == [(0, 0.0), (10, 0.5), (20, 1.0), (30, 1.5), (40, 2.0)]


def test_images_grid_to_tensorboard_and_png(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    batch = -torch.ones(4, 3, 8, 8)
    batch[0] = 1.0  # first image white, the others black (range [-1, 1])
    with RunLogger(tmp_path) as logger:
        grid = logger.images(7, "samples/fixed", batch, nrow=2, save_png=True)
    assert grid.shape == (3, 22, 22)  # 2 x 2 images of 8 px with 2 px padding
    png = tmp_path / "images" / "samples_fixed-000000007.png"
    img = np.asarray(Image.open(png))
    assert img.shape == (22, 22, 3)
    assert (img[2:10, 2:10] == 255).all()  # white image
    assert (img[2:10, 12:20] == 0).all()  # black image
    assert (img[0, :] == 0).all()  # padding
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    (event,) = acc.Images("samples/fixed")
    assert (event.step, event.width, event.height) == (7, 22, 22)


def test_images_in_zero_one_and_grey(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        grid = logger.images(0, "x", torch.full((2, 1, 4, 4), 0.5), nrow=2)
    assert grid.shape == (3, 8, 14) and grid[:, 2, 2].tolist() == [0.5, 0.5, 0.5]


def test_other_ranks_write_nothing(tmp_path):
    folder = tmp_path / "run"
    logger = RunLogger(folder, rank=1)
    logger.scalars(1, {"loss": 1.0})
    assert logger.images(1, "x", torch.zeros(1, 3, 4, 4), save_png=True) is None
    logger.close()
    assert not folder.exists()


def test_without_tensorboard_warns_once_and_still_writes_stats(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(runlog, "_warned_no_tensorboard", False)
    with caplog.at_level(logging.WARNING, logger="impasto.train.runlog"):
        for name in ("a", "b"):
            with RunLogger(tmp_path / name) as logger:
                assert not logger.tensorboard
                logger.scalars(1, {"loss": 2.0})
    warnings = [r for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1
    assert (
        read_stats(tmp_path / "a")[0]["loss"] == 2.0
        and read_stats(tmp_path / "b")[0]["loss"] == 2.0
    )
    assert not _events(tmp_path / "a")


def test_resume_drops_lines_after_the_checkpoint_step(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        for step in range(1, 6):
            logger.scalars(step, {"loss": float(step)})
    with RunLogger(tmp_path, tensorboard=False, resume_step=3) as logger:
        assert [r["step"] for r in read_stats(tmp_path)] == [1, 2, 3]
        logger.scalars(4, {"loss": 40.0})
    assert [(r["step"], r["loss"]) for r in read_stats(tmp_path)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
    ]


def test_read_stats_skips_a_cut_last_line_and_names_bad_lines(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": float("nan")}) + "\n" + '{"step": 2, "lo')
    rows = read_stats(path)
    assert len(rows) == 1 and rows[0]["step"] == 1 and np.isnan(rows[0]["loss"])
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(InputError, match=r"stats\.jsonl: line 2 is not a JSON object"):
        read_stats(path)
    with pytest.raises(InputError, match="not found"):
        read_stats(tmp_path / "missing.jsonl")


def test_bad_scalars_are_refused(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        with pytest.raises(ValueError, match="reserved"):
            logger.scalars(1, {"step": 1.0})
        with pytest.raises(ValueError, match="shape"):
            logger.scalars(1, {"loss": torch.zeros(2)})
        with pytest.raises(TypeError, match="not a number"):
            logger.scalars(1, {"loss": "low"})
    assert read_stats(tmp_path) == []
