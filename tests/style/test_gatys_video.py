"""Gatys on video (impasto.style.gatys_video, Ruder et al. 2016): the temporal loss, the extra
term in the optimisation, the per-frame driver on a tiny random VGG, and ``impasto stylize
clip.mp4`` end to end on the real VGG at 32 px (frame count, rate and audio kept; bad input is
one line, exit 2, no output)."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from impasto.cli import main
from impasto.errors import InputError
from impasto.style import GatysConfig, GatysStyleTransfer
from impasto.style.gatys_video import TemporalLoss, stylize_frames, temporal_loss

from conftest import tiny_vgg

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    base = dict(size=32, iterations=12, precision="fp32", device="cpu", scales=1)
    base.update(kw)
    return GatysConfig(**base)


def _still(h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


def _static_clip(n=4, noise=0.03, seed=0):
    """A still scene with independent sensor noise in every frame: stylised frame by frame,
    the noise alone makes the strokes change."""
    g = torch.Generator().manual_seed(seed + 1)
    base = _still(seed=seed)
    return [(base + noise * torch.randn(base.shape, generator=g)).clamp(0, 1) for _ in range(n)]


def _still_aligner(previous, frame, output):
    """A static camera: nothing moves, nothing is occluded."""
    return output, torch.ones(frame.shape[-2:])


def _change(frames):
    """Mean absolute change between consecutive frames."""
    return float(np.mean([(a - b).abs().mean() for a, b in zip(frames, frames[1:])]))


# --------------------------------------------------------------------------------------------
# the temporal loss


def test_temporal_loss_is_zero_on_the_warped_output_and_grows_only_where_not_occluded():
    target = _still()
    mask = torch.zeros(24, 32)
    mask[:, :16] = 1  # the right half is occluded
    assert float(temporal_loss(target.clone(), target, mask)) == 0.0
    right = target.clone()
    right[..., 16:] = 1 - right[..., 16:]
    assert float(temporal_loss(right, target, mask)) == 0.0  # occluded pixels are free
    d = 0.1
    left = target.clone()
    left[..., :16] += d
    one = float(temporal_loss(left, target, mask))
    left[..., :16] += d
    two = float(temporal_loss(left, target, mask))
    # 1/D sum c (x - w)^2 on the 0-255 scale: half the values differ by d
    assert one == pytest.approx(0.5 * (255 * d) ** 2, rel=1e-4)
    assert two == pytest.approx(4 * one, rel=1e-4)
    soft = float(temporal_loss(left, target, mask * 0.5))
    assert soft == pytest.approx(two / 2, rel=1e-4)


def test_temporal_loss_module_weighs_and_resizes_to_the_image():
    target = _still()
    loss = TemporalLoss(3.0, target, torch.ones(24, 32))
    assert float(loss(target)) == 0.0
    x = target + 0.1
    assert float(loss(x)) == pytest.approx(3 * float(temporal_loss(x, target, torch.ones(24, 32))))
    small = torch.nn.functional.interpolate(target, size=(12, 16), mode="area")
    assert float(loss(small)) < 0.05 * float(loss(torch.zeros(1, 3, 12, 16)))


def test_the_extra_term_enters_the_objective():
    content, style = _still(seed=1), _still(20, 20, seed=2) ** 2
    target = _still(seed=3)
    transfer = GatysStyleTransfer(_cfg(), encoder=tiny_vgg())
    extras = []
    free = transfer.run(content, [style], init=target)  # the same start, no extra term
    held = transfer.run(content, [style], init=target,
                        extra_loss=TemporalLoss(1e8, target, torch.ones(24, 32)),
                        callback=lambda info: extras.append(info.extra))
    assert float((held - target).abs().mean()) < 0.2 * float((free - target).abs().mean())
    assert all(e >= 0 for e in extras) and max(extras) > 0


# --------------------------------------------------------------------------------------------
# the per-frame driver


def test_a_static_clip_flickers_far_less_with_the_temporal_term():
    clip, style = _static_clip(), _still(20, 20, seed=2) ** 2
    transfer = GatysStyleTransfer(_cfg(), encoder=tiny_vgg())
    alone = list(stylize_frames(transfer, clip, [style], temporal=False))
    held = list(stylize_frames(transfer, clip, [style], align=_still_aligner, frame_iterations=4))
    flow = list(stylize_frames(transfer, clip, [style], frame_iterations=4))  # OpenCV DIS
    assert len(alone) == len(held) == len(flow) == 4
    assert held[0].shape == (1, 3, 24, 32)
    assert torch.equal(alone[0], held[0])  # the first frame is the still
    assert _change(held) < 0.2 * _change(alone)
    assert _change(flow) < 0.25 * _change(alone)


def test_later_frames_run_the_short_schedule_at_full_size_only():
    clip, style = _static_clip(3), _still(20, 20, seed=2)
    steps: dict[int, list] = {}
    transfer = GatysStyleTransfer(_cfg(size=64, scales=2, iterations=(3, 5)),
                                  encoder=tiny_vgg())
    out = list(stylize_frames(transfer, clip, [style], align=_still_aligner, frame_iterations=2,
                              callback=lambda k, info: steps.setdefault(k, []).append(info)))
    assert [len(steps[k]) for k in range(3)] == [8, 2, 2]
    assert {s.size for s in steps[0]} == {(24, 32), (48, 64)}
    assert {s.size for s in steps[1] + steps[2]} == {(48, 64)}
    assert steps[1][-1].extra > 0 and steps[0][-1].extra == 0
    assert [o.shape[-2:] for o in out] == [(48, 64)] * 3


def test_the_temporal_weight_zero_is_the_warm_start_alone_and_occluded_pixels_are_free():
    clip, style = _static_clip(3), _still(20, 20, seed=2) ** 2
    transfer = GatysStyleTransfer(_cfg(), encoder=tiny_vgg())
    occluded = lambda p, f, o: (o, torch.zeros(f.shape[-2:]))  # noqa: E731
    warm = list(stylize_frames(transfer, clip, [style], align=_still_aligner, frame_iterations=4,
                               temporal_weight=0))
    masked = list(stylize_frames(transfer, clip, [style], align=occluded, frame_iterations=4,
                                 temporal_weight=1e6))
    held = list(stylize_frames(transfer, clip, [style], align=_still_aligner, frame_iterations=4,
                               temporal_weight=1e6))
    assert torch.allclose(warm[2], masked[2], atol=1e-6)  # a zero mask holds nothing
    assert _change(held) < 0.5 * _change(warm)


@pytest.mark.parametrize("kw, words", [
    (dict(occluded="noise"), "occluded must be one of"),
    (dict(frame_iterations=0), "frame iterations must be at least 1"),
    (dict(temporal_weight=-1.0), "temporal weight must be a non-negative"),
])
def test_bad_driver_options_are_refused_before_any_frame(kw, words):
    transfer = GatysStyleTransfer(_cfg(), encoder=tiny_vgg())
    with pytest.raises(InputError, match=words):
        stylize_frames(transfer, iter(()), [_still()], **kw)


# --------------------------------------------------------------------------------------------
# impasto stylize VIDEO (real VGG19 at 32 px)

iio = pytest.importorskip("imageio.v2")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

SHALLOW = ["--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1"]


def _write_clip(path: Path, frames=5, fps=8.0, audio: Path | None = None) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (24, 32, 3)).astype(float)
    kw = {"audio_path": str(audio), "audio_codec": "aac"} if audio else {}
    with iio.get_writer(path, fps=fps, macro_block_size=1, quality=8, **kw) as w:
        for i in range(frames):
            w.append_data(np.roll(base, i, axis=1).astype(np.uint8))
    return path


def _write_wav(path: Path, seconds=1.0, rate=8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return path


@pytest.fixture
def files(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    return tmp_path


def _cli(capsys, *argv):
    rc = main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_python_api_writes_the_video_and_an_abort_keeps_the_frames_done(files):
    import impasto
    from impasto.io.video import probe_video

    clip = _write_clip(files / "clip.mp4", frames=4, fps=6.0)
    transfer = GatysStyleTransfer(_cfg(iterations=3), encoder=tiny_vgg())
    seen = []
    out = impasto.stylize_video(clip, files / "s.png", files / "o.mp4", transfer=transfer,
                                frame_iterations=2, align=_still_aligner,
                                callback=lambda k, info: seen.append(k))
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == 4 and probe_video(out).fps == 6.0 and sorted(set(seen)) == [0, 1, 2, 3]
    steps = []  # abort on the second frame's last iteration: two frames are written
    part = impasto.stylize_video(clip, files / "s.png", files / "part.mp4", transfer=transfer,
                                 frame_iterations=2, align=_still_aligner,
                                 callback=lambda k, info: steps.append(k),
                                 abort=lambda: len(steps) >= 3 + 2)
    assert imageio_ffmpeg.count_frames_and_secs(str(part))[0] == 2
    with pytest.raises(InputError, match="clip.mp4: a video; use impasto.stylize_video"):
        impasto.stylize(clip, files / "s.png")


def test_cli_video_keeps_frame_count_rate_and_audio(files, capsys):
    from impasto.io.video import probe_video

    clip = _write_clip(files / "clip.mp4", frames=5, fps=8.0,
                       audio=_write_wav(files / "tone.wav"))
    (files / "out").mkdir()
    rc, _, err = _cli(capsys, "stylize", clip, "-s", files / "s.png", "--size", "32",
                      "--iterations", "3", "--frame-iterations", "2", "-o",
                      files / "out" / "styled.mp4", "-q", "--device", "cpu", *SHALLOW)
    assert rc == 0, err
    assert os.listdir(files / "out") == ["styled.mp4"]  # no temporary file left
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(files / "out" / "styled.mp4"))
    info = probe_video(files / "out" / "styled.mp4")
    assert n == 5 and info.fps == 8.0 and info.size == (32, 24) and info.has_audio


@pytest.mark.parametrize("make, words", [
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4",
     "notes.mp4: cannot decode the video"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") is not None and d / "empty.mp4",
     "empty.mp4: empty file, not a video"),
    (lambda d: d / "missing.mp4", "missing.mp4: video file not found"),
])
def test_cli_bad_video_is_one_line_exit_2_and_no_output(files, capsys, make, words):
    src = make(files)
    before = sorted(os.listdir(files))
    rc, stdout, err = _cli(capsys, "stylize", src, "-s", files / "s.png", "-o",
                           files / "o.mp4", "--size", "32")
    line = err.strip()
    assert rc == 2 and line and "\n" not in line and "Traceback" not in err, err
    assert words in line
    assert sorted(os.listdir(files)) == before


def test_cli_video_without_frames_is_refused(files, capsys):
    writer = imageio_ffmpeg.write_frames(str(files / "zero.mp4"), (32, 24), fps=10,
                                         macro_block_size=1, ffmpeg_log_level="quiet")
    writer.send(None)
    writer.close()
    before = sorted(os.listdir(files))
    rc, _, err = _cli(capsys, "stylize", files / "zero.mp4", "-s", files / "s.png", "-o",
                      files / "o.mp4", "--size", "32")
    assert rc == 2 and "zero.mp4: cannot decode the video" in err and "\n" not in err.strip()
    assert sorted(os.listdir(files)) == before


@pytest.mark.parametrize("extra, words", [
    (["--mask", "s.png"], "--mask is not supported for a video input"),
    (["--save-every", "2"], "--save-every is not supported for a video input"),
    (["--init", "s.png"], "--init takes content, noise, instant for a video input"),
    (["--temporal-weight", "-1"], "--temporal-weight"),
    (["--frame-iterations", "0"], "--frame-iterations"),
])
def test_cli_video_options_that_do_not_apply_are_refused(files, capsys, extra, words):
    clip = _write_clip(files / "clip.mp4", frames=2)
    rc, _, err = _cli(capsys, "stylize", clip, "-s", files / "s.png", "-o", files / "o.mp4",
                      *extra)
    assert rc == 2 and words in err and "\n" not in err.strip(), err
    assert not (files / "o.mp4").exists()


def test_the_extra_term_is_the_same_in_tiles():
    # A frame too large for one evaluation is evaluated tile by tile; the temporal term is
    # added to the whole image's loss and gradient all the same.
    g = torch.Generator().manual_seed(3)
    content = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 96, 128, generator=g), 5, 1, 2)
    style, target = torch.rand(1, 3, 64, 64, generator=g) ** 2, content.flip(-1)
    runs = {}
    for tile in (0, 64):
        infos = []
        transfer = GatysStyleTransfer(_cfg(size=128, iterations=6, tile=tile), encoder=tiny_vgg())
        runs[tile] = (transfer.run(content, [style], init=target, callback=infos.append,
                                   extra_loss=TemporalLoss(1e3, target, torch.ones(96, 128))),
                      infos)
    (whole, w_infos), (tiled, t_infos) = runs[0], runs[64]
    assert {i.tiles for i in w_infos} == {1} and min(i.tiles for i in t_infos) > 1
    assert all(i.extra > 0 for i in w_infos[1:])
    assert t_infos[-1].extra == pytest.approx(w_infos[-1].extra, rel=1e-3)
    assert float((tiled - whole).abs().mean()) < 1e-3
