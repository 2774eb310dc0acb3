"""The helpers every training loop shares (impasto.train.loop): seeds, the resumable data order,
runtime flags, per-rank random streams, and the collectives on two gloo processes.

The data orders and seeds are pinned: a change would make existing checkpoints resume to
other batches, which the resume tests (one code version on both sides) cannot notice."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from conftest import run_ranks
from impasto.data import make_loader
from impasto.errors import InputError
from impasto.train import (
    Batches,
    EpochSampler,
    agree_across_ranks,
    capture_rng_state,
    derive_seed,
    gather_rng_states,
    grad_norm,
    loader_workers,
    restore_rng_for_rank,
    runtime_flags,
    training_session,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_derive_seed_is_pinned_and_separates_streams():
    assert derive_seed(0, 1) == 1459132311362927889
    assert derive_seed(3, 4, 1) == 958313944599781291
    seeds = {derive_seed(5, stream, rank) for stream in range(1, 7) for rank in range(4)}
    assert len(seeds) == 24 and all(0 <= s < 2**62 for s in seeds)


@pytest.mark.parametrize("n,world", [(9, 1), (9, 2), (10, 3), (40, 4)])
def test_distributed_order_is_torchs_distributed_sampler(n, world):
    # GAN and classifier checkpoints saved their position in this order
    seed = derive_seed(3, 4)
    for rank in range(world):
        ours = EpochSampler(range(n), seed, world_size=world, rank=rank)
        torchs = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                    seed=seed, drop_last=True)
        assert len(ours) == len(torchs) == n // world
        for epoch in (0, 1, 7):
            ours.set_epoch(epoch)
            torchs.set_epoch(epoch)
            assert list(ours) == list(torchs)


def test_derived_order_shards_and_skips():
    whole = EpochSampler(10, 5, order="derived")
    whole.set_epoch(2)
    order = list(whole)
    assert order == [0, 1, 7, 8, 9, 6, 5, 3, 2, 4]  # per-style network checkpoints rely on it
    g = torch.Generator().manual_seed(derive_seed(5, 2))
    assert order == torch.randperm(10, generator=g).tolist()
    shards = [EpochSampler(10, 5, world_size=3, rank=r, order="derived") for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    parts = [list(s) for s in shards]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert sorted(sum(parts, [])) == sorted(order[:9])  # the 10th is left out
    shards[1].skip_next(2)
    assert list(shards[1]) == parts[1][2:]
    assert list(shards[1]) == parts[1]  # the skip applies to one iteration only
    with pytest.raises(ValueError, match="unknown epoch order"):
        EpochSampler(10, 5, order="sum")


def test_fill_repeats_a_small_epoch_and_too_few_items_are_refused():
    # 3 style images, 2 processes taking 4 each: three permutations from one generator
    g = torch.Generator().manual_seed(derive_seed(5, 1))
    perms = [i for _ in range(3) for i in torch.randperm(3, generator=g).tolist()]
    shards = [EpochSampler(3, 5, world_size=2, rank=r, order="derived", fill=8) for r in (0, 1)]
    for s in shards:
        s.set_epoch(1)
    assert [len(s) for s in shards] == [4, 4]
    assert [list(s) for s in shards] == [perms[0:8:2], perms[1:8:2]]
    assert len(EpochSampler(10, 5, fill=8)) == 10  # enough already: one permutation
    with pytest.raises(InputError, match="2 usable photos, fewer than the 3 training processes"):
        EpochSampler(2, 0, world_size=3, items="photos")


class _Items(torch.utils.data.Dataset):
    def __init__(self, n: int, pairs: bool) -> None:
        self.n, self.pairs = n, pairs

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        x = torch.full((1, 2, 2), float(i))
        return (x, torch.tensor(i)) if self.pairs else x


@pytest.mark.parametrize("pairs", [True, False])
def test_batches_resume_where_they_stopped(pairs):
    """10 items, batches of 3: 3 batches an epoch (one item left out). A stream rebuilt from a
    saved (epoch, pos) continues exactly as the uninterrupted one."""

    def stream(epoch: int = 0, pos: int = 0) -> Batches:
        data = _Items(10, pairs)
        sampler = EpochSampler(data, 7)
        return Batches(make_loader(data, 3, seed=1, sampler=sampler), sampler, epoch, pos)

    def ids(batch) -> list[int]:
        x = batch[0] if pairs else batch
        return [int(v) for v in x[:, 0, 0, 0]]

    straight = stream()
    seen = [ids(straight.next()) for _ in range(8)]
    assert straight.epoch == 2 and straight.pos == 6
    for e in range(2):  # every epoch: 9 different items
        assert len(set(sum(seen[3 * e : 3 * e + 3], []))) == 9
    assert seen[:3] != seen[3:6]  # another order each epoch
    first = stream()
    for _ in range(4):
        first.next()
    assert (first.epoch, first.pos) == (1, 3)
    resumed = stream(first.epoch, first.pos)
    assert [ids(resumed.next()) for _ in range(4)] == seen[4:]


def test_runtime_flags_and_session_put_the_settings_back():
    before = torch.are_deterministic_algorithms_enabled()
    with runtime_flags(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with pytest.raises(RuntimeError, match="inside"):
        with training_session(torch.device("cpu"), True) as (info, device):
            assert (info.rank, info.world_size, device.type) == (0, 1, "cpu")
            assert torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("inside")
    assert torch.are_deterministic_algorithms_enabled() == before


def test_single_process_helpers(caplog):
    assert loader_workers(4, deterministic=False) == 4
    with caplog.at_level(logging.INFO, logger="impasto.train.loop"):
        assert loader_workers(4, deterministic=True) == 0
    assert "num_workers 0" in caplog.text
    stats = {"b": 2.0, "a": 1.0}
    assert agree_across_ranks(stats, True, torch.device("cpu"), False) == (stats, True)
    net = torch.nn.Linear(3, 1)
    assert grad_norm(net) == 0.0
    net(torch.ones(2, 3)).sum().backward()
    # d/dw = 2 * (1, 1, 1), d/db = 2: norm sqrt(4 * 3 + 4) = 4
    assert grad_norm(net) == pytest.approx(4.0)
    assert gather_rng_states({}, 1) == {}


def test_restore_rng_for_rank(tmp_path, caplog):
    g = torch.Generator().manual_seed(1)
    ckpt = {"path": "run/ckpt-5.pt", "rng": capture_rng_state({"g": g}), "extra": {}}
    expected = torch.rand(3, generator=g)
    torch.rand(5, generator=g)
    assert restore_rng_for_rank(ckpt, {"g": g}, rank=0, world_size=1)
    assert torch.equal(torch.rand(3, generator=g), expected)
    # saved by two processes: logged, nothing restored
    two = {**ckpt, "extra": {"world_size": 2, "rng_per_rank": [ckpt["rng"]] * 2}}
    with caplog.at_level(logging.WARNING, logger="impasto.train.loop"):
        assert not restore_rng_for_rank(two, {"g": g}, rank=0, world_size=1)
    assert "saved by 2 processes, resumed by 1" in caplog.text
    assert restore_rng_for_rank(two, {"g": g}, rank=1, world_size=2)
    with pytest.raises(InputError, match="run/ckpt-5.pt: no random number generator state"):
        restore_rng_for_rank({**ckpt, "rng": None}, {"g": g}, rank=0, world_size=1)
    with pytest.raises(InputError, match="^run/ckpt-5.pt: "):
        restore_rng_for_rank(ckpt, {"g": g, "other": torch.Generator()}, rank=0, world_size=1)


WORKER = textwrap.dedent(
    """
    import json
    import torch
    torch.set_num_threads(1)
    from impasto.train import (agree_across_ranks, all_reduce_grads, broadcast_buffers,
                               gather_rng_states, init_distributed, cleanup)

    info = init_distributed("cpu")
    try:
        rank, world = info.rank, info.world_size
        net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        net.train()
        x = torch.randn(4, 2, generator=torch.Generator().manual_seed(rank)) + rank
        (net(x) * torch.arange(8.0).reshape(4, 2)).sum().backward()
        before = [p.grad.clone() for p in net.parameters()]
        all_reduce_grads(net, world)
        broadcast_buffers(net, None)
        stats, stop = agree_across_ranks({"loss": float(rank), "acc": 2.0 * rank}, rank == 1,
                                         torch.device("cpu"), True)
        g = torch.Generator().manual_seed(10 + rank)
        states = gather_rng_states({"g": g}, world)["rng_per_rank"]
        print(json.dumps({
            "grads": [p.grad.tolist() for p in net.parameters()],
            "own": [b.tolist() for b in before],
            "mean": net[1].running_mean.tolist(),
            "stats": stats, "stop": stop,
            "gens": [s["generators"]["g"].sum().item() for s in states],
            "mine": g.get_state().sum().item(),
        }))
    finally:
        cleanup()
    """
)


def test_collectives_on_two_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    r0, r1 = (json.loads(out.strip().splitlines()[-1]) for out in run_ranks(script))
    # gradients: the mean of the two ranks' own, on both
    assert r0["grads"] == r1["grads"] and r0["own"] != r1["own"]
    for mean, a, b in zip(r0["grads"], r0["own"], r1["own"]):
        assert torch.allclose(torch.tensor(mean), (torch.tensor(a) + torch.tensor(b)) / 2)
    assert r0["mean"] == r1["mean"]  # rank 0's batch-norm statistics on both
    # the losses averaged, and a stop on one rank stops both
    assert r0["stats"] == r1["stats"] == {"acc": 1.0, "loss": 0.5}
    assert r0["stop"] is True and r1["stop"] is True
    # every rank's own generator state, in rank order
    assert r0["gens"] == r1["gens"] == [r0["mine"], r1["mine"]] and r0["mine"] != r1["mine"]
