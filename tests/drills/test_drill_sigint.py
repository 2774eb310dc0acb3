"""The Ctrl-C drill (#13).

- Early: ``python -m impasto`` sent SIGINT while it is still importing (its own command-line
  modules, then torch) prints one line, ``impasto: interrupted``, and exits with status 130:
  no KeyboardInterrupt traceback. The moments are found with ``-X importtime``, whose lines
  say which import just finished (the interpreter's own start, before ``impasto`` runs, is out
  of any program's reach and not drilled).
- In training: the first Ctrl-C stops after the step and saves; a second one while that
  checkpoint is being written does not interrupt it (it says it is saving); a third one quits
  (exit 130, no half-written file). The saves are interrupted from inside, deterministically:
  ``torch.save`` is wrapped to signal the process while it writes.
- A terminal's Ctrl-C reaches data-loader workers too: they leave the decision to the main
  process (one message, one checkpoint).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import drillkit
import pytest
import torch
from drillkit import CLS_TINY, GAN_TINY, cli, command, environment, temporaries

import impasto.cli._run as run_module
from impasto.train import load_checkpoint

drill_world = drillkit.drill_world  # a fixture
fork_server = drillkit.fork_server  # a fixture
pytestmark = pytest.mark.usefixtures("one_thread")

INTERRUPTED = "impasto: interrupted"


def _not_importtime(err: str) -> list[str]:
    return [x for x in err.splitlines() if x.strip() and not x.startswith("import time:")]


@pytest.mark.parametrize("after", [
    "impasto.cli._run",  # impasto.cli's own modules: before the command line is parsed
    "impasto.cli",
    "torch",  # the command's heavy import
])
def test_early_ctrl_c_is_one_line(after, drill_world, tmp_path):
    import subprocess

    proc = subprocess.Popen(
        command("gan", "train", drill_world.images, "--run", tmp_path / "run", "--steps", "50",
                *GAN_TINY, python_flags=("-X", "importtime")),
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a suite started in the background (nohup, `&` in a script)
        # ignores SIGINT, and a child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # A hung child is killed after 120 s (then the assertions below fail).
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("import time:") and line.rstrip().split("|")[-1].strip() == after:
                proc.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"{after} was never imported:\n{''.join(seen)[-2000:]}")
        # The rest is read through the same file object: communicate() would read the pipe
        # itself and lose what the loop's buffer already holds (a line cut in two).
        err = "".join(seen) + proc.stderr.read()
        proc.wait(timeout=10)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert _not_importtime(err) == [INTERRUPTED], err[-3000:]
    assert proc.returncode == 130
    assert not (tmp_path / "run").exists()


def test_a_ctrl_c_that_python_would_swallow_is_sent_again():
    """A Ctrl-C landing in importlib's module-lock weakref callback (where Python prints a
    KeyboardInterrupt as "Exception ignored" and goes on: the early drill's rare failure) is
    not raised there but sent again, and then stops the command; anywhere else it raises."""
    import sys

    from impasto.cli import _raise_interrupt

    space: dict = {}
    exec(compile("import sys\ndef cb():\n    return sys._getframe()\n",  # noqa: S102
                 "<frozen importlib._bootstrap>", "exec"), space)
    old = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        _raise_interrupt(signal.SIGINT, space["cb"]())  # deferred: returns
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            time.sleep(5)  # the signal sent again arrives
        assert time.monotonic() - start < 2
        with pytest.raises(KeyboardInterrupt):
            _raise_interrupt(signal.SIGINT, sys._getframe())
    finally:
        signal.signal(signal.SIGINT, old)


# -- two and three Ctrl-Cs in training, in-process --------------------------------------------

TRAIN = {
    "gan": lambda w, run: ["gan", "train", w.images, "--run", run, "--steps", "50",
                           "--ckpt-every", "0", *GAN_TINY],
    "classify": lambda w, run: ["classify", "train", w.digits, "--run", run, "--steps", "50",
                                "--eval-every", "0", "--ckpt-every", "0", *CLS_TINY],
}


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def ctrl_c_at(monkeypatch):
    """``ctrl_c_at(step, during_save)``: the first Ctrl-C after the progress report of
    ``step``, then ``during_save`` more while the first checkpoint is being written."""
    def arm(step: int, during_save: int) -> dict[str, int]:
        seen = {"saves": 0}
        report = run_module.ProgressBar.__call__

        def progress(self, info):
            report(self, info)
            if info.step == step:
                _ctrl_c()

        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            seen["saves"] += 1
            if seen["saves"] == 1:
                for _ in range(during_save):
                    _ctrl_c()
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(run_module.ProgressBar, "__call__", progress)
        monkeypatch.setattr(torch, "save", save)
        return seen
    return arm


@pytest.mark.parametrize("family", list(TRAIN))
def test_a_second_ctrl_c_lets_the_save_finish(family, ctrl_c_at, drill_world, tmp_path):
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    ctrl_c_at(step=3, during_save=1)
    rc, out, err = cli(TRAIN[family](drill_world, run))
    assert rc == 130, err
    assert "Traceback" not in err
    assert run_module.STOP_MESSAGE.strip() in err and run_module.SAVING_MESSAGE in err, err
    (ckpt,) = run.glob("ckpt-*.pt")
    assert load_checkpoint(ckpt)["step"] == 4  # the step under way when Ctrl-C came, saved
    assert temporaries(run) == []
    assert signal.getsignal(signal.SIGINT) is handler  # put back


@pytest.mark.parametrize("family", list(TRAIN))
def test_a_third_ctrl_c_quits(family, ctrl_c_at, drill_world, tmp_path):
    run = tmp_path / "run"
    ctrl_c_at(step=3, during_save=2)
    rc, out, err = cli(TRAIN[family](drill_world, run))
    assert rc == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == INTERRUPTED, err
    assert not list(run.glob("ckpt-*.pt"))  # the interrupted write left nothing half-done
    assert temporaries(run) == []


def test_workers_leave_ctrl_c_to_the_main_process(drill_world, fork_server, tmp_path):
    """Ctrl-C in a terminal signals the whole process group, data-loader workers included:
    one message, one checkpoint."""
    run = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    pid = fork_server.start("gan", "train", drill_world.images, "--run", run, "--steps",
                            "100000", "--ckpt-every", "0", "--workers", "2", *GAN_TINY,
                            stderr=log, session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "stats.jsonl").exists() or not (run / "stats.jsonl").read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        os.killpg(pid, signal.SIGINT)
    except BaseException:
        os.killpg(pid, signal.SIGKILL)
        raise
    finally:
        status = fork_server.status()
    err = log.read_text()
    assert status == 130, err
    assert "Traceback" not in err
    assert err.count("stopping after this step") == 1, err
    (ckpt,) = run.glob("ckpt-*.pt")
    assert load_checkpoint(ckpt)["step"] >= 1
