"""The kill-during-save drill (#13): ``gan train`` checkpointing every step is SIGKILLed the
moment one of its atomic writes is under way (a ``.<name>.<random>.tmp`` file exists), then
resumed, several times. After every kill each checkpoint left loads (checksum and finite check:
a kill never leaves a half-written checkpoint under a checkpoint's name), each resume works,
and after the last one no temporary file is left in the run folder (a resume removes those of
killed writes; impasto's own pattern only). The commands run as forked children of one
process (:mod:`forkserver`), which paid torch's import once.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import drillkit
import pytest
from drillkit import GAN_TINY, ForkServer, temporaries

from impasto.train import load_checkpoint

drill_world = drillkit.drill_world  # a fixture
fork_server = drillkit.fork_server  # a fixture

KILLS = 5
#: Wide enough that a checkpoint takes a few milliseconds to write.
WIDE = ["--base-width", "32", "--ckpt-every", "1", "--keep-last", "3", "--log-every", "1"]


def _newest_step(run: Path) -> int:
    return max((int(p.stem.split("-")[1]) for p in run.glob("ckpt-*.pt")), default=0)


def _kill_during_a_write(server: ForkServer, pid: int, run: Path, after_step: int,
                         timeout: float = 120.0) -> None:
    """SIGKILL ``pid`` as soon as a temporary file shows in ``run`` once a checkpoint past
    ``after_step`` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _newest_step(run) > after_step and temporaries(run):
            os.kill(pid, signal.SIGKILL)
            assert server.status() == -signal.SIGKILL
            return
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)
    server.status()
    pytest.fail(f"no checkpoint write seen in {timeout} s")


def _every_checkpoint_loads(run: Path) -> list[int]:
    return [int(load_checkpoint(c)["step"]) for c in sorted(run.glob("ckpt-*.pt"))]


def test_kills_during_checkpoint_writes(drill_world, fork_server, tmp_path):
    run = tmp_path / "run"
    common = [*GAN_TINY, *WIDE]
    server = fork_server
    log = tmp_path / "stderr.txt"  # the commands' stderr
    orphans = step = 0
    for k in range(KILLS):
        argv = (["gan", "train", drill_world.images, "--run", run] if k == 0
                else ["gan", "train", "--resume", run])
        pid = server.start(*argv, "--steps", "100000", *common, stderr=log)
        _kill_during_a_write(server, pid, run, step)
        orphans += len(temporaries(run))
        steps = _every_checkpoint_loads(run)
        assert steps and steps[-1] > step, steps  # the resume continued the run
        step = steps[-1]
        if (run / "latest.json").exists():  # written atomically: complete or the old one
            json.loads((run / "latest.json").read_text())
    # another program's file stays; one of impasto's own pattern goes
    (run / ".ckpt-000000999.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    (run / "notes.tmp").write_text("not impasto's")
    server.start("gan", "train", "--resume", run, "--steps", str(step + 2), *common,
                 stderr=log)
    assert server.status() == 0, log.read_text()[-3000:]
    assert temporaries(run) == [], temporaries(run)
    assert (run / "notes.tmp").exists()
    assert _every_checkpoint_loads(run)[-1] == step + 2
    assert orphans >= 1  # the kills did land in writes
    print(f"{KILLS} kills, {orphans} temporary files left by them, all removed on resume")
