"""benchmarks/video.py: the rows of a per-style network and of AdaIN run when their files are
given, and report the flicker cut by ``--temporal`` on a panning clip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("cv2")
pytest.importorskip("skimage")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_model_row_runs_from_a_network_file_and_the_blend_cuts_its_flicker(tmp_path, monkeypatch):
    from PIL import Image

    from impasto.nets.transformer import TransformerConfig, TransformerNet
    from impasto.style.fast import save_fast_style

    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(channels=(4, 8, 8), num_residual=1)).eval()
    save_fast_style(net, tmp_path / "net.pt", {"style": {"name": "x"}})
    Image.new("RGB", (40, 30), (200, 60, 20)).save(tmp_path / "painting.png")
    monkeypatch.syspath_prepend(str(BENCH))
    import video

    out = tmp_path / "video.json"
    video.main(["--frames", "5", "--size", "64", "--repeats", "1", "--score-every", "2",
                "--clips", "pan", "--model", str(tmp_path / "net.pt"), "--model-style",
                str(tmp_path / "painting.png"), "--methods", "model", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["results"] if r["method"] == "model"}
    assert set(rows) >= {"frame", "temporal", "temporal-plain"}
    assert all(r["frames"] == 5 and r["style_loss"] > 0 for r in rows.values())
    # a random network repaints its noise on every frame: the blend steadies it
    assert rows["frame"]["warping_error"] > 2 * rows["temporal"]["warping_error"]
    sys.modules.pop("video", None)


def test_video_costs_times_each_stage_and_the_networks(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import video_costs

    out = tmp_path / "costs.json"
    video_costs.main(["--frames", "6", "--size", "64", "--repeats", "1", "--precisions", "fp32",
                      "--json", str(out)])
    report = json.loads(out.read_text())
    stages = report["stages_ms"]
    assert {"flow x2 (ultrafast)", "flow x2 (medium)", "consistency", "fit",
            "canvas back (Lanczos)", "warp prev (bilinear)", "warp prev (Lanczos)",
            "blend (plain)", "blend (keep detail)"} <= set(stages)
    assert all(v > 0 for v in stages.values())
    # the floor is a subset of the default's stages (the fastest flows, the plain blend)
    assert 0 < report["floor_ms"] < report["default_ms"]
    nets = {r["network"]: r for r in report["networks"]}
    assert set(nets) == {"--preset 3 fp32", "--method instant -s fp32"}
    assert all(r["batched"] > 0 and r["canvases"] > 0 for r in nets.values())
    sys.modules.pop("video_costs", None)
    sys.modules.pop("video", None)
