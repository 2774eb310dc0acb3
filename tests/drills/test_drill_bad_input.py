"""The bad-input drill (#13): hostile files and options through every command of the CLI.

Each case is a file made for it (or none), a command, the exit status it must end with and a
fragment of its one line on stderr: 2 for a bad input (never a traceback, never a second
line), 0 where the input is odd but usable (a file name that is not UTF-8; options that ask
for less than they seem to, which the command says in one warning line).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import drillkit
import numpy as np
import pytest
import torch
from drillkit import CLS_TINY, GAN_TINY, SHALLOW, cli, one_line

drill_world = drillkit.drill_world  # a fixture
pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Case:
    """``make(w, tmp)`` writes the case's file and returns its path; ``argv(w, f, tmp)`` is the
    command line; ``status`` and ``fragment`` what it must end with."""

    id: str
    make: Callable[[SimpleNamespace, Path], Path | None]
    argv: Callable[[SimpleNamespace, Path | None, Path], list[Any]]
    status: int
    fragment: str


# -- files ---------------------------------------------------------------------------------------


def _text(name: str, text: str = "this is not what it seems\n"):
    def make(w, tmp):
        p = tmp / name
        p.write_text(text)
        return p
    return make


def _empty(name: str):
    def make(w, tmp):
        p = tmp / name
        p.write_bytes(b"")
        return p
    return make


def _cut(source: str, name: str, keep: float = 0.5):
    """The first ``keep`` of a good file of the world."""
    def make(w, tmp):
        data = getattr(w, source).read_bytes()
        p = tmp / name
        p.write_bytes(data[: int(len(data) * keep)])
        return p
    return make


def _overwritten(source: str, name: str, count: int = 2000):
    """A good file with ``count`` bytes in its middle replaced by 0x5A."""
    def make(w, tmp):
        data = bytearray(getattr(w, source).read_bytes())
        mid = len(data) // 2
        data[mid : mid + count] = b"\x5a" * min(count, len(data) - mid)
        p = tmp / name
        p.write_bytes(bytes(data))
        return p
    return make


def _folder(name: str, files: dict[str, bytes] | None = None):
    def make(w, tmp):
        p = tmp / name
        p.mkdir()
        for fname, data in (files or {}).items():
            (p / fname).write_bytes(data)
        return p
    return make


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (and nothing decodable after it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _bomb(name: str):
    def make(w, tmp):
        p = tmp / name
        p.write_bytes(_png_header(100_000, 100_000))
        return p
    return make


def _copy(source: str, name: str):
    def make(w, tmp):
        p = tmp / name
        shutil.copyfile(getattr(w, source), p)
        return p
    return make


def _non_utf8_photo(w, tmp):
    p = tmp / os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, not UTF-8
    shutil.copyfile(w.photo, p)
    return p


def _labels_mismatch(w, tmp):
    p = tmp / "mismatch.npz"
    with np.load(w.digits) as z:
        np.savez(p, images=z["images"], labels=z["labels"][:10])
    return p


def _grey_floats(w, tmp):
    p = tmp / "floats.npy"
    np.save(p, np.full((8, 3, 3), np.nan, np.float32))
    return p


def _one_image(w, tmp):
    p = tmp / "one"
    p.mkdir()
    shutil.copyfile(w.photo, p / "a.png")
    return p


def _garbage_latest(w, tmp):
    run = tmp / "run"
    shutil.copytree(w.gan_run, run)
    (run / "latest.json").write_text("{not json")
    return run


def _npz_without_images(w, tmp):
    p = tmp / "other.npz"
    np.savez(p, weights=np.zeros(3))
    return p


def _overflowed_classifier(w, tmp):
    """A classifier checkpoint (valid digest, finite weights) whose weights are so large that
    its outputs overflow: what ``classify train --lr 1e30`` wrote before evaluations were
    guarded."""
    from impasto.train import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(w.cls_ckpt)
    (name, state), = ckpt["models"].items()
    # the convolutions and linear layers (not the batch norms): 1e30 each, 1e60 and more after
    # two of them, inf in float32
    net = {k: (v * 1e30 if k.endswith((".0.weight", "head.weight")) else v)
           for k, v in state.items()}

    class Holder(torch.nn.Module):
        def __init__(self, sd):
            super().__init__()
            self.sd = sd

        def state_dict(self, *a, **k):
            return dict(self.sd)

    p = tmp / "overflow.pt"
    save_checkpoint(p, kind=ckpt["kind"], config=ckpt["config"], step=ckpt["step"],
                    images_seen=ckpt["images_seen"], models={name: Holder(net)},
                    optimizers={}, extra=ckpt["extra"])
    assert load_checkpoint(p)  # a valid checkpoint, finite weights
    return p


def _overflowed_generator(w, tmp):
    """A GAN checkpoint (valid checksum, finite weights) whose G_ema's convolutions are so
    large that its images overflow to NaN: the last checkpoint before a divergence can be
    so."""
    import copy

    from impasto.train.checkpoint import tensor_digest

    ckpt = copy.deepcopy(torch.load(w.gan_ckpt, weights_only=True))
    state = ckpt["models"]["G_ema"]["model"]
    for k, v in state.items():
        if k.startswith("convs.") and k.endswith("weight"):
            v.mul_(1e30)
    ckpt["digest"] = {"sha256": tensor_digest(
        {k: ckpt.get(k) for k in ("models", "optimizers", "rng", "extra")})}
    p = tmp / "overflow-gan.pt"
    torch.save(ckpt, p)
    return p


# -- the table -----------------------------------------------------------------------------------

S = "stylize"
CASES = [
    # stylize (Gatys and the networks)
    Case("stylize-content-empty-file", _empty("empty.png"),
         lambda w, f, t: [S, f, "-s", w.photo, "-o", t / "o.png", *SHALLOW], 2, "empty.png"),
    Case("stylize-content-text-as-png", _text("note.png"),
         lambda w, f, t: [S, f, "-s", w.photo, "-o", t / "o.png", *SHALLOW], 2, "note.png"),
    Case("stylize-content-truncated-png", _cut("photo", "cut.png", 0.4),
         lambda w, f, t: [S, f, "-s", w.photo, "-o", t / "o.png", *SHALLOW], 2, "cut.png"),
    Case("stylize-style-bomb-header", _bomb("bomb.png"),
         lambda w, f, t: [S, w.photo, "-s", f, "-o", t / "o.png", *SHALLOW], 2, "pixels"),
    Case("stylize-style-missing", lambda w, t: t / "nowhere.jpg",
         lambda w, f, t: [S, w.photo, "-s", f, "-o", t / "o.png", *SHALLOW], 2, "nowhere.jpg"),
    Case("stylize-output-parent-is-a-file", _text("blocker"),
         lambda w, f, t: [S, w.photo, "-s", w.photo, "-o", f / "o.png", *SHALLOW], 2,
         "blocker"),
    Case("stylize-output-unknown-suffix", None,
         lambda w, f, t: [S, w.photo, "-s", w.photo, "-o", t / "o.xyz", *SHALLOW], 2, ".xyz"),
    Case("stylize-vgg-weights-text", _text("vgg.pth"),
         lambda w, f, t: [S, w.photo, "-s", w.photo, "-o", t / "o.png", "--vgg-weights", f,
                          *SHALLOW], 2, "vgg.pth"),
    Case("stylize-iterations-zero-says-so", None,
         lambda w, f, t: [S, w.photo, "-s", w.photo, "-o", t / "o.png", "--iterations", "0",
                          *SHALLOW], 0, "no iterations to run: the output is the content image"),
    Case("stylize-scales-50-says-so", None,
         lambda w, f, t: [S, w.photo, "-s", w.photo, "-o", t / "o.png", "--scales", "50",
                          "--iterations", "1", *SHALLOW], 0, "--scales 50: only 5 fit at 32 px"),
    Case("stylize-gatys-non-utf8-name", _non_utf8_photo,
         lambda w, f, t: [S, f, "-s", w.photo, "-o", t / "o.png", "--iterations", "1",
                          *SHALLOW], 0, ""),
    Case("stylize-model-non-utf8-name", _non_utf8_photo,
         lambda w, f, t: [S, f, "--model", w.fast, "-o", t / "o.jpg", "-q", "--device", "cpu"],
         0, ""),
    Case("stylize-model-is-a-png", None,
         lambda w, f, t: [S, w.photo, "--model", w.photo, "-o", t / "o.png", "-q"], 2,
         "00.png"),
    Case("stylize-model-is-a-gan-checkpoint", None,
         lambda w, f, t: [S, w.photo, "--model", w.gan_ckpt, "-o", t / "o.png", "-q"], 2,
         "gan"),
    Case("stylize-model-truncated", _cut("fast", "fast-cut.pt"),
         lambda w, f, t: [S, w.photo, "--model", f, "-o", t / "o.png", "-q"], 2, "fast-cut.pt"),
    Case("stylize-decoder-is-a-fast-style-model", None,
         lambda w, f, t: [S, w.photo, "--method", "adain", "--decoder", w.fast, "-s", w.photo,
                          "-o", t / "o.png", "-q"], 2, "fast.pt"),
    Case("stylize-unknown-preset", None,
         lambda w, f, t: [S, w.photo, "--preset", "bogus", "-o", t / "o.png", "-q"], 2,
         "unknown preset 'bogus'"),
    # texture and presets
    Case("texture-sample-is-text", _text("sample.png"),
         lambda w, f, t: ["texture", f, "-o", t / "o.png", "-q"], 2, "sample.png"),
    Case("texture-iterations-zero-says-so", None,
         lambda w, f, t: ["texture", w.photo, "-o", t / "o.png", "--size", "32",
                          "--iterations", "0", "--device", "cpu", "-q"], 0,
         "no iterations to run: the output is the starting noise"),
    Case("presets-sheet-photo-truncated", _cut("photo", "half.png", 0.3),
         lambda w, f, t: ["presets", "sheet", f, "-o", t / "s.png"], 2, "half.png"),
    # fast-style
    Case("fast-style-train-empty-content", _folder("photos"),
         lambda w, f, t: ["fast-style", "train", f, "-s", w.photo, "-o", t / "m.pt", "--steps",
                          "1", "-q"], 2, "photos"),
    Case("fast-style-train-style-is-text", _text("style.jpg"),
         lambda w, f, t: ["fast-style", "train", w.images, "-s", f, "-o", t / "m.pt", "--steps",
                          "1", "-q"], 2, "style.jpg"),
    Case("fast-style-info-overwritten-model", _overwritten("fast", "fast-bad.pt", 300),
         lambda w, f, t: ["fast-style", "info", f], 2, "fast-bad.pt"),
    Case("fast-style-info-gan-checkpoint", None,
         lambda w, f, t: ["fast-style", "info", w.gan_ckpt], 2, "gan"),
    Case("fast-style-train-resume-missing", None,
         lambda w, f, t: ["fast-style", "train", "--resume", t / "no.run", "-q"], 2, "no.run"),
    # adain
    Case("adain-train-empty-content", _folder("content"),
         lambda w, f, t: ["adain", "train", "--content", f, "--styles", w.images, "-o",
                          t / "d.pt", "--steps", "1", "-q"], 2, "content"),
    Case("adain-train-resume-classifier-run", None,
         lambda w, f, t: ["adain", "train", "--resume", w.cls_run, "-q"], 2, "classify"),
    Case("adain-decoder-truncated", _cut("fast", "dec-cut.pt", 0.3),
         lambda w, f, t: [S, w.photo, "--method", "adain", "--decoder", f, "-s", w.photo, "-o",
                          t / "o.png", "-q"], 2, "dec-cut.pt"),
    # gan
    Case("gan-train-empty-folder", _folder("none"),
         lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1", *GAN_TINY], 2,
         "none"),
    Case("gan-train-folder-of-texts", _folder("texts", {"a.png": b"not a png", "b.jpg": b""}),
         lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1", *GAN_TINY], 2,
         "texts"),
    Case("gan-train-text-named-npz", _text("arrays.npz", "PK not really"),
         lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1", *GAN_TINY], 2,
         "arrays.npz: not a readable numpy file (no numpy header"),
    Case("gan-train-npz-without-images", _npz_without_images,
         lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1", *GAN_TINY], 2,
         "other.npz"),
    Case("gan-train-nan-float-images", _grey_floats,
         lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1", *GAN_TINY], 2,
         "floats.npy"),
    Case("gan-train-resume-garbage-latest", _garbage_latest,
         lambda w, f, t: ["gan", "train", "--resume", f, "--steps", "3", *GAN_TINY], 0,
         "/run/ckpt-000000002.pt (step 2)"),  # the newest checkpoint, latest.json unreadable
    Case("gan-sample-zero-bytes", _empty("zero.pt"),
         lambda w, f, t: ["gan", "sample", f, "--grid", t / "g.png", "-n", "4"], 2, "zero.pt"),
    Case("gan-sample-truncated", _cut("gan_ckpt", "half.pt"),
         lambda w, f, t: ["gan", "sample", f, "--grid", t / "g.png", "-n", "4"], 2, "half.pt"),
    Case("gan-sample-overwritten", _overwritten("gan_ckpt", "mid.pt"),
         lambda w, f, t: ["gan", "sample", f, "--grid", t / "g.png", "-n", "4"], 2, "mid.pt"),
    Case("gan-sample-overflowed-generator", _overflowed_generator,
         lambda w, f, t: ["gan", "sample", f, "--grid", t / "g.png", "-n", "4"], 2,
         "the generator's outputs are NaN or infinite"),
    Case("gan-interpolate-overflowed-generator", _overflowed_generator,
         lambda w, f, t: ["gan", "interpolate", f, "--seeds", "1,2", "--frames", "3", "-o",
                          t / "a.gif"], 2, "the generator's outputs are NaN or infinite"),
    Case("gan-sample-classifier-checkpoint", None,
         lambda w, f, t: ["gan", "sample", w.cls_ckpt, "--grid", t / "g.png", "-n", "4"], 2,
         "classify"),
    Case("gan-interpolate-empty-run-folder", _folder("emptyrun"),
         lambda w, f, t: ["gan", "interpolate", f, "--seeds", "1,2", "--frames", "3", "-o",
                          t / "a.gif"], 2, "emptyrun"),
    Case("gan-prepare-folder-of-texts", _folder("texts2", {"x.png": b"text"}),
         lambda w, f, t: ["gan", "prepare", f, "-o", t / "c.pt", "--resolution", "32"], 2,
         "texts2"),
    # classify
    Case("classify-train-labels-mismatch", _labels_mismatch,
         lambda w, f, t: ["classify", "train", f, "--run", t / "r", "--steps", "1", *CLS_TINY],
         2, "mismatch.npz"),
    Case("classify-eval-gan-checkpoint", None,
         lambda w, f, t: ["classify", "eval", w.gan_ckpt, w.digits], 2, "gan"),
    Case("classify-eval-overflowed-weights", _overflowed_classifier,
         lambda w, f, t: ["classify", "eval", f, w.digits, "--device", "cpu"], 2,
         "outputs are NaN or infinite"),
    Case("classify-predict-overflowed-weights", _overflowed_classifier,
         lambda w, f, t: ["classify", "predict", f, w.photo, "--device", "cpu"], 2,
         "outputs are NaN or infinite"),
    Case("classify-predict-text-as-image", _text("digit.png"),
         lambda w, f, t: ["classify", "predict", w.cls_run, f], 2, "digit.png"),
    # metrics
    Case("metrics-swd-empty-folder", _folder("real"),
         lambda w, f, t: ["metrics", "swd", f, w.images], 2, "real"),
    Case("metrics-fid-weights-truncated", _cut("fast", "incep.pth", 0.5),
         lambda w, f, t: ["metrics", "fid", w.images, w.images, "--weights", f, "--device",
                          "cpu"], 2, "incep.pth"),
    Case("metrics-fid-fake-is-a-truncated-checkpoint", _cut("gan_ckpt", "fake.pt", 0.5),
         lambda w, f, t: ["metrics", "fid", w.images, f, "--device", "cpu"], 2, "fake.pt"),
    Case("metrics-kid-one-image", _one_image,
         lambda w, f, t: ["metrics", "kid", f, f, "--device", "cpu"], 2, ""),
    Case("metrics-swd-npz-of-nan", _grey_floats,
         lambda w, f, t: ["metrics", "swd", f, w.images], 2, "floats.npy"),
]

#: Every command of the CLI that reads files has cases (not demo, whose inputs are packaged,
#: nor serve, which starts a server; tests/web drills its inputs).
COMMANDS = {"stylize", "fast-style", "adain", "gan", "classify", "metrics", "texture", "presets"}


def test_every_command_is_drilled():
    for command in COMMANDS:
        assert any(c.argv(SimpleNamespace(**_NAMES), Path("f"), Path("t"))[0] == command
                   for c in CASES), command
    assert len(CASES) >= 40


_NAMES = dict.fromkeys(("root", "images", "photo", "digits", "gan_run", "gan_ckpt", "cls_run",
                        "cls_ckpt", "fast"), Path("x"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, drill_world, tmp_path):
    f = case.make(drill_world, tmp_path) if case.make else None
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = cli(case.argv(drill_world, f, tmp_path))
    assert rc == case.status, err
    if case.status == 0:
        assert "Traceback" not in err and "Warning" not in err, err
        if case.fragment:
            assert case.fragment in one_line(err)
        return
    line = one_line(err)
    assert case.fragment in line, line
    assert line.startswith("impasto"), line
    # a refused command writes nothing (in the files it was given)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, json.dumps(before)
