"""The flicker metric (impasto.metrics.flicker, Lai et al. 2018's warping error) on motion whose
answer is known, and ``impasto metrics flicker`` on video files: table, JSON, the floor, and
one-line errors for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli as cli

pytest.importorskip("cv2")
iio = pytest.importorskip("imageio.v2")

from impasto.errors import InputError
from impasto.metrics.flicker import warping_error


def shifting(n: int = 6, h: int = 48, w: int = 64, step: int = 2, seed: int = 0):
    """Crops of one smooth seeded image moving ``step`` px a frame: exact motion."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.nn.functional.interpolate(
        torch.rand(1, 3, h // 6, (w + n * step) // 6, generator=g), size=(h, w + n * step),
        mode="bicubic", align_corners=False).clamp(0, 1)
    return [wide[..., (n - i) * step: (n - i) * step + w] for i in range(n)]


def test_a_shifted_image_has_near_zero_error_and_noise_a_large_one():
    frames = shifting()
    same = warping_error(frames, frames)
    assert same.stylised == same.floor < 1e-4
    assert same.pairs == 5 and same.frames == 6 and same.size == (64, 48)
    assert same.consistent > 0.8
    # a stylisation that moves with the content: as low as the input's own
    styled = [1 - f for f in frames]
    assert warping_error(frames, styled).stylised < 1e-4
    # independent noise frames: about 2 * var(U[0,1]) = 1/6 per pixel
    g = torch.Generator().manual_seed(3)
    noise = [torch.rand(f.shape, generator=g) for f in frames]
    rep = warping_error(frames, noise)
    assert rep.stylised == pytest.approx(1 / 6, rel=0.1)
    assert rep.ratio > 1000
    # numpy frames (H, W, 3) uint8 are taken too
    arrays = [(f[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in frames]
    assert warping_error(arrays, arrays).stylised < 1e-4


def test_counts_and_sizes_must_agree():
    frames = shifting(5)
    with pytest.raises(InputError, match="the input has 5 frames, the stylised video 4"):
        warping_error(frames, frames[:4], count_rest=lambda it: sum(1 for _ in it))
    with pytest.raises(InputError, match="the input has 3 frames, the stylised video 5"):
        warping_error(frames[:3], frames, count_rest=lambda it: sum(1 for _ in it))
    with pytest.raises(InputError, match="at least 2 frames"):
        warping_error(frames[:1], frames[:1])
    small = [f[..., :24, :32] for f in frames]
    with pytest.raises(InputError, match="32x24"):
        warping_error(frames, small)


# --------------------------------------------------------------------------------------------
# the command line


def write_clip(path: Path, frames: list[torch.Tensor], fps: float = 10.0) -> Path:
    with iio.get_writer(path, fps=fps, macro_block_size=1, quality=9) as writer:
        for f in frames:
            writer.append_data((f[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return path


@pytest.fixture
def clips(tmp_path):
    frames = shifting(8)
    g = torch.Generator().manual_seed(4)
    noisy = [(f + 0.2 * torch.randn(f.shape, generator=g)).clamp(0, 1) for f in frames]
    big = [torch.nn.functional.interpolate(f, scale_factor=2, mode="bilinear") for f in frames]
    return {"in": write_clip(tmp_path / "in.mp4", frames),
            "noisy": write_clip(tmp_path / "noisy.mp4", noisy),
            "big": write_clip(tmp_path / "big.mp4", big),
            "short": write_clip(tmp_path / "short.mp4", frames[:5]),
            "dir": tmp_path}


def test_cli_reports_the_error_and_the_floor_as_a_table_and_json(clips, capsys):
    out = clips["dir"] / "r.json"
    rc, stdout, err = cli(capsys, "metrics", "flicker", clips["in"], clips["noisy"], "--json",
                          out, "-q")
    assert rc == 0, err
    data = json.loads(out.read_text())
    assert data["metric"] == "warping-error-dis-v1" and data["frames"] == 8
    assert data["pairs"] == 7 and data["resized_from"] is None
    assert data["stylised"] > 10 * data["floor"]  # the noise flickers; the input barely
    assert f"{data['stylised']:.6g}" in stdout and f"{data['floor']:.6g}" in stdout
    assert "input (floor)" in stdout
    rc, stdout, err = cli(capsys, "metrics", "flicker", clips["in"], clips["in"], "-q")
    assert rc == 0 and "ratio                          1" in stdout


def test_cli_resizes_a_stylised_video_of_another_size(clips, capsys):
    rc, stdout, err = cli(capsys, "metrics", "flicker", clips["in"], clips["big"])
    assert rc == 0, err
    assert "(128x96) resized to the input's 64x48" in err
    assert "7 frame pairs at 64x48" in stdout


@pytest.mark.parametrize("what", ["count", "not-a-video", "zero-frames", "unreadable",
                                  "missing"])
def test_cli_bad_input_is_one_line_and_writes_nothing(clips, capsys, what):
    d = clips["dir"]
    other = {"count": clips["short"]}.get(what)
    if what == "not-a-video":
        other = d / "notes.txt"
        other.write_text("hello\n")
    elif what == "zero-frames":
        import imageio_ffmpeg

        other = d / "zero.mp4"
        gen = imageio_ffmpeg.write_frames(str(other), (64, 48), fps=10, macro_block_size=1,
                                          ffmpeg_log_level="quiet")
        gen.send(None)
        gen.close()
    elif what == "unreadable":
        other = d / "bad.mp4"
        other.write_bytes(os.urandom(3000))
    elif what == "missing":
        other = d / "missing.mp4"
    out = d / "r.json"
    rc, stdout, err = cli(capsys, "metrics", "flicker", clips["in"], other, "--json", out, "-q")
    line = err.strip()
    assert rc == 2 and line and "\n" not in line and "Traceback" not in err, err
    assert stdout == "" and not out.exists()
    words = {"count": "the input has 8 frames, the stylised video 5",
             "not-a-video": "cannot decode", "zero-frames": "cannot decode",
             "unreadable": "cannot decode", "missing": "not found"}[what]
    assert words in line
