"""The run skeleton (impasto.train.run.Run): refusals, the deferred NaN guard, the state guard,
abort, checkpoints and the reseed fallback, on a toy one-parameter "family"."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from impasto.errors import InputError
from impasto.train import DistInfo, NonFiniteLossError, load_checkpoint, save_checkpoint
from impasto.train.config import LoggingConfig, RuntimeConfig
from impasto.train.guard import NonFiniteStateError
from impasto.train.run import Run

CPU = torch.device("cpu")
ONE = DistInfo()


@dataclass
class ToyConfig(RuntimeConfig, LoggingConfig):
    run: str = ""
    steps: int = 10


def toy_run(tmp_path, losses, *, read_every=1, resume=None, abort_at=None, ckpt_every=4,
            bn_inf_at=None):
    """Train a toy net for ``len(losses)`` steps; ``losses[i]`` is the loss logged at step
    ``i + 1``. Returns the Run and the steps at which progress was reported."""
    cfg = ToyConfig(run=str(tmp_path / "run"), steps=len(losses), ckpt_every=ckpt_every,
                    log_every=2, tensorboard=False)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    seen = []
    abort = (lambda: seen and seen[-1] + 1 >= abort_at) if abort_at else None
    run = Run(cfg, ONE, CPU, kind="toy/net", resume=resume, legacy_kinds=("toy-old",),
              progress=lambda p: seen.append(p), abort=abort)
    run.track(models={"net": net}, optimizers={"net": opt}, generators={"g": gen},
              extra=lambda: {"note": "toy"})
    run.restore()
    run.read_every = read_every
    with run.session(cfg.steps):
        run.report(lambda r: r.step)
        while run.step < cfg.steps:
            opt.zero_grad()
            x = torch.randn(4, 2, generator=gen)
            net(x).square().mean().backward()
            opt.step()
            if bn_inf_at == run.step + 1:
                net[1].running_var.fill_(math.inf)
            logging_next = run.logging_next
            stop = run.end_step({"loss": torch.tensor(losses[run.step])}, images=4,
                                scalars=lambda: {"lr": 0.1})
            assert run.logging_now == logging_next
            run.checkpoint(force=stop)
            run.report(lambda r: r.step)
            if stop:
                break
    return run, seen


def test_a_clean_run_logs_checkpoints_and_reports(tmp_path):
    run, seen = toy_run(tmp_path, [1.0] * 10)
    assert seen == list(range(11))
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt-*.pt")) == [
        "ckpt-000000004.pt", "ckpt-000000008.pt", "ckpt-000000010.pt"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10]
    assert rows[0]["loss"] == 1.0 and rows[0]["lr"] == 0.1
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt-000000010.pt", kind="toy/net")
    assert ckpt["images_seen"] == 40 and ckpt["extra"]["note"] == "toy"


def test_deferred_guard_names_the_first_bad_step_and_saves_nothing_after_it(tmp_path):
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, math.nan, 7.0, math.inf, 9.0, 10.0]
    with pytest.raises(NonFiniteLossError) as err:
        toy_run(tmp_path, losses, read_every=10, ckpt_every=4)
    assert err.value.step == 6 and math.isnan(err.value.value)
    assert "step 6" in str(err.value) and "ckpt-000000004.pt" in str(err.value)
    # the read at step 8 (a checkpoint) raised: only the step-4 checkpoint exists
    assert [p.name for p in (tmp_path / "run").glob("ckpt-*.pt")] == ["ckpt-000000004.pt"]


def test_every_step_guard_raises_at_once(tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        toy_run(tmp_path, [1.0, math.inf, 1.0, 1.0])
    assert err.value.step == 2 and err.value.value == math.inf


def test_a_checkpoint_with_non_finite_buffers_is_refused(tmp_path):
    with pytest.raises(NonFiniteStateError, match=r"'net.1.running_var' became inf at step 8"):
        toy_run(tmp_path, [1.0] * 10, bn_inf_at=6)
    assert [p.name for p in (tmp_path / "run").glob("ckpt-*.pt")] == ["ckpt-000000004.pt"]


def test_abort_checkpoints_and_stops(tmp_path):
    run, seen = toy_run(tmp_path, [1.0] * 10, abort_at=3)
    assert run.stopped and run.step == 3 and seen[-1] == 3
    assert (tmp_path / "run" / "ckpt-000000003.pt").exists()


def test_resume_continues_and_refusals(tmp_path):
    full, _ = toy_run(tmp_path / "a", [1.0] * 10)
    toy_run(tmp_path / "b", [1.0] * 10, abort_at=5)
    with pytest.raises(InputError, match="already holds checkpoints"):
        toy_run(tmp_path / "b", [1.0] * 10)
    resumed, seen = toy_run(tmp_path / "b", [1.0] * 10, resume=tmp_path / "b" / "run")
    assert seen[0] == 5 and resumed.step == 10 and resumed.images_seen == 40
    a = load_checkpoint(tmp_path / "a" / "run" / "ckpt-000000010.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "ckpt-000000010.pt")
    for key, value in a["models"]["net"].items():
        assert torch.equal(value, b["models"]["net"][key]), key


def test_folder_that_is_a_file_and_wrong_kind_are_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(InputError, match="is a file, not a run folder"):
        toy_run(tmp_path, [1.0])
    other = tmp_path / "other.pt"
    save_checkpoint(other, kind="gan/dcgan", config={}, step=1, images_seen=0,
                    models={"net": nn.Linear(2, 2)}, optimizers={})
    with pytest.raises(InputError, match="'gan/dcgan' checkpoint, not 'toy/net'"):
        toy_run(tmp_path / "x", [1.0], resume=other)


def test_legacy_kind_resumes(tmp_path):
    run, _ = toy_run(tmp_path / "a", [1.0] * 3)
    ckpt = load_checkpoint(tmp_path / "a" / "run" / "ckpt-000000003.pt")
    old = tmp_path / "old.pt"
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    net.load_state_dict(ckpt["models"]["net"])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    save_checkpoint(old, kind="toy-old", config={}, step=3, images_seen=12,
                    models={"net": net}, optimizers={"net": opt}, extra={"epoch": 0, "pos": 0},
                    generators={"g": torch.Generator()})
    resumed, seen = toy_run(tmp_path / "b", [1.0] * 5, resume=old)
    assert seen[0] == 3 and resumed.step == 5


def test_a_non_finite_metric_stops_before_its_checkpoint(tmp_path):
    cfg = ToyConfig(run=str(tmp_path / "run"), steps=3, tensorboard=False)
    net = nn.Linear(2, 2)
    run = Run(cfg, ONE, CPU, kind="toy/net", best_metric="val_loss")
    run.track(models={"net": net}, optimizers={})
    with run.session(cfg.steps):
        run.end_step({"loss": 1.0})
        assert run.save(metric=0.5) is not None
        run.end_step({"loss": 1.0})
        with pytest.raises(NonFiniteLossError, match="'val_loss' became nan at step 2"):
            run.save(metric=math.nan)
    assert len(list((tmp_path / "run").glob("ckpt-*.pt"))) == 1


def test_reads_off_a_gpu_come_at_the_logging_interval_or_every_read_every_steps(tmp_path):
    from impasto.train.run import READ_EVERY

    # Nothing touches the device here: the choice is made from its type.
    cuda = torch.device("cuda")
    for log_every, want in ((5, 5), (1, 1), (0, READ_EVERY)):
        cfg = ToyConfig(run=str(tmp_path / f"r{log_every}"), log_every=log_every)
        assert Run(cfg, ONE, cuda, kind="toy/net").read_every == want
        assert Run(cfg, ONE, CPU, kind="toy/net").read_every == 1


def test_plain_numbers_are_accepted_as_step_statistics(tmp_path):
    cfg = ToyConfig(run=str(tmp_path / "run"), steps=2, log_every=1, tensorboard=False)
    run = Run(cfg, ONE, CPU, kind="toy/net")
    run.track(models={}, optimizers={})
    with run.session(cfg.steps):
        run.end_step({"loss": 0.25, "acc": torch.tensor(0.5)})
        assert run.stats == {"loss": 0.25, "acc": 0.5}
        with pytest.raises(NonFiniteLossError, match="step 2"):
            run.end_step({"loss": math.inf, "acc": torch.tensor(0.5)})
