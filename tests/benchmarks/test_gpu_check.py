"""benchmarks/gpu_check.py where there is no GPU: the one skip line, the timing and JSON
helpers, and ``--device cpu --smoke``, which runs every section's code on the CPU at toy
sizes (the families through the registry, a checkpoint crossing devices, ``pytest -m cuda``
collecting the cuda-marked tests, the figures), so that the check a lent GPU will run one day
cannot rot unnoticed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402

from impasto.families import FAMILIES  # noqa: E402

# pytorch/examples' dcgan/main.py as gpu_check reads it: its per-iteration lines, paced.
FAKE_EXAMPLES = """
import argparse, time
ap = argparse.ArgumentParser()
for a in ("--dataset", "--batchSize", "--imageSize", "--niter", "--workers", "--outf",
          "--manualSeed"):
    ap.add_argument(a)
ap.add_argument("--dry-run", action="store_true")
ap.add_argument("--accel", action="store_true")
o = ap.parse_args()
print(o)
for epoch in range(2):
    for i in range(6):
        time.sleep(0.02)
        print("[%d/2][%d/6] Loss_D: 1.0 Loss_G: 1.0 D(x): 0.5 D(G(z)): 0.5 / 0.5" % (epoch, i))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_prints_one_line_and_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == gpu_check.SKIP_LINE + "\n" and "Traceback" not in proc.stderr
    assert gpu_check.SKIP_LINE == "gpu_check: no CUDA device; skipped"
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_section_is_one_line_and_status_2(capsys):
    assert gpu_check.main(["--device", "cpu", "--only", "env,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown section(s) nope" in err[0]


def test_the_clock_waits_at_each_reading_and_leaves_out_paused_time():
    waits = []
    clock = gpu_check.Clock(lambda: waits.append(1))
    assert len(waits) == 1  # start() waits for the device
    time.sleep(0.05)
    with clock.paused():
        time.sleep(0.2)
    t = clock.elapsed()
    assert 0.05 <= t < 0.25 and len(waits) == 4  # paused: before and after; the reading
    assert clock.elapsed(wait=False) >= t and len(waits) == 4


def test_the_json_writer_writes_plain_strict_json_atomically(tmp_path):
    path = tmp_path / "out" / "r.json"
    gpu_check.write_json(path, {"old": 1})
    data = {"nan": math.nan, "inf": -math.inf, "t": torch.tensor([1.5, 2.0]),
            "n": torch.tensor(3), "p": tmp_path, "nested": [{"x": (1, math.inf)}]}
    gpu_check.write_json(path, data)
    got = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert got == {"nan": "nan", "inf": "-inf", "t": [1.5, 2.0], "n": 3, "p": str(tmp_path),
                   "nested": [{"x": [1, "inf"]}]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left


def test_the_inception_helper_falls_back_to_random_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("IMPASTO_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    ext, weights = gpu_check.inception("cpu")
    assert weights == "random" and ext.feature_dim == 2048 and ext.device.type == "cpu"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One ``--device cpu --smoke`` run of every section (a fake pytorch/examples script);
    its status, its JSON and what it printed."""
    out = tmp_path_factory.mktemp("gpu_check")
    fake = out / "fake_main.py"
    fake.write_text(FAKE_EXAMPLES)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import contextlib
        import io

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            rc = gpu_check.main(["--device", "cpu", "--smoke", "--out", str(out),
                                 "--dcgan-main", str(fake)])
    finally:
        torch.set_num_threads(saved)
    data = json.loads((out / "gpu_check.json").read_text())
    return rc, data, printed.getvalue(), out


def test_the_smoke_run_passes_every_section(smoke):
    rc, data, printed, _ = smoke
    assert data["failures"] == [] and rc == 0, data["failures"]
    assert set(data["sections"]) == set(gpu_check.SECTIONS)
    for name, rec in data["sections"].items():
        assert "error" not in rec and "skipped" not in rec, (name, rec)
    assert data["smoke"] and data["device"] == "cpu"
    assert "failures: none" in printed and "smoke: figures mean nothing" in printed


def test_the_smoke_run_collects_the_cuda_tests(smoke):
    _, data, _, out = smoke
    tests = data["sections"]["tests"]
    assert "tests/test_cuda.py" in tests["files"]
    assert tests["returncode"] == 0
    # without CUDA every cuda-marked test is collected and skipped, none deselected away
    assert tests["counts"].get("skipped", 0) >= 20 and "passed" not in tests["counts"]
    assert "no CUDA device" in (out / "gpu_check_tests.txt").read_text()


def test_the_smoke_run_trains_every_family_and_crosses_devices(smoke):
    fams = smoke[1]["sections"]["families"]
    assert set(FAMILIES.names()) <= set(fams)
    for name in FAMILIES.names():
        rec = fams[name]
        assert rec["straight"]["finite"] and rec["straight"]["steps"] >= 2, name
        assert rec["straight"]["stats"], name
        assert rec["pipeline"]["finite"] and rec["pipeline"]["seeded"], name
    cross = fams["gan"]["cross_device"]
    assert cross["ok"] and len(cross) == 3
    for run in (k for k in cross if k != "ok"):
        assert cross[run]["resumed_to"] > cross[run]["aborted_at"] >= 1
    extractors = smoke[1]["sections"]["extractors"]
    assert extractors["classifier"]["finite"] and extractors["vgg19"]["dim"] > 0


def test_the_smoke_run_measures_every_figure(smoke):
    s = smoke[1]["sections"]
    gatys = s["gatys"]
    for name in ("default", "single", "baseline"):
        assert gatys[name]["seconds"] > 0 and math.isfinite(gatys[name]["final_loss"])
        assert gatys[name]["trace"], name
    assert gatys["baseline"]["precision"] == "float32"
    rows = s["fast_style"]["rows"]
    assert {(r["net"], r["precision"], r["batch"]) for r in rows} == {
        ("transformer", "fp32", 1), ("transformer", "bf16", 1), ("transformer", "bf16", 4),
        ("adain", "fp32", 1), ("adain", "bf16", 1)}
    assert all(r["mpix_per_s"] > 0 and r["finite"] for r in rows)
    dcgan = s["dcgan"]
    assert dcgan["baseline"]["precision"] == "float32" and not dcgan["baseline"]["channels_last"]
    assert dcgan["baseline"]["images_per_s"] > 0 and dcgan["default"]["images_per_s"] > 0
    ex = s["dcgan_examples"]
    assert ex["returncode"] == 0 and ex["iterations"] == 12
    # lines 20 ms apart, batch 4 (--smoke): about 200 images/s
    assert 10 < ex["steady_images_per_s"] <= 201, ex
    assert ex["impasto_default_over_examples"] > 0
    assert s["fid"]["network_images_per_s"] > 0 and s["fid"]["encode_images_per_s"] > 0
