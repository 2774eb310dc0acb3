"""Typed configs as JSON: nested dataclasses and tuples round-trip; bad keys/values are named."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from impasto.errors import InputError
from impasto.train import config_from_dict, config_to_dict, load_config, save_config


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class NetConfig:
    widths: tuple[int, ...] = (64, 128, 256)
    norm: Literal["batch", "none"] = "batch"
    init: Path | None = None


@dataclass
class RunConfig:
    resolution: int
    name: str = "dcgan"
    g_optim: OptimConfig = field(default_factory=OptimConfig)
    d_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-4, betas=(0.0, 0.9)))
    net: NetConfig = field(default_factory=NetConfig)
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    ema_beta: float | None = 0.999


def _custom() -> RunConfig:
    return RunConfig(
        resolution=32,
        name="run-1",
        g_optim=OptimConfig(lr=1e-3, betas=(0.25, 0.75)),
        net=NetConfig(widths=(8, 16), norm="none", init=Path("/tmp/w.pt")),
        tags=["a", "b"],
        weights={"r1": 10.0},
        ema_beta=None,
    )


def test_round_trip_through_a_file_rebuilds_nested_dataclasses_and_tuples(tmp_path):
    cfg = _custom()
    path = save_config(cfg, tmp_path / "run" / "config.json")
    on_disk = json.loads(path.read_text())
    assert on_disk["g_optim"] == {"lr": 1e-3, "betas": [0.25, 0.75]}
    assert on_disk["net"] == {"widths": [8, 16], "norm": "none", "init": "/tmp/w.pt"}
    assert on_disk["ema_beta"] is None

    back = load_config(RunConfig, path)
    assert back == cfg
    assert isinstance(back.g_optim, OptimConfig) and back.g_optim.betas == (0.25, 0.75)
    assert type(back.net.widths) is tuple and back.net.widths == (8, 16)
    assert isinstance(back.net.init, Path)
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left


def test_dict_round_trip_and_missing_keys_take_defaults():
    cfg = _custom()
    assert config_from_dict(RunConfig, config_to_dict(cfg)) == cfg
    partial = config_from_dict(RunConfig, {"resolution": 64, "d_optim": {"lr": 1}})
    assert partial == RunConfig(resolution=64, d_optim=OptimConfig(lr=1.0))
    assert type(partial.d_optim.lr) is float and partial.d_optim.betas == (0.5, 0.999)


def test_unknown_keys_are_named():
    with pytest.raises(InputError) as e:
        config_from_dict(RunConfig, {"resolution": 8, "resolutoin": 8, "gan": 1})
    msg = str(e.value)
    assert "'resolutoin'" in msg and "'gan'" in msg and "resolution" in msg
    with pytest.raises(InputError, match=r"unknown config key 'lrr' in config field 'g_optim'"):
        config_from_dict(RunConfig, {"resolution": 8, "g_optim": {"lrr": 1.0}})


@pytest.mark.parametrize(
    "data, words",
    [
        ({}, "'resolution' is missing"),
        ({"resolution": "64"}, "'resolution' must be a whole number"),
        ({"resolution": 64.0}, "'resolution' must be a whole number"),
        ({"resolution": True}, "'resolution' must be a whole number"),
        ({"resolution": 8, "g_optim": {"betas": [0.5]}}, "'g_optim.betas' must be a list of 2"),
        ({"resolution": 8, "net": {"widths": [8, "x"]}}, "'net.widths[1]' must be a whole number"),
        ({"resolution": 8, "net": {"norm": "layer"}}, "'net.norm' must be one of"),
        ({"resolution": 8, "net": 3}, "'net' must be a JSON object"),
        ({"resolution": 8, "ema_beta": "high"}, "'ema_beta' must be"),
    ],
)
def test_wrong_values_are_named(data, words):
    with pytest.raises(InputError) as e:
        config_from_dict(RunConfig, data)
    assert words in str(e.value)


def test_load_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"resolution": 8,}')
    with pytest.raises(InputError, match=r"config\.json: invalid JSON at line 1"):
        load_config(RunConfig, bad)
    bad.write_text('{"resolution": 8, "extra": 1}')
    with pytest.raises(InputError, match=r"config\.json: unknown config key 'extra'"):
        load_config(RunConfig, bad)
    with pytest.raises(InputError, match="not found"):
        load_config(RunConfig, tmp_path / "nope.json")


def test_to_dict_refuses_values_json_cannot_hold():
    @dataclass
    class Bad:
        x: object = None

    with pytest.raises(TypeError, match=r"config\.x is a set"):
        config_to_dict(Bad(x={1, 2}))
