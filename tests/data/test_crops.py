"""impasto.data.CropFolder: the style networks' random crops, a function of (seed, epoch, i)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import impasto.data.crops as crops_module
from impasto.data import CropFolder
from impasto.errors import InputError
from impasto.io import load_image, resize

SIZES = [(40, 53), (41, 50), (60, 33)]  # (H, W)


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(tmp_path / f"{k}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    return tmp_path


def expected(img: Image.Image, crop: int, seed: int, epoch: int, i: int, hflip: bool):
    arr = np.asarray(img)
    rng = np.random.default_rng([seed, epoch, i])
    top = int(rng.integers(0, arr.shape[0] - crop + 1))
    left = int(rng.integers(0, arr.shape[1] - crop + 1))
    patch = arr[top : top + crop, left : left + crop]
    if hflip and rng.random() < 0.5:
        patch = patch[:, ::-1]
    return torch.from_numpy(patch.copy()).permute(2, 0, 1).float() / 255


def test_lanczos_crops_are_antialiased_resizes_cut_at_seeded_places(folder):
    data = CropFolder(folder, 24, load_size=30, seed=4)
    assert len(data) == 3 and data.skipped == ["broken.jpg"]
    for epoch in (0, 2):
        data.set_epoch(epoch)
        for i, (h, w) in enumerate(SIZES):
            img = resize(load_image(folder / f"{i}.png"),
                         longest=math.ceil(max(h, w) * 30 / min(h, w)))
            assert min(img.size) == 30
            assert torch.equal(data[i], expected(img, 24, 4, epoch, i, True))
    data.set_epoch(0)
    first = data[1]
    data.set_epoch(1)
    assert not torch.equal(first, data[1])  # a new epoch, another crop
    assert data.center(1).shape == (3, 24, 24)


def test_bilinear_crops_round_both_sides_and_decode_each_image_once(folder, monkeypatch):
    calls = []
    real = crops_module.load_image
    monkeypatch.setattr(crops_module, "load_image",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    data = CropFolder(folder, 16, load_size=25, seed=1, hflip=False, resample="bilinear")
    items = [data[i] for i in range(3)] + [data[i] for i in range(3)]
    assert len(calls) == 3  # cached after the first decode
    for i, (h, w) in enumerate(SIZES):
        scale = 25 / min(h, w)
        img = real(folder / f"{i}.png").resize((round(w * scale), round(h * scale)),
                                                Image.Resampling.BILINEAR, reducing_gap=3.0)
        assert torch.equal(items[i], expected(img, 16, 1, 0, i, False))
        assert torch.equal(items[i], items[3 + i])


def test_bad_folders_name_the_folder_and_what_it_holds(tmp_path, folder):
    with pytest.raises(InputError, match=r"missing: no such folder \(the style images\)"):
        CropFolder(tmp_path / "missing", 16, what="style images")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images in this folder"):
        CropFolder(tmp_path / "empty", 16)
    (folder / "bad").mkdir()
    (folder / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="no readable images: all 1 image files"):
        CropFolder(folder / "bad", 16)
