"""torchrun helpers: environment parsing, no-ops in one process, a real 2-process gloo group."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from conftest import run_ranks
from impasto.errors import InputError
from impasto.train import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main,
    unwrap_model,
)

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_dist_info_from_env(clean_env):
    clean_env.setenv("RANK", "3")
    clean_env.setenv("WORLD_SIZE", "4")
    clean_env.setenv("LOCAL_RANK", "1")
    info = DistInfo.from_env("cuda")
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    assert info.device == torch.device("cuda", 1) and info.is_distributed and not info.is_main
    assert DistInfo.from_env("cpu").device == torch.device("cpu")
    clean_env.setenv("RANK", "4")
    with pytest.raises(InputError, match="RANK"):
        DistInfo.from_env()
    clean_env.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="WORLD_SIZE must be a whole number, not 'two'"):
        DistInfo.from_env()


def test_single_process_is_a_no_op(clean_env):
    for env in ({}, {"WORLD_SIZE": "1", "RANK": "0"}):
        for k, v in env.items():
            clean_env.setenv(k, v)
        info = init_distributed("cpu")
        assert info == DistInfo(0, 1, 0, torch.device("cpu"))
        assert not is_distributed() and is_main() and get_world_size() == 1
        obj = {"resume": "run/ckpt-000000010.pt"}
        assert broadcast_object(obj) is obj
        barrier()
        t = torch.tensor([1.0, 2.0])
        mean = all_reduce_mean(t)
        assert torch.equal(mean, t) and mean is not t
        cleanup()


def test_world_size_without_master_address_is_an_input_error(clean_env):
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("RANK", "0")
    with pytest.raises(
        InputError, match="MASTER_ADDR and MASTER_PORT not set; start the run with torchrun"
    ):
        init_distributed("cpu")


def test_unwrap_model():
    net = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.nn.DataParallel(net)) is net and unwrap_model(net) is net


SCRIPT = textwrap.dedent(
    """
    import json, torch
    from impasto.train import (init_distributed, broadcast_object, all_reduce_mean, barrier,
                               cleanup, is_main, get_world_size)
    info = init_distributed("cpu")
    got = broadcast_object({"resume": "ckpt-7.pt"} if info.rank == 0 else None)
    mean = all_reduce_mean(torch.tensor([float(info.rank), 10.0 * info.rank]))
    barrier()
    print(json.dumps({"rank": info.rank, "world": get_world_size(), "main": is_main(),
                      "got": got, "mean": mean.tolist()}))
    cleanup()
    """
)


def test_two_processes_with_gloo(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    outputs = run_ranks(script, timeout=120)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert [r["rank"] for r in results] == [0, 1]
    assert [r["main"] for r in results] == [True, False]
    assert all(r["world"] == 2 and r["got"] == {"resume": "ckpt-7.pt"} for r in results)
    assert all(r["mean"] == [0.5, 5.0] for r in results)
