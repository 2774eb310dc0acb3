"""Shared fixtures: a tiny random VGG for fast unit tests, and the real weights when present;
and helpers the training tests share (test modules import them: ``from conftest import ...``,
which works because pytest puts this folder on ``sys.path``; subprocess workers insert it):
bit-for-bit comparison of checkpoints, several ``gloo`` processes, synthetic images, one-line
CLI errors, the PSNR of images as they would be saved (8-bit), a model's inference output, and
the host synchronisations a CUDA run makes, step by step.

Tests marked ``cuda`` are skipped on a machine without a CUDA device (``pytest -m cuda`` runs
only them; ``benchmarks/gpu_check.py`` does so on a lent GPU)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from impasto.nets import VGG19Features

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
TINY_WIDTHS = (4, 8, 8, 8, 8)


def tiny_vgg(layers=CONTENT_LAYERS + STYLE_LAYERS, seed: int = 0, pooling: str = "max"):
    """A VGG19 with 4-8 channels and seeded random weights: fast, for unit tests."""
    torch.manual_seed(seed)
    net = VGG19Features(layers, weights=None, widths=TINY_WIDTHS, pooling=pooling)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    return net


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Skip the tests marked ``cuda`` where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # CI and every developer machine have shared/ beside the repo: a missing folder is an
    # error, not a reason to skip.
    assert (SHARED / "styletransfer").is_dir(), f"test data missing: {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def nst_stylised(shared_data, tmp_path_factory) -> Path:
    """tubingen x starry_night stylised at 64 px (20 fp32 Gatys iterations, seed 0, both
    inputs resized to a longer side of 64 px), made from ../shared/data once per session. TV is
    off: the metrics tests' figures were pinned when the TV term at its old scale changed
    nothing at this size (the output then was within 2 levels of this one)."""
    import torch as _torch

    from impasto.io import load_image, resize, save_image, to_tensor
    from impasto.style import GatysConfig, GatysStyleTransfer

    folder = shared_data / "styletransfer"
    content, style = (to_tensor(resize(load_image(folder / sub / name), longest=64))
                      for sub, name in (("content", "tubingen.jpg"), ("style", "starry_night.jpg")))
    threads = _torch.get_num_threads()
    _torch.set_num_threads(1)
    try:
        out = GatysStyleTransfer(GatysConfig(size=64, scales=1, iterations=20, tv_weight=0.0,
                                             precision="fp32", device="cpu", seed=0)
                                 ).run(content, [style])
    finally:
        _torch.set_num_threads(threads)
    return save_image(out, tmp_path_factory.mktemp("nst") / "tubingen_starry_night.png")


@pytest.fixture(scope="module")
def one_thread():
    """Runs a module on one torch thread: its tensors are tiny, so thread hand-off costs more
    than it saves, and far more on a loaded 2-core machine. Restores the count afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# --------------------------------------------------------------------------------------------
# bit-for-bit comparison (exact resume, identical ranks)

#: What a resumed run's checkpoint must share with a straight run's.
CHECKPOINT_KEYS = ("step", "images_seen", "models", "optimizers", "rng", "extra")


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive equality of checkpoints, state dicts and results: tensors of the same dtype and
    every bit (``torch.equal``), dicts with the same keys, lists and tuples of the same length,
    anything else ``==``. ``where`` names the place in the message (``"tensors differ at
    models.G.net.0.weight"``)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_checkpoints(a: Any, b: Any, keys: Sequence[str] = CHECKPOINT_KEYS) -> None:
    """Two checkpoints (files, or dicts from :func:`~impasto.train.load_checkpoint`) equal bit
    for bit in ``keys``."""
    from impasto.train import load_checkpoint

    a = a if isinstance(a, Mapping) else load_checkpoint(a)
    b = b if isinstance(b, Mapping) else load_checkpoint(b)
    for key in keys:
        assert_same(a[key], b[key], key)


# --------------------------------------------------------------------------------------------
# several processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script: str | os.PathLike[str], *args: str, world_size: int = 2,
              timeout: float = 180.0) -> list[str]:
    """Run ``python script *args`` as ranks ``0 .. world_size - 1`` of a process group on this
    machine (the environment ``torchrun`` sets, one thread each) and return each rank's
    stdout. A rank that fails fails the test with the end of its stderr; no process outlives
    the call."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(
            [sys.executable, str(script), *map(str, args)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs


# --------------------------------------------------------------------------------------------
# data and the command line


def blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` grey uint8 images ``(n, size, size, 1)``: a bright Gaussian blob at a random place
    on a dark gradient (data for the progressive GAN tests)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        img = 0.2 * xx + np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        out.append(np.clip(img * 200 + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8))
    return np.stack(out)[..., None]


def one_line_error(capsys: Any, argv: list[str], expect: str, *absent: Path) -> str:
    """Run ``impasto argv`` in-process: it must exit with status 2 and one stderr line (no
    traceback) containing ``expect``, leaving none of the ``absent`` paths; returns the line."""
    from impasto.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expect in lines[0], lines[0]
    for p in absent:
        assert not p.exists(), f"{p} was left behind"
    return lines[0]


def psnr8(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) between two float images in ``[0, 1]`` once clamped and rounded to 8 bits, as a
    saved file holds them (inf when identical)."""
    qa, qb = (t.clamp(0, 1).mul(255).round() for t in (a, b))
    mse = (qa - qb).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * float(np.log10(255 ** 2 / mse))


def float_out(model: torch.nn.Module, x: torch.Tensor):
    """``model(x)`` under ``torch.inference_mode``."""
    with torch.inference_mode():
        return model(x)


# --------------------------------------------------------------------------------------------
# feed-forward inference (tests/infer, tests/style)


def tiny_transformer(seed: int = 0):
    """A seeded per-style network with 4-8 channels and one residual block, in eval mode."""
    from impasto.nets.transformer import TransformerConfig, TransformerNet

    torch.manual_seed(seed)
    return TransformerNet(TransformerConfig(channels=(4, 8, 8), num_residual=1)).eval()


def noise_image(w: int, h: int, seed: int):
    """A ``w`` x ``h`` RGB PIL image of seeded uniform noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth_image(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """Seeded smooth noise ``(1, 3, h, w)`` in ``[0, 1]``: closer to a photo than white noise."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g),
                                           size=(h, w), mode="bilinear", align_corners=False)


class GridPattern:
    """A 'network' that is not shift-equivariant: it adds a pattern fixed to its input's pixel
    grid (period 4, as a stride-4 network's strokes), so under a pan the pattern stays still
    while the content moves: flicker (tests/temporal, tests/test_cuda.py)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
        pattern = 0.15 * torch.sin(np.pi / 2 * xs) * torch.cos(np.pi / 2 * ys)
        return (x + pattern).clamp(0, 1)


def sub_pixel_pan(n: int = 8, h: int = 64, w: int = 96, step: float = 1.5, *, cell: int = 8,
                  mode: str = "bicubic") -> list[torch.Tensor]:
    """``n`` frames ``(1, 3, h, w)`` of an image panning ``step`` px per frame (sub-pixel:
    resampled with ``mode``; needs OpenCV); its detail: random values every ``cell`` pixels,
    upsampled bicubically (8: smooth; 2: fine detail)."""
    from impasto.temporal.stabilize import warp_affine_tensor

    g = torch.Generator().manual_seed(0)
    wide = torch.nn.functional.interpolate(
        torch.rand(1, 3, h // cell, (w + 32) // cell, generator=g), size=(h, w + 32),
        mode="bicubic", align_corners=False).clamp(0, 1)
    return [warp_affine_tensor(wide, np.array([[1, 0, 16 - i * step], [0, 1, 0]]), (h, w),
                               mode).clamp(0, 1) for i in range(n)]


def run_cli(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    """``impasto argv`` in-process (paths allowed): ``(status, stdout, stderr)``."""
    from impasto.cli import main

    rc = main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------------------------
# host synchronisations on CUDA


class SyncLog:
    """What :func:`cuda_syncs` recorded: call :meth:`mark` with the step just finished (a
    training run's ``progress`` callback: step 0 before the first step, then after each);
    :meth:`per_step` counts the synchronising CUDA calls made during each step, keyed by step
    (``0``: before the first mark, the setup), the last key being after the last mark."""

    def __init__(self, records: list[Any]) -> None:
        self._records = records

    def mark(self, step: int) -> None:
        self._records.append(("step", int(step)))

    def per_step(self) -> Counter:
        counts: Counter = Counter()
        step = 0
        for r in self._records:
            if isinstance(r, tuple):
                step = r[1] + 1
            elif "synchroniz" in str(r.message):
                counts[step] += 1
        return counts

    def where(self) -> list[str]:
        """``file:line`` of each synchronising call recorded (to find it)."""
        return [f"{r.filename}:{r.lineno}" for r in self._records
                if not isinstance(r, tuple) and "synchroniz" in str(r.message)]


@contextlib.contextmanager
def cuda_syncs() -> Iterator[SyncLog]:
    """Record every CUDA call that makes the host wait for the GPU (``.item()``, a blocking
    copy, ``nonzero``...: ``torch.cuda.set_sync_debug_mode("warn")``) while the block runs."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield SyncLog(records)
        finally:
            torch.cuda.set_sync_debug_mode(previous)


@pytest.fixture(scope="module")
def inst():
    """The instant-style networks in fp32 on the CPU, loaded once per test module."""
    from impasto.style.instant import InstantStyle

    return InstantStyle.from_file(device="cpu", precision="fp32")
