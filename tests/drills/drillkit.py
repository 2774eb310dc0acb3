"""What the drills (#13: hostile input, kills, damage, divergence, malicious pickles, Ctrl-C)
share: one small world of good files made once per session (images, a few-step GAN run and
classifier run trained through the CLI, a per-style model file), the one-line check of a
command's outcome, subprocesses of the ``impasto`` command, and the malicious pickle.

Test modules import it (``from drillkit import ...``; pytest puts this folder on the path) and
name its fixtures in their namespace (``drill_world = drillkit.drill_world``): a conftest.py
here would take the place of tests/conftest.py as the module ``conftest`` that other test
folders import from.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

SRC = Path(__file__).resolve().parents[2] / "src"

#: A DCGAN small enough to train a step in milliseconds.
GAN_TINY = ["--base-width", "8", "--z-dim", "16", "--batch-size", "8", "--samples", "4",
            "--precision", "fp32", "--device", "cpu", "--log-every", "1", "--no-tensorboard",
            "-q"]
#: A LeNet on 8 px images.
CLS_TINY = ["--image-size", "8", "--width", "4", "--batch-size", "16", "--precision", "fp32",
            "--device", "cpu", "--no-tensorboard", "-q"]
#: Gatys with two shallow layers (the real VGG19 weights, a few convolutions).
SHALLOW = ["--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1", "--size", "32",
           "--device", "cpu", "--precision", "fp32", "-q"]

_WORLD: SimpleNamespace | None = None


def cli(argv: list[Any]) -> tuple[int, str, str]:
    """``impasto argv`` in-process: ``(status, stdout, stderr)``. Python's warnings shown in
    the call end up in stderr, as a user would see them."""
    import warnings

    from impasto.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _to_stderr
        rc = main([os.fspath(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"{filename}:{lineno}: {category.__name__}: {message}\n")


def one_line(err: str) -> str:
    """The one line of ``err`` (fails on a traceback, a warning or several lines)."""
    assert "Traceback" not in err, err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    return lines[0]


def make_images(folder: Path, n: int = 16, size: int = 32, seed: int = 0) -> Path:
    """``n`` RGB PNGs: a coloured square on a plain ground."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = np.zeros((size, size, 3), np.uint8)
        arr[..., i % 3] = 200
        top, left = rng.integers(0, size // 2, 2)
        arr[top : top + size // 3, left : left + size // 3] = rng.integers(0, 256, 3)
        Image.fromarray(arr).save(folder / f"{i:02d}.png")
    return folder


def labelled_npz(path: Path, n: int = 64, seed: int = 0) -> Path:
    """``n`` grey 8x8 images of 4 classes (a bright quadrant) with labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 2)
        images[i, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 180
    np.savez(path, images=images, labels=labels)
    return path


def world(root: Path) -> SimpleNamespace:
    """The good files every drill starts from, made once per session under ``root``."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    from conftest import tiny_transformer

    from impasto.cli import main
    from impasto.style.fast import save_fast_style

    images = make_images(root / "images")
    digits = labelled_npz(root / "digits.npz")
    gan_run = root / "gan.run"
    assert main(["gan", "train", str(images), "--run", str(gan_run), "--steps", "2",
                 "--ckpt-every", "1", "--keep-last", "5", *GAN_TINY]) == 0
    cls_run = root / "cls.run"
    assert main(["classify", "train", str(digits), "--run", str(cls_run), "--steps", "2",
                 "--eval-every", "2", *CLS_TINY]) == 0
    fast = save_fast_style(tiny_transformer(0), root / "fast.pt", {"style": {"name": "x"}})
    _WORLD = SimpleNamespace(
        root=root, images=images, photo=images / "00.png", digits=digits,
        gan_run=gan_run, gan_ckpt=gan_run / "ckpt-000000002.pt",
        cls_run=cls_run, cls_ckpt=cls_run / "ckpt-000000002.pt", fast=fast,
    )
    return _WORLD


@pytest.fixture(scope="session")
def drill_world(tmp_path_factory) -> SimpleNamespace:
    """:func:`world`, once per session (the drill modules share it: each has this fixture
    under its name, ``drill_world = drillkit.drill_world``)."""
    return world(tmp_path_factory.mktemp("drill-world"))


# --------------------------------------------------------------------------------------------
# subprocesses


def command(*argv: Any, python_flags: tuple[str, ...] = ()) -> list[str]:
    """The argv of ``python -m impasto ARGV`` with this checkout's sources first."""
    return [sys.executable, *python_flags, "-m", "impasto", *map(os.fspath, argv)]


def environment() -> dict[str, str]:
    """This process's environment with this checkout's ``src`` first and one thread."""
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def popen(*argv: Any, python_flags: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start ``impasto argv`` (text pipes for stdout and stderr)."""
    return subprocess.Popen(command(*argv, python_flags=python_flags), env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class ForkServer:
    """The drill's side of :mod:`forkserver`: ``impasto`` commands as forked children of one
    process that imported torch once."""

    def __init__(self, log: Path) -> None:
        self.log = open(log, "w")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py"))], env=environment(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def start(self, *argv: Any, stderr: Path | None = None, session: bool = False) -> int:
        """Start ``impasto argv`` (stderr to the file ``stderr``; in a session of its own, a
        process group, with ``session``); returns its pid. :meth:`status` must follow."""
        request = {"argv": [os.fspath(a) for a in argv],
                   "stderr": None if stderr is None else os.fspath(stderr), "session": session}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())["pid"]

    def status(self) -> int:
        """The exit status of the command started last (-N: killed by signal N); waits."""
        return json.loads(self._line())["status"]

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        assert line, f"the fork server died: {self.proc.wait()}"
        return line

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


_SERVER: ForkServer | None = None


@pytest.fixture(scope="session")
def fork_server(tmp_path_factory) -> ForkServer:
    """One :class:`ForkServer` for the session (the drill modules share it)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = ForkServer(tmp_path_factory.mktemp("forkserver") / "server.log")
        atexit.register(_SERVER.close)
    return _SERVER


def temporaries(folder: Path) -> list[str]:
    """The temporary files of interrupted atomic writes in ``folder`` (``.<name>.<r>.tmp``)."""
    return sorted(p.name for p in folder.glob(".*.tmp"))


# --------------------------------------------------------------------------------------------
# malicious pickles


class Trap:
    """Unpickling it would call ``open(marker, "w")``: the marker file appears if any code
    path runs a pickled object's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def trap_zip(path: Path, marker: Path, like: dict[str, Any] | None = None) -> Path:
    """A torch.save archive (what checkpoints and model files are) whose dict ``like`` (a
    checkpoint's keys, say) carries the trap."""
    torch.save({**(like or {}), "trap": Trap(marker)}, path)
    return path


def trap_pickle(path: Path, marker: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    """A bare pickle file (the format of torch.save before 1.6, or ``pickle.dump``'s) holding
    the trap; torch warns about a protocol other than 2 (impasto must not show it)."""
    path.write_bytes(pickle.dumps({"state_dict": Trap(marker)}, protocol=protocol))
    return path


def checkpoint_keys(kind: str) -> dict[str, Any]:
    """The keys of a checkpoint of ``kind``, with nothing in them."""
    return {"format_version": 2, "kind": kind, "config": {}, "step": 1, "images_seen": 0,
            "models": {}, "optimizers": {}, "rng": {}, "extra": {}}


def strict_json_lines(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file, refusing the bare NaN/Infinity tokens JSON lacks."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{path}: bare {token} in JSON")

    return [json.loads(line, parse_constant=refuse)
            for line in path.read_text().splitlines() if line.strip()]
