"""Classifier training on two CPU processes (gloo), as ``torchrun --nproc_per_node=2`` starts it.

Both ranks must end with identical weights, batch-norm statistics and optimiser states although
they trained on different shards; the validation accuracy (computed on two shards and summed)
must equal a single-process evaluation of the final model; only rank 0 writes.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from conftest import assert_same, run_ranks
from impasto.classify import evaluate, load_classifier
from impasto.train import load_checkpoint, read_stats

pytestmark = pytest.mark.usefixtures("one_thread")

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from impasto.classify import ClassifierTrainConfig, train
    from impasto.train import cleanup, init_distributed

    out, opts = sys.argv[1], json.loads(sys.argv[2])
    info = init_distributed("cpu")
    try:
        r = train(ClassifierTrainConfig(**opts))
        torch.save({
            "model": r.model.state_dict(), "opt": r.optimizer.state_dict(), "val": r.val,
            "stats": r.stats, "step": r.step,
            "checkpoint": None if r.checkpoint is None else str(r.checkpoint),
        }, f"{out}/rank{info.rank}.pt")
    finally:
        cleanup()
    """
)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clsddp")
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 2
    images = rng.integers(0, 120, (80, 8, 8), dtype=np.uint8)
    images[labels == 1, 2:6, 2:6] += 120  # a bright square marks class 1
    np.savez(root / "train.npz", images=images[:64], labels=labels[:64])
    np.savez(root / "val.npz", images=images[64:], labels=labels[64:])
    opts = dict(data=str(root / "train.npz"), val_data=str(root / "val.npz"), run=str(root / "run"),
                image_size=8, width=4, batch_size=8, steps=4, eval_every=2, precision="fp32",
                device="cpu", deterministic=True, log_every=1, tensorboard=False, dropout=0.2)
    script = root / "worker.py"
    script.write_text(WORKER)
    run_ranks(script, str(root), json.dumps(opts))
    return root


def test_ranks_agree_and_validation_is_summed_over_shards(ddp_run):
    r0 = torch.load(ddp_run / "rank0.pt", weights_only=True)
    r1 = torch.load(ddp_run / "rank1.pt", weights_only=True)
    assert_same(r0["model"], r1["model"], "model")
    assert_same(r0["opt"], r1["opt"], "opt")
    assert r0["stats"] == r1["stats"] and r0["val"] == r1["val"]
    assert r0["step"] == 4 and r1["checkpoint"] is None
    ckpt = load_checkpoint(r0["checkpoint"], kind="classify/lenet")
    assert ckpt["images_seen"] == 4 * 8 * 2
    assert ckpt["extra"]["world_size"] == 2 and len(ckpt["extra"]["rng_per_rank"]) == 2
    model = load_classifier(ddp_run / "run", which="latest")
    single = evaluate(model, str(ddp_run / "val.npz"))
    assert single.n == 16
    assert r0["val"]["val_acc"] == pytest.approx(single.accuracy)
    assert r0["val"]["val_loss"] == pytest.approx(single.loss, rel=1e-5)


def test_only_rank_0_writes(ddp_run):
    run = ddp_run / "run"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["best.json", "best.pt", "ckpt-000000002.pt", "ckpt-000000004.pt",
                     "config.json", "latest.json", "stats.jsonl"]
    steps = [r["step"] for r in read_stats(run)]
    assert steps == [1, 2, 3, 4]  # one line per step, not two
