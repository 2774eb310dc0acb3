"""impasto.data: flips, seeded loaders, skipped corrupt files, cache files."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data.distributed import DistributedSampler

from impasto.data import (
    ArrayDataset,
    CachedDataset,
    build_cache,
    flip_mask,
    make_loader,
    open_dataset,
)
from impasto.errors import InputError

RNG = np.random.default_rng(11)
IMGS = RNG.integers(0, 256, size=(32, 9, 9, 3), dtype=np.uint8)


def items(ds) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_tree(root: Path, n: int = 6) -> Path:
    for i in range(n):
        p = root / ("cls_b" if i % 2 else "cls_a") / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(png(IMGS[i]))
    return root


def data_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "impasto.data" and r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------------------------
# flips


def test_hflip_flips_exactly_the_masked_items_reproducibly():
    plain = items(ArrayDataset(IMGS, resolution=8))
    ds = ArrayDataset(IMGS, resolution=8, hflip=True, seed=5)
    mask = flip_mask(32, 5, 0)
    assert 8 <= int(mask.sum()) <= 24  # about half
    got = items(ds)
    for i in range(32):
        want = plain[i].flip(-1) if mask[i] else plain[i]
        assert torch.equal(got[i], want), i
        assert not torch.equal(plain[i].flip(-1), plain[i])  # a flip is visible
    # the same seed gives the same flips; another epoch or seed gives others
    assert torch.equal(items(ArrayDataset(IMGS, resolution=8, hflip=True, seed=5)), got)
    ds.set_epoch(1)
    mask1 = flip_mask(32, 5, 1)
    assert not torch.equal(mask1, mask)
    got1 = items(ds)
    assert all(torch.equal(got1[i], plain[i].flip(-1) if mask1[i] else plain[i]) for i in range(32))
    assert not torch.equal(flip_mask(32, 6, 0), mask)
    # the mask does not depend on the order the items are read in
    ds.set_epoch(0)
    assert torch.equal(torch.stack([ds[i][0] for i in reversed(range(32))]).flip(0), got)


def test_loader_epochs_reproducible_with_flips_and_shuffle():
    labels = np.arange(32) % 4

    def run(seed):
        ds = ArrayDataset(IMGS, labels, resolution=8, hflip=True, seed=3)
        loader = make_loader(ds, 8, seed=seed)
        return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(2)]

    a, b, c = run(0), run(0), run(1)
    flat = lambda r: [t for ep in r for batch in ep for t in batch]  # noqa: E731
    assert len(a[0]) == 4 and a[0][0][0].shape == (8, 3, 8, 8) and a[0][0][1].dtype == torch.int64
    assert all(torch.equal(p, q) for p, q in zip(flat(a), flat(b)))
    assert not all(torch.equal(p, q) for p, q in zip(flat(a), flat(c)))
    # the two epochs differ (order and flips), and each holds every item once
    assert not torch.equal(a[0][0][0], a[1][0][0])
    for ep in a:
        seen = torch.cat([y for _, y in ep])
        assert sorted(seen.tolist()) == sorted(labels.tolist())


def test_loader_resume_and_unshuffled_order():
    ds = ArrayDataset(IMGS, resolution=8)
    loader = make_loader(ds, 4, shuffle=False, drop_last=False)
    first = torch.cat([x for x, _ in loader])
    assert torch.equal(first, items(ds))
    shuffled = make_loader(ds, 4, seed=9)
    epochs = [torch.cat([x for x, _ in shuffled]) for _ in range(3)]
    resumed = make_loader(ds, 4, seed=9)
    resumed.set_epoch(2)
    assert torch.equal(torch.cat([x for x, _ in resumed]), epochs[2])


def test_loader_with_distributed_sampler():
    ds = ArrayDataset(IMGS, np.arange(32), resolution=8)
    rank_labels = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=4)
        loader = make_loader(ds, 4, sampler=sampler, seed=4)
        epochs = [torch.cat([y for _, y in loader]).tolist() for _ in range(2)]
        assert epochs[0] != epochs[1]  # set_epoch reached the sampler
        rank_labels.append(epochs[0])
    assert sorted(rank_labels[0] + rank_labels[1]) == list(range(32))


def test_loader_rejects_batch_larger_than_dataset():
    ds = ArrayDataset(IMGS[:3], resolution=8)
    with pytest.raises(InputError, match="3 images, fewer than the batch size 4"):
        make_loader(ds, 4)
    assert len(make_loader(ds, 4, drop_last=False)) == 1
    with pytest.raises(InputError, match="batch_size"):
        make_loader(ds, 0)


def test_zip_with_worker_processes(tmp_path):
    z = tmp_path / "w.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(8):
            zf.writestr(f"imgs/{i}.png", png(IMGS[i]))
    ds = open_dataset(z, resolution=8)
    assert ds.num_classes == 0
    ds[0]  # opens the archive in this process before the workers fork
    batches = make_loader(ds, 4, shuffle=False, num_workers=2)
    got = torch.cat([x for x, _ in batches])
    assert torch.equal(got, items(ArrayDataset(IMGS[:8], resolution=8)))


# --------------------------------------------------------------------------------------------
# corrupt files


def corrupt_tree(root: Path) -> Path:
    write_tree(root, 4)
    good = png(IMGS[10])
    (root / "cls_a" / "garbage.png").write_bytes(b"\x89PNG but not really")
    (root / "cls_b" / "empty.jpg").write_bytes(b"")
    (root / "cls_b" / "trunc.png").write_bytes(good[: len(good) // 2])  # header intact
    (root / "cls_a" / "readme.txt").write_text("not an image: ignored, not skipped")
    return root


def test_corrupt_files_reported_once_full_verify(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="impasto.data")
    ds = open_dataset(corrupt_tree(tmp_path / "c"), resolution=8, verify="full")
    assert len(ds) == 4
    assert sorted(ds.skipped) == ["cls_a/garbage.png", "cls_b/empty.jpg", "cls_b/trunc.png"]
    loader = make_loader(ds, 2)
    for _ in range(2):
        assert sum(len(y) for _, y in loader) == 4
    records = data_warnings(caplog)
    assert len(records) == 1
    msg = records[0].getMessage()
    assert "skipped 3 of 7" in msg and "garbage.png" in msg and "trunc.png" in msg


def test_corrupt_files_header_verify_late_failure_logged_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="impasto.data")
    ds = open_dataset(corrupt_tree(tmp_path / "c"), resolution=8)  # verify="header"
    assert sorted(ds.skipped) == ["cls_a/garbage.png", "cls_b/empty.jpg"]
    assert len(ds) == 5 and ds.classes == ["cls_a", "cls_b"]
    assert len(data_warnings(caplog)) == 1 and "skipped 2 of 7" in caplog.records[0].getMessage()
    loader = make_loader(ds, 5, shuffle=False)
    epochs = [torch.cat([x for x, _ in loader]) for _ in range(2)]
    records = data_warnings(caplog)
    assert len(records) == 2 and "trunc.png" in records[1].getMessage()
    assert sorted(ds.skipped)[-1] == "cls_b/trunc.png"
    assert torch.equal(epochs[0], epochs[1])
    # trunc.png (index 4, the last) is replaced by the next readable item: index 0
    assert torch.equal(epochs[0][4], epochs[0][0])


# --------------------------------------------------------------------------------------------
# cache


def test_cache_round_trip_exact(tmp_path):
    src = write_tree(tmp_path / "src", 6)
    direct = open_dataset(src, resolution=8, hflip=True, seed=2)
    path = build_cache(direct, tmp_path / "c.pt", 8, 3)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["c.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["images"].dtype == torch.uint8 and tuple(raw["images"].shape) == (6, 3, 8, 8)
    assert raw["labels"].tolist() == [0, 0, 0, 1, 1, 1] and raw["classes"] == ["cls_a", "cls_b"]
    assert (raw["resolution"], raw["channels"], raw["version"]) == (8, 3, 1)
    cached = CachedDataset(path, hflip=True, seed=2)
    assert cached.classes == direct.classes and cached.num_classes == 2
    for epoch in (0, 1):
        direct.set_epoch(epoch)
        cached.set_epoch(epoch)
        assert torch.equal(items(cached), items(direct))
        assert [int(cached[i][1]) for i in range(6)] == [int(direct[i][1]) for i in range(6)]


def test_open_dataset_cache_builds_once_and_checks(tmp_path):
    np.save(tmp_path / "a.npy", IMGS[:5, :, :, :1])  # grey, 1 channel
    cache = tmp_path / "a.pt"
    first = open_dataset(tmp_path / "a.npy", resolution=6, channels=1, cache=cache)
    assert isinstance(first, CachedDataset) and first.num_classes == 0
    stamp = cache.stat().st_mtime_ns
    again = open_dataset(tmp_path / "a.npy", resolution=6, channels=1, cache=cache)
    assert cache.stat().st_mtime_ns == stamp
    direct = open_dataset(tmp_path / "a.npy", resolution=6, channels=1)
    assert torch.equal(items(again), items(direct))
    assert [int(again[i][1]) for i in range(5)] == [-1] * 5
    assert torch.equal(items(open_dataset(cache, resolution=6, channels=1)), items(direct))

    with pytest.raises(InputError, match=r"a\.pt: cache holds resolution 6, not the 8"):
        open_dataset(tmp_path / "a.npy", resolution=8, channels=1, cache=cache)
    with pytest.raises(InputError, match="1-channel"):
        open_dataset(tmp_path / "a.npy", resolution=6, channels=3, cache=cache)
    np.save(tmp_path / "b.npy", IMGS[:5])
    with pytest.raises(InputError, match="built from"):
        open_dataset(tmp_path / "b.npy", resolution=6, channels=1, cache=cache)
    with pytest.raises(InputError, match="not the 3x8x8"):
        build_cache(direct, tmp_path / "x.pt", 8, 3)


def test_bad_cache_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(InputError) as e:
        CachedDataset(tmp_path / "junk.pt")
    assert "junk.pt" in str(e.value) and "\n" not in str(e.value)
    torch.save({"images": torch.zeros(2, 3, 4, 4)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="missing"):
        open_dataset(tmp_path / "other.pt", resolution=4)
    with pytest.raises(InputError, match="does not exist"):
        build_cache(ArrayDataset(IMGS[:2], resolution=4), tmp_path / "no" / "c.pt", 4, 3)


def test_cache_from_source_leaves_out_corrupt(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="impasto.data")
    src = corrupt_tree(tmp_path / "c")
    path = build_cache(src, tmp_path / "c.pt", 8, 1)
    cached = CachedDataset(path, resolution=8, channels=1)
    assert len(cached) == 4  # trunc.png, missed by the header check, is left out too
    direct = open_dataset(src, resolution=8, channels=1, verify="full")
    assert torch.equal(items(cached), items(direct))
    assert len(data_warnings(caplog)) == 3  # header check; cache build; the `direct` check
