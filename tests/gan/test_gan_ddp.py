"""GAN training on two CPU processes (gloo), as ``torchrun --nproc_per_node=2`` starts it.

Two processes get the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and, in one process group, run two short trainings: a conditional DCGAN (batch norm
in D) with an R1 penalty (the phase that runs outside DDP's reducer) and DiffAugment, and an
SNGAN with two D steps. Each rank saves what train() returned; the ranks must hold identical
weights, buffers and optimiser states although they trained on different images, and the run
folder must hold exactly one rank's files.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from conftest import assert_same, run_ranks
from impasto.train import load_checkpoint, read_stats

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from impasto.gan import GanLoss, GanTrainConfig, train
    from impasto.train import cleanup, init_distributed

    out, cases = sys.argv[1], json.loads(sys.argv[2])
    first_real = []
    original = GanLoss.d_step

    def d_step(self, real, y=None, z=None):
        first_real.append(float(real.double().sum()))
        return original(self, real, y, z)

    GanLoss.d_step = d_step
    info = init_distributed("cpu")
    try:
        for name, opts in cases.items():
            first_real.clear()
            r = train(GanTrainConfig(**opts))
            torch.save({
                "G": r.G.state_dict(), "D": r.D.state_dict(), "G_ema": r.G_ema.state_dict(),
                "opt_g": r.opt_g.state_dict(), "opt_d": r.opt_d.state_dict(),
                "stats": r.stats, "step": r.step, "images_seen": r.images_seen,
                "checkpoint": None if r.checkpoint is None else str(r.checkpoint),
                "first_real": first_real[0],
            }, f"{out}/{name}-rank{info.rank}.pt")
    finally:
        cleanup()
    """
)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    images[:, 8:24, 8:24] //= 2  # some structure
    np.savez(root / "data.npz", images=images, labels=np.arange(40) % 2)
    common = dict(
        data=str(root / "data.npz"), z_dim=16, base_width=8, batch_size=4, precision="fp32",
        device="cpu", deterministic=True, log_every=1, n_samples=4,
    )
    cases = {
        "dcgan": dict(common, run=str(root / "dcgan"), arch="dcgan", conditional=True,
                      r1_gamma=0.5, diffaugment="translation", steps=3, ckpt_every=1,
                      keep_last=5, sample_every=2),
        "sngan": dict(common, run=str(root / "sngan"), arch="sngan", d_steps=2, steps=2,
                      ckpt_every=0, sample_every=0, tensorboard=False),
    }
    script = root / "worker.py"
    script.write_text(WORKER)
    run_ranks(script, str(root), json.dumps(cases))
    return root, cases


@pytest.mark.parametrize("case", ["dcgan", "sngan"])
def test_ranks_end_with_identical_networks(ddp_runs, case):
    root, cases = ddp_runs
    r0 = torch.load(root / f"{case}-rank0.pt", weights_only=True)
    r1 = torch.load(root / f"{case}-rank1.pt", weights_only=True)
    # the ranks trained on different shards of the data ...
    assert r0["first_real"] != r1["first_real"]
    # ... yet hold the same weights, buffers (BN statistics, spectral-norm vectors), EMA and
    # optimiser states, and report the same (averaged) losses
    for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
        assert_same(r0[name], r1[name], f"{case}.{name}")
    assert r0["stats"] == r1["stats"]
    opts = cases[case]
    d_steps = opts.get("d_steps", 1)
    assert r0["step"] == opts["steps"]
    assert r0["images_seen"] == opts["steps"] * d_steps * opts["batch_size"] * 2
    # only rank 0 reports a checkpoint, and it holds rank 0's networks
    assert r1["checkpoint"] is None
    ckpt = load_checkpoint(r0["checkpoint"], kind=f"gan/{case}")
    assert_same(ckpt["models"]["G"], r0["G"], "ckpt.G")
    assert_same(ckpt["models"]["D"], r0["D"], "ckpt.D")
    assert ckpt["extra"]["world_size"] == 2 and len(ckpt["extra"]["rng_per_rank"]) == 2


def test_only_rank_0_writes(ddp_runs):
    root, _ = ddp_runs
    run = root / "dcgan"
    names = sorted(p.name for p in run.iterdir())
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == 1
    assert [n for n in names if n.endswith(".pt")] == [
        "ckpt-000000001.pt", "ckpt-000000002.pt", "ckpt-000000003.pt"
    ]
    assert sorted(p.name for p in (run / "images").iterdir()) == [
        "samples-000000002.png", "samples-000000003.png"
    ]
    assert [r["step"] for r in read_stats(run)] == [1, 2, 3]  # one line per step, not two
    assert json.loads((run / "config.json").read_text())["conditional"] is True
    sngan = root / "sngan"
    assert sorted(p.name for p in sngan.iterdir()) == [
        "ckpt-000000002.pt", "config.json", "images", "latest.json", "stats.jsonl"
    ]
    assert [r["step"] for r in read_stats(sngan)] == [1, 2]
