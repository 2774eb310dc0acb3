"""#13: checkpoints carry a digest of their tensors and refuse NaN/inf weights on load; stale
temporary files of interrupted writes are removed; logs stay valid JSON with NaN values."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from impasto.errors import InputError
from impasto.train import (
    CheckpointManager,
    RunLogger,
    load_checkpoint,
    load_model,
    read_stats,
    save_checkpoint,
)
from impasto.train.checkpoint import remove_stale_temporaries, tensor_digest


def _save(path, net):
    return save_checkpoint(path, kind="toy/net", config={}, step=1, images_seen=0,
                           models={"net": net}, optimizers={})


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64))


def test_digest_is_stored_and_checked(tmp_path):
    p = _save(tmp_path / "c.pt", _net())
    ckpt = load_checkpoint(p)
    parts = {k: ckpt[k] for k in ("models", "optimizers", "rng", "extra")}
    assert ckpt["digest"]["sha256"] == tensor_digest(parts)


def test_damaged_tensor_bytes_are_refused(tmp_path):
    net = _net()
    p = _save(tmp_path / "c.pt", net)
    data = bytearray(p.read_bytes())
    # the bytes of the first weight: find them in the archive and change a few
    raw = net[0].weight.detach().reshape(-1)[:8].numpy().tobytes()
    at = bytes(data).find(raw)
    assert at > 0
    data[at:at + 16] = bytes(16)
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged checkpoint"):
        load_checkpoint(p)
    with pytest.raises(InputError, match="damaged checkpoint"):  # read as a model file too
        load_model(p)


def test_non_finite_weights_are_refused_even_without_a_digest(tmp_path):
    net = _net()
    with torch.no_grad():
        net[1].running_var[3] = math.inf
    p = _save(tmp_path / "c.pt", net)
    with pytest.raises(InputError, match=r"NaN or infinite values \(models/net/1.running_var\)"):
        load_checkpoint(p)
    # an old file without a digest: the finite check still applies
    ckpt = torch.load(p, weights_only=True)
    del ckpt["digest"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(InputError, match="NaN or infinite"):
        load_checkpoint(tmp_path / "old.pt")
    with pytest.raises(InputError, match="NaN or infinite"):
        load_model(tmp_path / "old.pt")


def test_stale_temporaries_are_removed_on_save_and_only_ours(tmp_path):
    ours = tmp_path / ".ckpt-000000002.pt.k3j_x9ab.tmp"
    ours.write_bytes(b"half")
    other = tmp_path / "notes.tmp"
    other.write_text("mine")
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(3, kind="toy/net", config={}, images_seen=0, models={"net": _net()},
                 optimizers={})
    assert not ours.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_logs_stay_valid_json_with_non_finite_values(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.scalars(1, {"loss": math.nan, "gain": math.inf, "ok": 1.5})
    line = (tmp_path / "stats.jsonl").read_text().splitlines()[0]
    json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} token"))
    row = read_stats(tmp_path)[0]
    assert math.isnan(row["loss"]) and row["gain"] == math.inf and row["ok"] == 1.5
