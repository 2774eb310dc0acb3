"""The studio's Runs tab and Generate's interpolation video without a browser: the run folders of
every family with their curves, metrics and samples; damaged and partial runs give lines, not
exceptions; nothing outside --runs is read; TensorBoard starts, answers and stops, or says in
one line why not; the interpolation MP4 has the frames asked for, along the pipeline's slerp."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from studio_fixtures import SCALARS, loss_at, make_runs, make_training_runs

from impasto.errors import InputError
from impasto.web.catalog import scan
from impasto.web.runs import RunsBrowser, TensorBoard, default_scalars, plot_curves
from impasto.web.studio import Studio, StudioOptions, parse_seeds

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILY_KINDS = {"gan": "gan/dcgan", "pggan": "gan/pggan", "classify": "classify/lenet",
                "fast-style": "fast-style/transformer", "adain": "adain/decoder"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = make_runs(tmp_path_factory.mktemp("runs"))
    make_training_runs(root / "training")
    return root


@pytest.fixture(scope="module")
def catalog(runs):
    return scan(runs)


@pytest.fixture
def studio(runs, catalog, tmp_path):
    s = Studio(StudioOptions(runs=runs, max_jobs=1, device="cpu", temp_dir=tmp_path),
               catalog=catalog)
    yield s
    s.close()


def test_the_runs_table_has_every_family_and_the_damaged_runs(runs, tmp_path):
    rows = {r.name: r for r in RunsBrowser(runs).summaries()}
    assert sorted(rows) == sorted([f"training/{f}" for f in FAMILY_KINDS]
                                  + ["training/broken", "training/partial"])
    for family, kind in FAMILY_KINDS.items():
        r = rows[f"training/{family}"]
        assert (r.kind, r.step, r.note) == (kind, 6, ""), r
        assert r.updated == pytest.approx((runs / r.name / "stats.jsonl").stat().st_mtime)
    assert rows["training/gan"].total == json.loads(
        (runs / "training/gan/config.json").read_text())["steps"]
    # a long log: the table reads its end only; the whole of it when the run is shown
    long = make_training_runs(tmp_path / "long")
    with (long / "adain" / "stats.jsonl").open("a") as f:
        for step in range(7, 20001):
            f.write(json.dumps({"step": step, "loss": 1.0, "content": 0.5}) + "\n")
        f.write('{"step": 20001, "lo')  # cut short
    browser = RunsBrowser(long)
    assert {r.name: r.step for r in browser.summaries()}["adain"] == 20000
    assert len(browser.report("adain").rows) == 20000
    broken, partial = rows["training/broken"], rows["training/partial"]
    assert (broken.kind, broken.step) == ("", 2)  # the table reads the log's last good line
    assert broken.note.startswith("config.json: not valid JSON")
    assert (partial.step, partial.total, partial.note) == (
        None, 100, "no stats.jsonl: nothing logged yet")


def test_a_run_s_curves_metrics_and_samples(studio, runs):
    report, curves = studio.run_view("s", "training/gan")
    assert report.scalars == [*SCALARS["gan"], "metric/swd"]
    assert default_scalars(report.scalars) == ["d_loss", "g_loss", "metric/swd"]
    assert report.metrics == {"metric/swd": (6, pytest.approx(100 / 6))}
    assert [r["d_loss"] for r in report.rows] == [loss_at(s, 0) for s in range(1, 7)]
    (path, caption), = report.samples
    assert caption == "samples-ema, step 6" and path.name == "samples-ema-000000006.png"
    assert report.problems == [] and report.best is None
    # the curves: a PNG in the session's folder, one panel per scalar, three a row
    assert curves.parent == studio.session("s").folder
    three = Image.open(curves).convert("L")
    one = Image.open(studio.run_view("s", "training/gan", ["g_loss", "nope"])[1]).convert("L")
    assert three.size[0] == pytest.approx(3 * one.size[0], rel=0.05)
    assert three.size[1] == pytest.approx(one.size[1], rel=0.1)
    ink = (np.asarray(one) < 128).mean()
    assert 0.01 < ink < 0.3, ink  # axes, labels and a curve on a white page
    # the validation score and best checkpoint of a classifier
    report, _ = studio.run_view("s", "training/classify")
    assert report.metrics == {"val_acc": (6, 0.6)}
    assert report.best == {"metric": "val_acc", "mode": "max", "value": 0.6, "step": 6,
                           "file": "best.pt"}


def test_curves_leave_out_non_finite_values_and_use_a_log_scale(tmp_path):
    rows = [{"step": s, "loss": v} for s, v in enumerate([1e4, 1e3, float("nan"), 10.0], 1)]
    out = plot_curves(rows, ["loss"], tmp_path / "c.png")
    assert out == tmp_path / "c.png" and Image.open(out).size[0] > 100
    assert plot_curves(rows, ["missing"], tmp_path / "d.png") is None
    assert not (tmp_path / "d.png").exists()


def test_damaged_and_partial_runs_give_one_line_each(studio):
    report, curves = studio.run_view("s", "training/broken")
    assert curves is None and report.rows == []
    assert report.problems == [
        ("config.json: not valid JSON (Expecting property name enclosed in double quotes: "
         "line 1 column 14 (char 13))"),
        "stats.jsonl: line 2 is not a JSON object"]
    report, curves = studio.run_view("s", "training/partial")
    assert curves is None and report.problems == ["no stats.jsonl: nothing logged yet"]
    assert report.config == {"steps": 100}


def test_a_damaged_checkpoint_and_a_log_cut_short(runs, tmp_path):
    root = tmp_path / "runs"
    make_training_runs(root)
    (root / "gan" / "ckpt-000000003.pt").write_bytes(b"not a checkpoint")
    with (root / "gan" / "stats.jsonl").open("a") as f:
        f.write('{"step": 7, "d_lo')  # a crash half-way through a line
    report = RunsBrowser(root).report("gan")
    assert report.summary.kind == ""
    assert len(report.problems) == 1 and "ckpt-000000003.pt: unreadable checkpoint" in \
        report.problems[0]
    assert str(root) not in report.problems[0]  # no server folder in the page
    assert [r["step"] for r in report.rows] == [1, 2, 3, 4, 5, 6]


def test_tensorboard_event_files_are_found(tmp_path):
    root = make_training_runs(tmp_path / "runs")
    browser = RunsBrowser(root)
    assert not browser.has_event_files()  # the fixture's runs log without TensorBoard
    (root / "pggan" / "events.out.tfevents.1.host").write_bytes(b"")
    assert browser.has_event_files()


def test_nothing_outside_the_runs_folder_is_read(runs, tmp_path):
    browser = RunsBrowser(runs)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "stats.jsonl").write_text('{"step": 1, "secret_loss": 42.0}\n')
    (secret / "config.json").write_text('{"password": "x"}')
    Image.new("RGB", (4, 4)).save(secret / "leak-000000009.png")
    for bad in ("..", "../secret", str(secret), "training/../../secret", "", "training/nope",
                "photo.png"):
        with pytest.raises(InputError):
            browser.report(bad)
    # a run folder that is a link out is neither listed nor read
    (runs / "training" / "outside").symlink_to(secret)
    # links inside a real run that lead out are not followed
    run = tmp_path / "copy"
    make_training_runs(run)
    linked = run / "gan"
    (linked / "stats.jsonl").unlink()
    (linked / "stats.jsonl").symlink_to(secret / "stats.jsonl")
    (linked / "config.json").unlink()
    (linked / "config.json").symlink_to(secret / "config.json")
    (linked / "images" / "leak-000000009.png").symlink_to(secret / "leak-000000009.png")
    try:
        assert "training/outside" not in browser.names()
        with pytest.raises(InputError, match="outside the runs folder"):
            browser.report("training/outside")
        report = RunsBrowser(run).report("gan")
        assert report.rows == [] and report.config == {}
        assert [p.name for p, _ in report.samples] == ["samples-ema-000000006.png"]
        assert sum("outside the runs folder" in p for p in report.problems) == 3, report.problems
        assert not any("42" in p or "password" in p for p in report.problems)
    finally:
        (runs / "training" / "outside").unlink()


def test_no_runs_folder(tmp_path):
    s = Studio(StudioOptions(runs=None, max_jobs=1, device="cpu", temp_dir=tmp_path))
    try:
        assert s.runs.names() == [] and s.runs.summaries() == []
        with pytest.raises(InputError, match="no runs folder"):
            s.run_view("s", "x")
        with pytest.raises(InputError, match="no runs folder"):
            s.tensorboard.start()
    finally:
        s.close()


STAND_IN = ("import sys, http.server as h; a = sys.argv; "
            "h.HTTPServer(('127.0.0.1', int(a[a.index('--port') + 1])), "
            "h.SimpleHTTPRequestHandler).serve_forever()")


def test_tensorboard_starts_once_and_stops(runs, tmp_path):
    tb = TensorBoard(runs, tmp_path / "tb.log", command=[sys.executable, "-c", STAND_IN])
    url = tb.start()
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
    assert tb.start() == url  # one process, however often asked
    proc = tb._proc
    tb.stop()
    assert proc.poll() is not None and tb.url is None
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_tensorboard_that_cannot_start_is_one_line(runs, tmp_path):
    fails = [sys.executable, "-c",
             "import sys; print('loading'); sys.exit('ERROR: could not bind to port')"]
    with pytest.raises(InputError) as e:
        TensorBoard(runs, tmp_path / "tb.log", command=fails).start()
    assert str(e.value) == "TensorBoard could not start: ERROR: could not bind to port"
    with pytest.raises(InputError, match="could not start: .*No such file"):
        TensorBoard(runs, tmp_path / "tb.log", command=[str(tmp_path / "nope")]).start()
    slow = TensorBoard(runs, tmp_path / "tb.log", timeout=0.5,
                       command=[sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(InputError, match="did not answer within"):
        slow.start()
    assert slow._proc is None


def test_the_real_tensorboard(studio, runs):
    pytest.importorskip("tensorboard")
    url = studio.tensorboard.start()
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and b"TensorBoard" in r.read()
    proc = studio.tensorboard._proc
    studio.close()  # the studio stops it on the way out
    assert proc.poll() is not None


# --------------------------------------------------------------------------------------------
# Generate: the interpolation video


def test_seeds_from_the_page():
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds(" 7 3 ") == [7, 3]
    for bad, match in (("1", "at least two"), ("", "at least two"), ("1, x", "whole numbers"),
                       ("1, -2", "from 0")):
        with pytest.raises(InputError, match=match):
            parse_seeds(bad)


# The test DCGAN is untrained: its images hardly change with the latent (std 4e-5), so only
# the trained PGGAN's frames are compared.
@pytest.mark.parametrize("name,frames,loop", [("gans/squares.pt", 5, False),
                                              ("training/pggan", 12, True)])
def test_interpolation_video(studio, name, frames, loop):
    pytest.importorskip("imageio_ffmpeg")
    from impasto.io.video import probe_video, read_frames

    klass = "blue" if name.startswith("gans") else None
    job = studio.start_interpolation("i", name, seeds="3, 5", frames=frames, fps=6,
                                     truncation=None, class_=klass, loop=loop)
    assert job.wait(60) and job.status().state == "done", job.status()
    assert (job.status().done, job.status().total) == (frames, frames)
    r = studio.finish("i", job)
    assert r.path.parent == studio.session("i").folder and r.path.suffix == ".mp4"
    assert f"{frames} frames at 6 fps" in r.caption and "slerp" in r.caption
    info = probe_video(r.path)
    gen = studio.sampler.generator(name)
    scale = -(-256 // gen.resolution)
    assert info.size == (gen.resolution * scale,) * 2 and info.fps == 6.0
    video = torch.cat(list(read_frames(r.path)))
    assert video.shape[0] == frames
    if name == "gans/squares.pt":
        return
    # the frames move: each differs from the next, the ends differ most
    steps = (video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3))
    assert bool((steps > 1e-3).all()), steps
    # the first frame is seed 3's image (the pipeline's, enlarged; H.264 loses a little)
    want = gen(1, seed=3, class_=klass or (0 if gen.conditional else None))
    want = torch.nn.functional.interpolate(want.expand(-1, 3, -1, -1), scale_factor=scale,
                                           mode="nearest")
    first = (video[0] - want[0]).abs().mean()
    assert first < 0.05 and first < (video[frames // 2] - want[0]).abs().mean() / 2, first
    assert studio.session("i").results == []  # the gallery is for pictures


def test_interpolation_refusals_and_cancel(studio):
    pytest.importorskip("imageio_ffmpeg")
    kw = {"seeds": "1, 2", "frames": 10, "fps": 12.0, "truncation": None, "class_": None,
          "loop": False}
    for change, match in (({"seeds": "1"}, "at least two"), ({"frames": 1}, "frames"),
                          ({"frames": 601}, "frames"), ({"fps": 0.5}, "per second"),
                          ({"truncation": 9.0}, "truncation"),
                          ({"class_": "blue"}, "unconditional")):
        with pytest.raises(InputError, match=match):
            studio.start_interpolation("r", "training/pggan", **{**kw, **change})
    with pytest.raises(InputError, match="not a GAN"):
        studio.start_interpolation("r", "styles/stripes.pt", **kw)
    with pytest.raises(InputError, match="not a model"):
        studio.start_interpolation("r", "../gans/squares.pt", **kw)

    class Job:  # cancelled after its first batch of frames
        reports = 0

        def cancelled(self):
            return self.reports > 0

        def report(self, *a, **k):
            self.reports += 1

    out = studio.session("r").folder / "cancelled.mp4"
    job = Job()
    assert studio.sampler.interpolation(job, "training/pggan", seeds=[1, 2], frames=40, fps=12,
                                        truncation=None, class_=None, loop=False,
                                        out=out) is None
    assert job.reports == 1
    assert not [p for p in os.listdir(out.parent) if "cancelled" in p]
