"""impasto.data sources: every kind gives the same pixels and labels; resizing; grey; errors.

All data are tiny and made here in tmp_path.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import impasto.data as data
from impasto.data import (
    ArrayDataset,
    ImageFolderDataset,
    ZipImageDataset,
    check_resolution,
    open_dataset,
    read_idx,
)
from impasto.errors import InputError

RNG = np.random.default_rng(7)
H, W = 10, 12  # every test image: 10 rows, 12 columns -> centre square = columns 1..10
RGB = RNG.integers(0, 256, size=(6, H, W, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, size=(6, H, W), dtype=np.uint8)
# sorted relative paths (mixed-case extension, a nested folder), labels from the top folder
NAMES = ["ant/0.png", "ant/1.PNG", "ant/sub/2.png", "bee/3.png", "bee/4.png", "cow/5.png"]
LABELS = [0, 0, 0, 1, 1, 2]
CLASSES = ["ant", "bee", "cow"]


def stack(ds) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def labels_of(ds) -> list[int]:
    return [int(ds[i][1]) for i in range(len(ds))]


def write_tree(root: Path, images: np.ndarray, names=NAMES) -> Path:
    for name, img in zip(names, images):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p, format="PNG")
    return root


def write_zip(path: Path, images: np.ndarray, names=NAMES, prefix: str = "") -> Path:
    tree = write_tree(path.parent / (path.stem + "_tree"), images, names)
    with zipfile.ZipFile(path, "w") as zf:
        if prefix:
            zf.writestr(prefix, b"")  # a directory entry, as zip tools write
        for name in names:
            zf.write(tree / name, prefix + name)
    return path


def idx_bytes(magic: int, arr: np.ndarray) -> bytes:
    dims = struct.pack(f">{arr.ndim}I", *arr.shape)
    return struct.pack(">I", magic) + dims + arr.astype(np.uint8).tobytes()


def expected_signed(u8: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1], the documented mapping."""
    return torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# every source gives the same pixels


def test_rgb_sources_give_identical_pixels(tmp_path):
    folder = write_tree(tmp_path / "tree", RGB)
    z = write_zip(tmp_path / "imgs.zip", RGB)
    np.save(tmp_path / "nhwc.npy", RGB)
    np.save(tmp_path / "nchw.npy", RGB.transpose(0, 3, 1, 2).copy())
    # float in [0, 1], read as round(255 x): values 0.3/255 below the 8-bit levels round up
    np.save(tmp_path / "float.npy", np.clip((RGB.astype(np.float64) - 0.3) / 255.0, 0.0, 1.0))
    np.savez(tmp_path / "arr.npz", images=RGB, labels=np.array(LABELS))

    for res in (10, 8):  # 10: no resize (exact crop); 8: resized
        sets = {
            "folder": open_dataset(folder, resolution=res),
            "zip": open_dataset(z, resolution=res),
            "nhwc": open_dataset(tmp_path / "nhwc.npy", resolution=res),
            "nchw": open_dataset(tmp_path / "nchw.npy", resolution=res),
            "float": open_dataset(tmp_path / "float.npy", resolution=res),
            "npz": open_dataset(tmp_path / "arr.npz", resolution=res),
            "tensor": ArrayDataset(torch.from_numpy(RGB), resolution=res),
        }
        ref = stack(sets["folder"])
        assert ref.dtype == torch.float32 and ref.shape == (6, 3, res, res)
        for name, ds in sets.items():
            assert len(ds) == 6, name
            assert torch.equal(stack(ds), ref), name
        if res == 10:  # the centred 10x10 square, exactly, mapped to [-1, 1]
            assert torch.equal(ref, expected_signed(RGB[:, :, 1:11]))
        else:
            assert ref.min() >= -1 and ref.max() <= 1
            assert not torch.equal(ref[:, :, :8, :8], expected_signed(RGB[:, :8, 1:9]))


def test_grey_sources_idx_folder_numpy_agree(tmp_path):
    (tmp_path / "g-images-idx3-ubyte").write_bytes(idx_bytes(2051, GREY))
    with gzip.open(tmp_path / "g-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(2051, GREY))
    np.save(tmp_path / "g.npy", GREY)
    folder = tmp_path / "flat"
    folder.mkdir()
    for i, img in enumerate(GREY):
        Image.fromarray(img, mode="L").save(folder / f"{i}.png")

    for channels in (1, 3):
        sets = [
            open_dataset(tmp_path / "g-images-idx3-ubyte", resolution=10, channels=channels),
            open_dataset(tmp_path / "g-images-idx3-ubyte.gz", resolution=10, channels=channels),
            open_dataset(tmp_path / "g.npy", resolution=10, channels=channels),
            open_dataset(folder, resolution=10, channels=channels),
        ]
        want = expected_signed(np.repeat(GREY[:, :, 1:11, None], channels, axis=3))
        for ds in sets:
            assert torch.equal(stack(ds), want)
        resized = [stack(open_dataset(folder, resolution=6, channels=channels))]
        resized.append(stack(open_dataset(tmp_path / "g.npy", resolution=6, channels=channels)))
        assert torch.equal(resized[0], resized[1])


def test_read_idx_values(tmp_path):
    p = tmp_path / "t-labels-idx1-ubyte"
    p.write_bytes(idx_bytes(2049, np.array([3, 1, 4], dtype=np.uint8)))
    assert read_idx(p, 2049).tolist() == [3, 1, 4]


# --------------------------------------------------------------------------------------------
# resize, crop, grey


def test_centre_crop_keeps_black_left_white_right():
    img = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    img[:, 20:] = 255
    x = ArrayDataset(img[None], resolution=16)[0][0]
    assert x.shape == (3, 16, 16)
    assert torch.all(x[:, :, :6] == -1)  # the centre 20 columns: 10 black then 10 white
    assert torch.all(x[:, :, 10:] == 1)
    assert torch.all(x[:, :, 7] < 0) and torch.all(x[:, :, 8] > 0)  # the antialiased edge
    assert torch.allclose(x[:, :, 7], -x[:, :, 8])  # symmetric about the middle
    # tall image: the centre square is rows 10..29 of 40
    tall = np.zeros((40, 20), dtype=np.uint8)
    tall[20:] = 255
    y = ArrayDataset(tall[None], resolution=16, channels=1)[0][0]
    assert y.shape == (1, 16, 16)
    assert torch.all(y[0, :6] == -1) and torch.all(y[0, 10:] == 1)


def test_odd_margin_and_upscale():
    img = np.arange(5 * 8, dtype=np.uint8).reshape(1, 5, 8) * 5  # margin 3: offset 1 (floor)
    x = ArrayDataset(img, resolution=5, channels=1)[0][0][0]
    assert torch.equal(x, expected_signed(img[:, :, 1:6, None])[0, 0])
    flat = np.full((1, 3, 5, 3), 77, dtype=np.uint8)  # upscaled 3 -> 16, constant stays constant
    y = ArrayDataset(flat, resolution=16)[0][0]
    assert y.shape == (3, 16, 16)
    assert torch.equal(y, expected_signed(np.full((1, 16, 16, 3), 77, dtype=np.uint8))[0])


def test_downscale_is_antialiased():
    checker = (np.indices((24, 24)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel squares
    x = ArrayDataset(checker[None], resolution=8, channels=1)[0][0]
    assert torch.all(x.abs() <= 0.2)  # each output pixel blends both colours (no aliasing)


def test_channels_1_is_pil_luma(tmp_path):
    folder = write_tree(tmp_path / "tree", RGB)
    ds = open_dataset(folder, resolution=10, channels=1)
    got = stack(ds)
    assert got.shape == (6, 1, 10, 10)
    luma = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in RGB])
    assert torch.equal(got, expected_signed(luma[:, :, 1:11, None]))
    # not just one of the channels
    assert not torch.equal(got[:, 0], expected_signed(RGB[:, :, 1:11])[:, 1])
    assert np.array_equal(data.to_grey(RGB[0])[..., 0], luma[0])


# --------------------------------------------------------------------------------------------
# labels


def test_labels_from_folders_sorted(tmp_path):
    folder = write_tree(tmp_path / "tree", RGB)
    (tmp_path / "tree" / "empty_class").mkdir()  # no images: not a class
    ds = ImageFolderDataset(folder, resolution=8)
    assert ds.classes == CLASSES and ds.num_classes == 3
    assert labels_of(ds) == LABELS
    assert ds[0][1].dtype == torch.int64
    z = open_dataset(write_zip(tmp_path / "wrapped.zip", RGB, prefix="outer/"), resolution=8)
    assert isinstance(z, ZipImageDataset)
    assert z.classes == CLASSES and labels_of(z) == LABELS


def test_flat_folder_unlabelled(tmp_path):
    flat = write_tree(tmp_path / "flat", RGB[:3], ["b.png", "a.png", "c.jpg"])
    ds = open_dataset(flat, resolution=8)
    assert ds.classes == [] and ds.num_classes == 0
    assert labels_of(ds) == [-1, -1, -1]
    # sorted by name: a.png holds RGB[1]
    assert torch.equal(ds[0][0], ArrayDataset(RGB[1:2], resolution=8)[0][0])


def test_idx_labels_explicit_and_sibling(tmp_path):
    lab = np.array([5, 0, 4, 1, 9, 2], dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(2051, GREY))
    (tmp_path / "other-labels.idx").write_bytes(idx_bytes(2049, lab))
    images = tmp_path / "train-images-idx3-ubyte"
    ds = open_dataset(images, resolution=8, labels_path=tmp_path / "other-labels.idx")
    assert labels_of(ds) == lab.tolist() and ds.num_classes == 10
    assert labels_of(open_dataset(tmp_path / "train-images-idx3-ubyte", resolution=8)) == [-1] * 6
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(2049, lab[::-1].copy()))
    sib = open_dataset(tmp_path / "train-images-idx3-ubyte", resolution=8)
    assert labels_of(sib) == lab[::-1].tolist()


def test_npz_and_npy_labels(tmp_path):
    np.savez(tmp_path / "xy.npz", x=RGB, y=np.array([2, 2, 0, 1, 0, 3]))
    ds = open_dataset(tmp_path / "xy.npz", resolution=8)
    assert labels_of(ds) == [2, 2, 0, 1, 0, 3]
    assert ds.classes == ["0", "1", "2", "3"]
    np.save(tmp_path / "imgs.npy", RGB)
    np.save(tmp_path / "labs.npy", np.arange(6))
    ds2 = open_dataset(tmp_path / "imgs.npy", resolution=8, labels_path=tmp_path / "labs.npy")
    assert labels_of(ds2) == list(range(6))


@pytest.mark.parametrize("shape", [(6, 9), (6, 4, 10, 12)])
def test_bad_array_shapes(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, dtype=np.uint8))
    with pytest.raises(InputError, match="bad.npy"):
        open_dataset(tmp_path / "bad.npy", resolution=8)


def test_bad_array_values_and_labels(tmp_path):
    np.save(tmp_path / "f.npy", np.full((2, 4, 4), 1.5, dtype=np.float32))
    with pytest.raises(InputError, match=r"f\.npy.*\[0, 1\]"):
        open_dataset(tmp_path / "f.npy", resolution=4)
    np.savez(tmp_path / "l.npz", images=RGB, labels=np.arange(5))
    with pytest.raises(InputError, match="5 labels for 6 images"):
        open_dataset(tmp_path / "l.npz", resolution=4)
    np.savez(tmp_path / "k.npz", pictures=RGB)
    with pytest.raises(InputError, match="'pictures'"):
        open_dataset(tmp_path / "k.npz", resolution=4)


# --------------------------------------------------------------------------------------------
# errors: one line, naming the path


def one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def test_empty_sources(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        open_dataset(empty, resolution=8)
    assert "no images" in one_line(e, "empty")

    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    (texts / "notes.txt").write_text("hi")
    (texts / "sub" / "data.csv").write_text("1,2")
    (texts / ".hidden.png").write_bytes(b"x")
    with pytest.raises(InputError) as e:
        open_dataset(texts, resolution=8)
    assert "no images" in one_line(e, "texts")

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    (junk / "b.jpg").write_bytes(b"")
    with pytest.raises(InputError) as e:
        open_dataset(junk, resolution=8)
    assert "no readable images" in one_line(e, "junk")

    z = tmp_path / "docs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "no images here")
        zf.writestr("folder/", b"")
    with pytest.raises(InputError) as e:
        open_dataset(z, resolution=8)
    assert "no images" in one_line(e, "docs.zip")

    (tmp_path / "fake.zip").write_bytes(b"PK? no")
    with pytest.raises(InputError) as e:
        open_dataset(tmp_path / "fake.zip", resolution=8)
    one_line(e, "fake.zip")

    with pytest.raises(InputError) as e:
        open_dataset(tmp_path / "missing", resolution=8)
    assert "no such file" in one_line(e, "missing")


def test_bad_idx_files(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(idx_bytes(1234, GREY))
    with pytest.raises(InputError) as e:
        open_dataset(bad, resolution=8)
    assert "magic number 1234" in one_line(e, "bad-images-idx3-ubyte")

    short = tmp_path / "short-images-idx3-ubyte"
    short.write_bytes(idx_bytes(2051, GREY)[:-7])
    with pytest.raises(InputError) as e:
        open_dataset(short, resolution=8)
    assert "truncated" in one_line(e, "short-images-idx3-ubyte")

    long = tmp_path / "long-images-idx3-ubyte"
    long.write_bytes(idx_bytes(2051, GREY) + b"\0\0")
    with pytest.raises(InputError) as e:
        open_dataset(long, resolution=8)
    assert "2 unexpected bytes" in one_line(e, "long-images-idx3-ubyte")

    header = tmp_path / "header.idx"
    header.write_bytes(struct.pack(">II", 2051, 6))
    with pytest.raises(InputError) as e:
        open_dataset(header, resolution=8)
    assert "truncated" in one_line(e, "header.idx")

    gz = tmp_path / "cut-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(2051, GREY))[:-12])
    with pytest.raises(InputError) as e:
        open_dataset(gz, resolution=8)
    assert "gzip" in one_line(e, "cut-images-idx3-ubyte.gz")

    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(2049, np.arange(6)))
    with pytest.raises(InputError) as e:
        open_dataset(labels, resolution=8)
    assert "labels_path" in one_line(e, "t10k-labels-idx1-ubyte")

    images = tmp_path / "ok-images-idx3-ubyte"
    images.write_bytes(idx_bytes(2051, GREY))
    with pytest.raises(InputError) as e:  # labels file given with the wrong magic (images)
        open_dataset(images, resolution=8, labels_path=images)
    assert "expected 2049" in one_line(e, "ok-images-idx3-ubyte")
    five = tmp_path / "five-labels"
    five.write_bytes(idx_bytes(2049, np.arange(5)))
    with pytest.raises(InputError, match="5 labels for 6 images"):
        open_dataset(images, resolution=8, labels_path=five)


def test_unknown_kind_and_labels_path_misuse(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(InputError) as e:
        open_dataset(tmp_path / "photo.png", resolution=8)
    assert "cannot tell" in one_line(e, "photo.png")
    folder = write_tree(tmp_path / "tree", RGB)
    with pytest.raises(InputError, match="labels_path"):
        open_dataset(folder, resolution=8, labels_path=tmp_path / "x.npy")


@pytest.mark.parametrize("res", [0, -8, 8.0, True, "64", None])
def test_resolution_must_be_positive_int(tmp_path, res):
    np.save(tmp_path / "a.npy", RGB)
    with pytest.raises(InputError) as e:
        open_dataset(tmp_path / "a.npy", resolution=res)
    assert "resolution must be a positive integer" in one_line(e, "resolution")


@pytest.mark.parametrize("kw", [{"channels": 2}, {"channels": 4}, {"seed": -1}, {"verify": "x"}])
def test_other_bad_arguments(tmp_path, kw):
    np.save(tmp_path / "a.npy", RGB)
    with pytest.raises(InputError):
        open_dataset(tmp_path / "a.npy", resolution=8, **kw)


def test_check_resolution():
    assert check_resolution(64, (32, 64, 128), "dcgan") == 64
    assert check_resolution(np.int64(7)) == 7
    with pytest.raises(InputError) as e:
        check_resolution(48, [128, 32, 64], "dcgan")
    assert str(e.value) == "resolution 48 is not supported by dcgan; choose from 32, 64, 128"
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="positive integer"):
            check_resolution(bad, (32,))


# --------------------------------------------------------------------------------------------
# real data: scikit-learn's 8x8 digits


def test_sklearn_digits_npz_round_trip(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    u8 = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    np.savez(tmp_path / "digits.npz", images=u8, labels=digits.target)
    ds = open_dataset(tmp_path / "digits.npz", resolution=8, channels=1)
    assert len(ds) == 1797 and ds.num_classes == 10
    got = torch.stack([ds[i][0] for i in range(0, 1797, 97)])
    assert torch.equal(got, expected_signed(u8[::97, :, :, None]))
    assert [int(ds[i][1]) for i in range(0, 1797, 97)] == digits.target[::97].tolist()


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_files_are_decoded_once_then_served_from_memory(tmp_path, monkeypatch, kind):
    import impasto.data.files as files_mod  # the module that decodes the files

    src = (write_tree(tmp_path / "tree", RGB) if kind == "folder"
           else write_zip(tmp_path / "imgs.zip", RGB))
    ds = open_dataset(src, resolution=8)
    calls = []
    real = files_mod.load_image
    monkeypatch.setattr(files_mod, "load_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = stack(ds)
    ds.set_epoch(1)
    second = stack(ds)
    assert len(calls) == len(ds) == 6  # the second epoch decoded nothing
    assert torch.equal(first, second)
    # over the memory budget, every read decodes again (same pixels)
    monkeypatch.setattr(type(ds), "MEMORY_CACHE_BYTES", 0)
    big = open_dataset(src, resolution=8)
    calls.clear()
    assert torch.equal(stack(big), first) and torch.equal(stack(big), first)
    assert len(calls) == 12
