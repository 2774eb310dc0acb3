"""``--temporal`` / ``apply_video(temporal=...)``: the flow-guided blend keeps a video's frame
count, rate and audio, cuts the flicker of a per-frame network, and is refused where it does
not apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import noise_image
from conftest import run_cli as cli
from test_apply import count_frames, runner, write_video, write_wav

from impasto.io.video import probe_video
from impasto.style.apply import apply_video
from impasto.style.fast import save_fast_style
from impasto.temporal.blend import TemporalConfig

pytest.importorskip("cv2")
iio = pytest.importorskip("imageio.v2")


def noisy_runner(amount: float = 0.15):
    """The tiny network's output plus fresh seeded noise on every call: a flickering net."""
    run = runner()
    g = torch.Generator().manual_seed(0)

    def transform(x):
        y = run(x)
        return (y + amount * torch.randn(y.shape, generator=g)).clamp(0, 1)

    return transform


def panning_video(path: Path, frames: int = 10, fps: float = 12, audio=None) -> Path:
    """A smooth seeded image panning right 2 px a frame, 64x48."""
    rng = np.random.default_rng(0)
    import cv2

    wide = cv2.resize(rng.random((8, 14, 3)).astype(np.float32), (64 + 2 * frames, 48),
                      interpolation=cv2.INTER_CUBIC).clip(0, 1)
    kw = {"audio_path": str(audio), "audio_codec": "aac"} if audio else {}
    with iio.get_writer(path, fps=fps, macro_block_size=1, quality=9, **kw) as writer:
        for i in range(frames):
            crop = wide[:, 2 * (frames - i): 2 * (frames - i) + 64]
            writer.append_data((crop * 255).round().astype(np.uint8))
    return path


def test_temporal_keeps_count_rate_and_audio_and_cuts_flicker(tmp_path):
    from impasto.metrics.flicker import flicker

    src = panning_video(tmp_path / "clip.mp4", frames=10, fps=12,
                        audio=write_wav(tmp_path / "tone.wav"))
    plain = apply_video(noisy_runner(), src, tmp_path / "plain.mp4", batch_size=4)
    smooth = apply_video(noisy_runner(), src, tmp_path / "smooth.mp4", batch_size=4,
                         temporal=TemporalConfig(strength=0.7))
    assert count_frames(smooth) == (10, 12.0) and probe_video(smooth).has_audio
    assert probe_video(smooth).size == probe_video(src).size
    a, _ = flicker(src, plain)
    b, _ = flicker(src, smooth)
    assert b.stylised < a.stylised / 2.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_temporal_true_and_a_strength_are_taken_and_bad_ones_refused(tmp_path):
    src = write_video(tmp_path / "clip.mp4", frames=4, fps=10)
    out = apply_video(runner(), src, tmp_path / "a.mp4", temporal=True)
    assert count_frames(out) == (4, 10.0)
    from impasto.errors import InputError

    with pytest.raises(InputError, match=r"\[0, 1\]"):
        apply_video(runner(), src, tmp_path / "b.mp4", temporal=3.0)
    assert not (tmp_path / "b.mp4").exists()


@pytest.fixture
def model(tmp_path, monkeypatch):
    from conftest import tiny_transformer

    monkeypatch.chdir(tmp_path)
    return save_fast_style(tiny_transformer(1), tmp_path / "fast.pt", {"style": {"name": "x"}})


def test_cli_temporal_on_a_video(model, tmp_path, capsys):
    src = panning_video(tmp_path / "clip.mp4", frames=6, fps=10,
                        audio=write_wav(tmp_path / "tone.wav"))
    for extra in (["--temporal"], ["--temporal", "0.8"]):
        out = tmp_path / "out.mp4"
        rc, _, err = cli(capsys, "stylize", src, "--model", model, "-o", out, "-q", *extra)
        assert rc == 0, err
        assert count_frames(out) == (6, 10.0) and probe_video(out).has_audio


@pytest.mark.parametrize("argv, words", [
    (["IMG", "--model", "MODEL", "--temporal"], "--temporal is for a video input"),
    (["DIR", "--model", "MODEL", "--temporal"], "is a folder"),
    (["CLIP", "-s", "IMG", "--temporal"], "--temporal applies to"),
    (["CLIP", "--model", "MODEL", "--temporal", "1.5"], "must lie in [0, 1]"),
])
def test_cli_temporal_refused(model, tmp_path, capsys, argv, words):
    noise_image(24, 20, 1).save(tmp_path / "img.png")
    (tmp_path / "dir").mkdir()
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    names = {"IMG": tmp_path / "img.png", "DIR": tmp_path / "dir", "CLIP": clip, "MODEL": model}
    out = tmp_path / "out.mp4"
    rc, stdout, err = cli(capsys, "stylize", *[names.get(a, a) for a in argv], "-o", out)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert rc == 2 and "Traceback" not in err, err
    assert words in line, err
    assert not out.exists()
