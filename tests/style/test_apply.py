"""Applying networks to images, folders and video (impasto.style.apply) and the feed-forward
``impasto stylize`` command line (per-style model and AdaIN)."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import noise_image as noise
from conftest import run_cli as cli
from conftest import tiny_transformer
from PIL import Image

from impasto.errors import InputError
from impasto.infer.runner import InferenceRunner
from impasto.io.video import probe_video
from impasto.nets.adain import AdaINDecoder
from impasto.style.adain import save_decoder
from impasto.style.apply import apply_folder, apply_video
from impasto.style.fast import save_fast_style

pytestmark = pytest.mark.usefixtures("one_thread")

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
iio = pytest.importorskip("imageio.v2")


def write_video(path: Path, frames: int = 10, fps: float = 12, size=(48, 32), audio=None):
    """A small test video of moving gradients, written with imageio (and imageio-ffmpeg)."""
    w, h = size
    kw = {"audio_path": str(audio), "audio_codec": "aac"} if audio else {}
    with iio.get_writer(path, fps=fps, macro_block_size=1, quality=8, **kw) as writer:
        for i in range(frames):
            x = np.linspace(0, 255, w)[None, :] + 0 * np.arange(h)[:, None]
            frame = np.stack([(x + 20 * i) % 256, np.full_like(x, 10 * i), 255 - x], -1)
            writer.append_data(frame.astype(np.uint8))
    return path


def write_wav(path: Path, seconds: float = 1.0, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def count_frames(path: Path) -> tuple[int, float]:
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    reader = iio.get_reader(path)
    fps = reader.get_meta_data()["fps"]
    reader.close()
    return n, fps


def runner(net=None) -> InferenceRunner:
    return InferenceRunner(net or tiny_transformer(), device="cpu", precision="fp32")


# --------------------------------------------------------------------------------------------
# the library


def test_folder_gives_one_output_per_input_with_the_same_names(tmp_path):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    noise(32, 24, 1).save(src / "a.png")
    noise(32, 24, 2).save(src / "b.jpg", quality=95)
    noise(20, 20, 3).save(src / "sub" / "c.bmp")
    noise(32, 24, 4).save(src / "d.png")
    noise(16, 16, 5).save(src / "d.bmp")  # would also become d.png: keeps its full name
    (src / "notes.txt").write_text("not an image")
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    run = runner()
    batches = []

    def transform(x):
        batches.append(tuple(x.shape))
        return run(x)

    out = tmp_path / "out"
    written = apply_folder(transform, src, out, batch_size=2)
    names = sorted(str(p.relative_to(out)) for p in written)
    assert names == ["a.png", "b.jpg", "d.bmp.png", "d.png", "sub/c.png"]
    # a and b share a batch (then it is full); d.bmp, d.png and c differ in size from the next
    assert sorted(batches) == sorted([(2, 3, 24, 32), (1, 3, 16, 16), (1, 3, 24, 32),
                                      (1, 3, 20, 20)])
    # each output is what the network makes of that image alone
    from impasto.io import load_image, to_tensor

    for name, p in (("a.png", "a.png"), ("sub/c.bmp", "sub/c.png")):
        alone = run(to_tensor(load_image(src / name)))
        got = to_tensor(load_image(out / p))
        assert (got - alone).abs().max() <= 1 / 255 + 1e-6


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        apply_folder(runner(), tmp_path / "empty", tmp_path / "out")


def test_video_keeps_frame_count_fps_and_audio(tmp_path):
    src = write_video(tmp_path / "clip.mp4", frames=10, fps=12,
                      audio=write_wav(tmp_path / "tone.wav"))
    info = probe_video(src)
    assert info.size == (48, 32) and info.has_audio
    run = runner()
    out = apply_video(run, src, tmp_path / "styled.mp4", batch_size=4)
    assert count_frames(out) == (10, 12.0)
    assert probe_video(out).has_audio
    # the frames are the network's output (up to video compression)
    frame = iio.get_reader(out).get_data(3).astype(np.float32) / 255
    first = iio.get_reader(src).get_data(3)
    expected = run(torch.from_numpy(first.copy()).permute(2, 0, 1)[None].float() / 255)
    expected = expected[0].permute(1, 2, 0).numpy()
    assert np.abs(frame - expected).mean() < 0.05
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_video_without_audio_and_resized(tmp_path):
    src = write_video(tmp_path / "clip.mp4", frames=5, fps=25)
    out = apply_video(runner(), src, tmp_path / "small.mp4", size=24)
    assert count_frames(out) == (5, 25.0)
    assert probe_video(out).size == (24, 16)
    assert not probe_video(out).has_audio


def test_undecodable_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(InputError, match="cannot decode"):
        apply_video(runner(), bad, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


# --------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = {"dir": tmp_path}
    f["model"] = save_fast_style(tiny_transformer(1), tmp_path / "fast.pt",
                                 {"style": {"name": "x"}})
    torch.manual_seed(0)
    f["decoder"] = save_decoder(tmp_path / "decoder.pt", AdaINDecoder(), encoder={
        "weights": "caffe", "widths": [64, 128, 256, 512], "layer": "relu4_1"})
    for name, seed in (("content.png", 1), ("style1.png", 2), ("style2.png", 3)):
        noise(24, 20, seed).save(tmp_path / name)
        f[name.split(".")[0]] = tmp_path / name
    mask = np.zeros((20, 24), np.uint8)
    mask[:, :12] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    Image.fromarray(255 - mask).save(tmp_path / "right.png")
    f["left"], f["right"] = tmp_path / "left.png", tmp_path / "right.png"
    return f


def fails(capsys, argv, words, out: Path) -> None:
    rc, stdout, stderr = cli(capsys, *argv)
    line = stderr.strip()
    assert rc == 2, stderr
    assert line and "\n" not in line and "Traceback" not in stderr, stderr
    for w in words:
        assert w in line, line
    assert not out.exists()


def test_cli_model_on_an_image_a_folder_and_a_video(files, capsys):
    d = files["dir"]
    rc, _, err = cli(capsys, "stylize", files["content"], "--model", files["model"], "-o",
                     d / "o.png", "-q", "--device", "cpu")
    assert rc == 0, err
    with Image.open(d / "o.png") as im:
        assert im.size == (24, 20)
    (d / "folder").mkdir()
    for i in range(3):
        noise(16, 16, 10 + i).save(d / "folder" / f"p{i}.png")
    rc, _, err = cli(capsys, "stylize", d / "folder", "--model", files["model"], "-o",
                     d / "styled", "-q", "--batch-size", "2")
    assert rc == 0, err
    assert sorted(os.listdir(d / "styled")) == ["p0.png", "p1.png", "p2.png"]
    write_video(d / "clip.mp4", frames=6, fps=10)
    rc, _, err = cli(capsys, "stylize", d / "clip.mp4", "--model", files["model"], "-o",
                     d / "clip-out.mp4", "-q", "--preserve-color", "luminance")
    assert rc == 0, err
    assert count_frames(d / "clip-out.mp4") == (6, 10.0)


def test_cli_adain_with_masks_and_weights(files, capsys):
    d = files["dir"]
    common = ["stylize", files["content"], "--method", "adain", "--decoder", files["decoder"],
              "-s", files["style1"], files["style2"], "-q", "--device", "cpu"]
    rc, _, err = cli(capsys, *common, "--mask", files["left"], files["right"], "-o", d / "m.png")
    assert rc == 0, err
    rc, _, err = cli(capsys, *common, "--style-blend-weights", "1,0", "--alpha", "0.5",
                     "-o", d / "w.png")
    assert rc == 0, err
    with Image.open(d / "m.png") as a, Image.open(d / "w.png") as b:
        assert a.size == b.size == (24, 20)
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_cli_model_file_of_another_kind(files, capsys):
    d = files["dir"]
    fails(capsys, ["stylize", files["content"], "--model", files["decoder"], "-o", d / "o.png"],
          ["decoder.pt", "adain/decoder"], d / "o.png")
    fails(capsys, ["stylize", files["content"], "--method", "adain", "--decoder", files["model"],
                   "-s", files["style1"], "-o", d / "o.png"], ["fast.pt", "fast-style"],
          d / "o.png")


def test_cli_video_that_cannot_be_decoded(files, capsys):
    d = files["dir"]
    bad = d / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    fails(capsys, ["stylize", bad, "--model", files["model"], "-o", d / "out.mp4"],
          ["broken.mp4", "cannot decode"], d / "out.mp4")


@pytest.mark.parametrize("extra, words", [
    (["--style-blend-weights", "1"], ["1 style blend weights", "2 style"]),
    (["--style-blend-weights", "1,2,3"], ["3 style blend weights"]),
    (["--mask", "LEFT"], ["1 masks", "2 style"]),
    (["--mask", "LEFT", "RIGHT", "--style-blend-weights", "1,1"], ["not both"]),
])
def test_cli_style_count_must_match_weights_and_masks(files, capsys, extra, words):
    d = files["dir"]
    extra = [str(files["left"]) if e == "LEFT" else str(files["right"]) if e == "RIGHT" else e
             for e in extra]
    fails(capsys, ["stylize", files["content"], "--method", "adain", "--decoder",
                   files["decoder"], "-s", files["style1"], files["style2"], "-o", d / "o.png",
                   *extra], words, d / "o.png")


@pytest.mark.parametrize("argv, words", [
    (["--model", "MODEL", "-s", "STYLE"], ["style built in"]),
    (["--model", "MODEL", "--preserve-color", "histogram"], ["histogram"]),
    (["--method", "adain"], ["--decoder"]),
    (["--method", "adain", "--decoder", "DECODER"], ["-s/--style"]),
    (["--model", "MODEL", "--decoder", "DECODER"], ["--model"]),
    (["--model", "MODEL", "--tile", "8"], ["--tile"]),
    (["--model", "MODEL", "--alpha", "2"], ["--alpha"]),
])
def test_cli_bad_feedforward_options(files, capsys, argv, words):
    d = files["dir"]
    sub = {"MODEL": str(files["model"]), "DECODER": str(files["decoder"]),
           "STYLE": str(files["style1"])}
    fails(capsys, ["stylize", files["content"], *[sub.get(a, a) for a in argv], "-o",
                   d / "o.png"], words, d / "o.png")
