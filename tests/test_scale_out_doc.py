"""The commands of docs/scale-out.md, run as written with tiny settings (gloo, CPU).

The code blocks marked ``<!-- tested: NAME -->`` are read out of the page. Only site-specific
values are replaced: ``torchrun`` by this interpreter's ``torch.distributed.run``, the process
count, ``--master_addr``/``--master_port`` (localhost and a free port), ``--device`` (cpu),
the ``/shared/`` prefix of paths (a temporary folder, which is also the working directory),
the resolution and the run length (``--kimg`` becomes ``--steps``); tiny network sizes are
appended. Then the two-machine pair (both "machines" on localhost, one process each: 2 ranks)
trains 3 steps; its step-3 checkpoint is put aside, and the resume command (one machine, two
processes) continues the run from step 2. The two step-3 checkpoints must be equal bit for
bit: the resume is exact, and one machine continues what two machines started.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import impasto
from conftest import assert_same, free_port
from impasto.train import load_checkpoint, read_stats

DOC = Path(__file__).resolve().parents[1] / "docs" / "scale-out.md"
TINY = ["--z-dim", "8", "--base-width", "8", "--batch-size", "4", "--samples", "4",
        "--precision", "fp32", "--no-tensorboard", "--log-every", "1", "--ckpt-every", "1",
        "--deterministic", "--seed", "3"]


def documented_commands(text: str) -> dict[str, list[list[str]]]:
    """``{name: [argv, ...]}`` of the code blocks after ``<!-- tested: name -->``: one argv per
    command (backslash continuations joined, comment lines dropped)."""
    blocks = re.findall(r"<!-- tested: ([\w-]+) -->\s*```sh\n(.*?)```", text, flags=re.S)
    out = {}
    for name, body in blocks:
        joined = body.replace("\\\n", " ")
        out[name] = [shlex.split(line) for line in joined.splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
    return out


def localise(argv: list[str], root: Path, *, nproc: int, port: int | None, steps: int) -> list[str]:
    """The site-specific values of a documented command replaced (see the module doc)."""
    assert argv[0] == "torchrun", argv
    out = [sys.executable, "-m", "torch.distributed.run"]
    it = iter(argv[1:])
    for tok in it:
        key, _, value = tok.partition("=")
        if key == "--nproc_per_node":
            tok = f"{key}={nproc}"
        elif key == "--master_addr":
            tok = f"{key}=127.0.0.1"
        elif key == "--master_port":
            assert port is not None
            tok = f"{key}={port}"
        elif tok == "--device":
            next(it)
            out += ["--device", "cpu"]
            continue
        elif tok == "--kimg":
            next(it)
            out += ["--steps", str(steps)]
            continue
        elif tok == "--resolution":
            next(it)
            out += ["--resolution", "32"]
            continue
        elif tok.startswith("/shared/"):
            tok = str(root / tok[len("/shared/"):])
        out.append(tok)
    return out + TINY


def run_all(commands: list[list[str]], cwd: Path, timeout: float = 240.0) -> list[str]:
    """Start every command at once (machines of one run), wait for all; returns their stderr.
    The processes import the impasto this test imports (a relative PYTHONPATH would not reach
    it from ``cwd``)."""
    src = str(Path(impasto.__file__).resolve().parents[1])
    paths = [src, *(str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p)]
    # One thread per process in every layout: torchrun sets OMP_NUM_THREADS=1 only when it
    # starts several processes, and another thread count sums in another order (last bits).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    errs = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            errs.append(err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return errs


@pytest.fixture(scope="module")
def commands():
    found = documented_commands(DOC.read_text(encoding="utf-8"))
    assert set(found) >= {"one-machine", "two-machines", "resume"}, sorted(found)
    assert len(found["one-machine"]) == 1 and len(found["resume"]) == 1
    assert len(found["two-machines"]) == 2
    return found


def test_commands_are_torchrun_of_the_impasto_cli(commands):
    for name, argvs in commands.items():
        for argv in argvs:
            assert argv[0] == "torchrun", name
            i = argv.index("-m")
            assert argv[i + 1 : i + 4] == ["impasto.cli", "gan", "train"], name
    node_ranks = sorted(next(t for t in argv if t.startswith("--node_rank="))
                        for argv in commands["two-machines"])
    assert node_ranks == ["--node_rank=0", "--node_rank=1"]


def test_one_machine_command_trains_what_the_two_machine_command_trains(commands):
    (one,) = commands["one-machine"]

    def training_args(argv):
        args = argv[argv.index("train") + 1 :]
        if "--device" in args:  # the two-machine example trains on GPUs
            i = args.index("--device")
            del args[i : i + 2]
        return [a[len("/shared/"):] if a.startswith("/shared/") else a for a in args]

    for two in commands["two-machines"]:
        assert training_args(one) == training_args(two)
    (resume,) = commands["resume"]
    assert resume[: resume.index("-m")] == one[: one.index("-m")]  # the same launcher
    assert resume[resume.index("--resume") + 1] == one[one.index("--run-dir") + 1]


def test_documented_commands_train_resume_exactly(commands, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "faces").mkdir()
    for i in range(16):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "faces" / f"{i:02d}.png")

    # two "machines" on localhost, one process each: 3 steps
    port = free_port()
    run_all([localise(c, tmp_path, nproc=1, port=port, steps=3)
             for c in commands["two-machines"]], tmp_path)
    run = tmp_path / "runs" / "faces"
    straight = load_checkpoint(run / "ckpt-000000003.pt", kind="gan/dcgan")
    assert straight["extra"]["world_size"] == 2 and len(straight["extra"]["rng_per_rank"]) == 2
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [
        "ckpt-000000001.pt", "ckpt-000000002.pt", "ckpt-000000003.pt"]  # rank 0 alone wrote

    # back to step 2, then the resume command on one machine with two processes
    (run / "ckpt-000000003.pt").unlink()
    (run / "latest.json").write_text('{"file": "ckpt-000000002.pt", "step": 2}\n')
    (resume,) = commands["resume"]
    (err,) = run_all([localise(resume, tmp_path, nproc=2, port=None, steps=3)], tmp_path)
    assert "start afresh" not in err  # the same number of processes: nothing reseeded
    resumed = load_checkpoint(run / "ckpt-000000003.pt", kind="gan/dcgan")
    assert_same(resumed["models"], straight["models"], "models")
    assert_same(resumed["optimizers"], straight["optimizers"], "optimizers")
    assert_same(resumed["extra"]["rng_per_rank"], straight["extra"]["rng_per_rank"], "rng")
    assert [s["step"] for s in read_stats(run / "stats.jsonl")] == [1, 2, 3]
