"""The damaged-checkpoint drill (#13): a GAN checkpoint with bytes overwritten in its middle,
NaN or random values in G_ema's first convolution (with the checksum kept, rewritten to match,
or absent as in files from before checksums), an infinite batch-norm variance, or cut short.
``gan sample`` and ``gan train --resume`` must refuse each with exit status 2 and one line,
writing nothing: torch's zip reader checks no CRC, so only impasto's checksum and finite check
stand between such a file and a garbage grid.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drillkit
import pytest
import torch
from drillkit import GAN_TINY, cli, one_line

from impasto.train.checkpoint import tensor_digest

drill_world = drillkit.drill_world  # a fixture
pytestmark = pytest.mark.usefixtures("one_thread")

DAMAGED = "damaged checkpoint (its contents do not match the checksum"
CORRUPT = "truncated or corrupt checkpoint"
NON_FINITE = "holds NaN or infinite values"


def _first_conv(state: dict[str, Any]) -> str:
    return next(k for k, v in state.items() if k.endswith("weight") and v.dim() == 4)


def _edited(edit: Callable[[dict[str, Any]], None], digest: str) -> Callable[[bytes, Path], bytes]:
    """A change of the checkpoint's contents; ``digest``: "keep" the old checksum (it no
    longer matches), "rewrite" it to match (a deliberate edit), or "drop" it (an old file)."""
    def make(data: bytes, tmp: Path) -> bytes:
        src = tmp / "src.pt"
        src.write_bytes(data)
        ckpt = copy.deepcopy(torch.load(src, weights_only=True))
        edit(ckpt)
        parts = {k: ckpt.get(k) for k in ("models", "optimizers", "rng", "extra")}
        if digest == "rewrite":
            ckpt["digest"] = {"sha256": tensor_digest(parts)}
        elif digest == "drop":
            ckpt.pop("digest")
        torch.save(ckpt, src)
        return src.read_bytes()
    return make


def _g_ema_conv(value: str) -> Callable[[dict[str, Any]], None]:
    def edit(ckpt: dict[str, Any]) -> None:
        state = ckpt["models"]["G_ema"]["model"]
        w = state[_first_conv(state)]
        if value == "nan":  # in place (the tensor may be channels-last: no flat view)
            every7th = torch.zeros(w.numel(), dtype=torch.bool)
            every7th[::7] = True
            w.masked_fill_(every7th.reshape(w.shape), float("nan"))
        else:
            w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 3)
    return edit


def _d_running_var_inf(ckpt: dict[str, Any]) -> None:
    state = ckpt["models"]["D"]
    key = next(k for k in state if k.endswith("running_var"))
    state[key][0] = float("inf")


def _overwrite_middle(data: bytes, tmp: Path) -> bytes:
    mid = len(data) // 2
    return data[:mid] + b"\x5a" * 2000 + data[mid + 2000 :]


CASES: dict[str, tuple[Callable[[bytes, Path], bytes], tuple[str, ...]]] = {
    "2000-bytes-overwritten-mid-file": (_overwrite_middle, (DAMAGED, CORRUPT)),
    "nan-in-g-ema-conv-checksum-kept": (_edited(_g_ema_conv("nan"), "keep"), (DAMAGED,)),
    "nan-in-g-ema-conv-checksum-rewritten": (_edited(_g_ema_conv("nan"), "rewrite"),
                                             (NON_FINITE + " (models/G_ema/model/convs.0",)),
    "nan-in-g-ema-conv-no-checksum": (_edited(_g_ema_conv("nan"), "drop"), (NON_FINITE,)),
    "random-g-ema-conv-checksum-kept": (_edited(_g_ema_conv("random"), "keep"), (DAMAGED,)),
    "inf-batch-norm-variance-checksum-rewritten": (_edited(_d_running_var_inf, "rewrite"),
                                                   (NON_FINITE + " (models/D/",)),
    "cut-in-half": (lambda data, tmp: data[: len(data) // 2], (CORRUPT,)),
    "cut-to-the-first-kilobyte": (lambda data, tmp: data[:1024], (CORRUPT,)),
}


@pytest.fixture
def damaged_run(drill_world, tmp_path, request) -> tuple[Path, Path, tuple[str, ...]]:
    """A copy of the drill's GAN run whose newest checkpoint is damaged as the case says."""
    damage, expect = CASES[request.param]
    run = tmp_path / "run"
    shutil.copytree(drill_world.gan_run, run)
    ckpt = run / drill_world.gan_ckpt.name
    ckpt.write_bytes(damage(ckpt.read_bytes(), tmp_path))
    (tmp_path / "src.pt").unlink(missing_ok=True)
    return run, ckpt, expect


def _refused(argv: list[Any], expect: tuple[str, ...], ckpt: Path) -> None:
    rc, out, err = cli(argv)
    assert rc == 2, err
    line = one_line(err)
    assert ckpt.name in line and any(e in line for e in expect), line


@pytest.mark.parametrize("damaged_run", list(CASES), indirect=True)
def test_gan_sample_refuses(damaged_run, tmp_path):
    run, ckpt, expect = damaged_run
    grid = tmp_path / "grid.png"
    _refused(["gan", "sample", ckpt, "--grid", grid, "-n", "4", "--device", "cpu"], expect, ckpt)
    _refused(["gan", "sample", run, "--grid", grid, "-n", "4", "--device", "cpu"], expect, ckpt)
    assert not grid.exists()


@pytest.mark.parametrize("damaged_run", list(CASES), indirect=True)
def test_resume_refuses(damaged_run):
    run, ckpt, expect = damaged_run
    before = sorted(p.name for p in run.iterdir())
    _refused(["gan", "train", "--resume", ckpt, "--steps", "4", *GAN_TINY], expect, ckpt)
    assert sorted(p.name for p in run.iterdir()) == before
