"""Video files in and out (impasto.io.video): what is written reads back, the writer leaves
nothing behind when it fails, and unreadable files are one-line errors."""

from __future__ import annotations

import os

import pytest
import torch

from impasto.errors import InputError
from impasto.io.video import VideoWriter, frame_size, probe_video, read_frames

pytest.importorskip("imageio_ffmpeg")


def frames(n: int, h: int = 32, w: int = 48) -> torch.Tensor:
    """``n`` frames of smooth gradients that change from frame to frame (video codecs keep
    these almost exactly)."""
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    return torch.stack([torch.stack([x, y, (x + y + i / n) % 1 * 0.5]) for i in range(n)])


def test_frames_written_read_back_with_size_rate_and_content(tmp_path):
    clip = frames(7)
    out = tmp_path / "sub" / "clip.mp4"
    with VideoWriter(out, (48, 32), 12.0) as writer:
        writer.write(clip[:4])
        writer.write(clip[4:])
    assert writer.frames == 7 and os.listdir(out.parent) == ["clip.mp4"]
    info = probe_video(out)
    assert info.size == (48, 32) and info.fps == 12.0 and not info.has_audio
    back = list(read_frames(out))
    assert len(back) == 7 and back[0].shape == (1, 3, 32, 48) and back[0].dtype == torch.float32
    assert (torch.cat(back) - clip).abs().mean() < 0.02
    small = list(read_frames(out, (24, 16)))
    assert len(small) == 7 and small[0].shape == (1, 3, 16, 24)


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="stop"), VideoWriter(out, (48, 32), 10.0) as writer:
        writer.write(frames(2))
        raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


def test_unreadable_videos_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    for call in (probe_video, lambda p: list(read_frames(p))):
        with pytest.raises(InputError, match="bad.mp4: cannot decode the video") as e:
            call(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="not a video file name"):
        VideoWriter(tmp_path / "clip.txt", (48, 32), 10.0)


def test_frame_size_scales_then_rounds_down_to_even_sides():
    assert frame_size((1920, 1080)) == (1920, 1080)
    assert frame_size((1920, 1080), 480) == (480, 270)
    assert frame_size((101, 51)) == (100, 50)
