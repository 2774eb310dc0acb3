"""Checkpoints: exact round trips (weights, optimizer, RNG), atomic writes, clear errors."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import impasto.train.checkpoint as ckmod
from impasto.errors import InputError
from impasto.train import (
    EMA,
    FORMAT_VERSION,
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    resolve_checkpoint,
    restore,
    restore_rng_state,
    save_checkpoint,
)
from impasto._fileutil import _umask


pytestmark = pytest.mark.usefixtures("one_thread")


def _nets(seed: int):
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    d = nn.Linear(2, 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-2, betas=(0.5, 0.99))
    opt_d = torch.optim.SGD(d.parameters(), lr=0.1, momentum=0.9)
    return g, d, opt_g, opt_d


def _train(g, d, opt_g, opt_d, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(6, 4, generator=gen)
        loss = d(g(x)).pow(2).mean()
        opt_g.zero_grad()
        opt_d.zero_grad()
        loss.backward()
        opt_g.step()
        opt_d.step()


def _trained():
    g, d, opt_g, opt_d = _nets(0)
    _train(g, d, opt_g, opt_d, 3)
    return g, d, opt_g, opt_d


def _save(path, g, d, opt_g, opt_d, **kw):
    args = dict(
        kind="gan/dcgan",
        config={"resolution": 8, "betas": [0.5, 0.99]},
        step=3,
        images_seen=18,
        models={"G": g, "D": d},
        optimizers={"G": opt_g, "D": opt_d},
        extra={"fid": 12.5},
    )
    args.update(kw)
    return save_checkpoint(path, **args)


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert path.name in msg
    return msg


# ---------------------------------------------------------------------------- round trip


def test_round_trip_restores_weights_and_optimizers_exactly(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "ckpt.pt", g, d, opt_g, opt_d)

    g2, d2, opt_g2, opt_d2 = _nets(123)  # different weights, empty optimizer states
    assert not torch.equal(g2[0].weight, g[0].weight)
    ckpt = load_checkpoint(path, kind="gan/dcgan")
    assert ckpt["format_version"] == FORMAT_VERSION
    assert (ckpt["step"], ckpt["images_seen"], ckpt["extra"]) == (3, 18, {"fid": 12.5})
    assert ckpt["config"] == {"resolution": 8, "betas": [0.5, 0.99]}
    restore(ckpt, {"G": g2, "D": d2}, {"G": opt_g2, "D": opt_d2})

    _assert_same(g.state_dict(), g2.state_dict())  # BN running stats and counter included
    _assert_same(d.state_dict(), d2.state_dict())
    _assert_same(opt_g.state_dict(), opt_g2.state_dict())
    _assert_same(opt_d.state_dict(), opt_d2.state_dict())
    assert float(opt_g2.state[g2[0].weight]["step"]) == 3.0
    assert torch.equal(
        opt_d2.state[d2.weight]["momentum_buffer"], opt_d.state[d.weight]["momentum_buffer"]
    )

    # Training on from both gives the very same weights.
    _train(g, d, opt_g, opt_d, 2, seed=7)
    _train(g2, d2, opt_g2, opt_d2, 2, seed=7)
    _assert_same(g.state_dict(), g2.state_dict())
    _assert_same(d.state_dict(), d2.state_dict())


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    g, d, opt_g, opt_d = _trained()
    loader_gen = torch.Generator().manual_seed(42)
    torch.rand(5, generator=loader_gen)
    random.seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in random's state
    np.random.seed(4)
    np.random.randn(1)  # leaves a cached gaussian in numpy's state
    path = _save(tmp_path / "ckpt.pt", g, d, opt_g, opt_d, generators={"loader": loader_gen})
    expected = (
        torch.rand(4),
        np.random.rand(4),
        np.random.randn(3),
        random.random(),
        random.gauss(0, 1),
        torch.rand(4, generator=loader_gen),
    )

    # Move every generator elsewhere.
    torch.manual_seed(999)
    np.random.seed(999)
    random.seed(999)
    loader_gen.manual_seed(999)
    torch.rand(3), np.random.rand(3), random.random()

    restore(load_checkpoint(path), {"G": g}, {}, generators={"loader": loader_gen})
    got = (
        torch.rand(4),
        np.random.rand(4),
        np.random.randn(3),
        random.random(),
        random.gauss(0, 1),
        torch.rand(4, generator=loader_gen),
    )
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3] == expected[3] and got[4] == expected[4]
    assert torch.equal(got[5], expected[5])


def test_capture_and_restore_rng_state_directly():
    gen = torch.Generator().manual_seed(1)
    state = capture_rng_state({"g": gen})
    a = (
        torch.randn(3),
        np.random.rand(2),
        random.random(),
        torch.randint(0, 100, (3,), generator=gen),
    )
    restore_rng_state(state, {"g": gen})
    b = (
        torch.randn(3),
        np.random.rand(2),
        random.random(),
        torch.randint(0, 100, (3,), generator=gen),
    )
    assert torch.equal(a[0], b[0]) and a[2] == b[2] and torch.equal(a[3], b[3])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(InputError, match="'other'"):
        restore_rng_state(state, {"other": torch.Generator()})


def test_rng_false_stores_no_rng_and_strict_restore_says_so(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "c.pt", g, d, opt_g, opt_d, rng=False)
    ckpt = load_checkpoint(path)
    assert ckpt["rng"] is None
    restore(ckpt, {"G": g}, {}, rng=False)  # fine
    with pytest.raises(InputError, match="random number generator"):
        restore(ckpt, {"G": g}, {})


def _leaves(obj, where="ckpt"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) in (str, int), where
            yield from _leaves(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{where}[{i}]")
    else:
        yield where, obj


def test_everything_saved_loads_with_weights_only_and_holds_no_numpy(tmp_path):
    g, d, opt_g, opt_d = _trained()
    ema = EMA(g, beta=0.9)
    np.random.seed(0)
    np.random.randn(1)
    path = _save(
        tmp_path / "c.pt",
        g,
        d,
        opt_g,
        opt_d,
        models={"G": g, "D": d, "G_ema": ema},
        generators={"loader": torch.Generator().manual_seed(5)},
    )
    raw = torch.load(path, weights_only=True)  # raises nothing: no pickled objects
    assert raw["rng"]["numpy"]["keys"].dtype == torch.int64
    assert raw["rng"]["numpy"]["has_gauss"] == 1
    kinds = set()
    for where, leaf in _leaves(raw):
        assert not type(leaf).__module__.startswith("numpy"), where
        assert isinstance(leaf, (torch.Tensor, str, int, float, bool, type(None))), (
            where,
            type(leaf),
        )
        kinds.add(type(leaf))
    assert torch.Tensor in kinds and int in kinds and float in kinds


def test_save_refuses_non_plain_data_and_writes_nothing(tmp_path):
    g, d, opt_g, opt_d = _trained()
    with pytest.raises(TypeError, match=r"extra\['fid'\].*numpy"):
        _save(tmp_path / "c.pt", g, d, opt_g, opt_d, extra={"fid": np.float64(1.5)})
    with pytest.raises(TypeError, match="config"):
        _save(tmp_path / "c.pt", g, d, opt_g, opt_d, config={"when": date(2020, 1, 1)})
    assert list(tmp_path.iterdir()) == []


def test_wrappers_are_unwrapped_so_keys_have_no_module_prefix(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "c.pt", nn.DataParallel(g), d, opt_g, opt_d)
    keys = list(load_checkpoint(path)["models"]["G"])
    assert keys[0] == "0.weight" and not any(k.startswith("module.") for k in keys)


def test_ema_restores_through_a_checkpoint(tmp_path):
    g, d, opt_g, opt_d = _trained()
    ema = EMA(g, beta=0.5)
    _train(g, d, opt_g, opt_d, 1)
    ema.update(g)
    path = _save(tmp_path / "c.pt", g, d, opt_g, opt_d, models={"G": g, "G_ema": ema})
    g2, *_ = _nets(5)
    ema2 = EMA(g2, beta=0.5)
    restore(load_checkpoint(path), {"G_ema": ema2}, {}, rng=False)
    _assert_same(ema.model.state_dict(), ema2.model.state_dict())
    assert ema2.num_updates == 1


# ---------------------------------------------------------------------------- atomicity


def test_failed_save_leaves_existing_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "ckpt.pt", g, d, opt_g, opt_d)
    before = path.read_bytes()
    seen = []

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"x" * 5000)  # partial bytes, then the disk "fails"
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise RuntimeError("disk died")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk died"):
        _save(path, g, d, opt_g, opt_d, step=4)
    with pytest.raises(RuntimeError, match="disk died"):
        _save(tmp_path / "new.pt", g, d, opt_g, opt_d)

    # The partial data went to a hidden temporary file in the same folder ...
    assert len(seen[0]) == 2 and seen[0][0].startswith(".ckpt.pt.") and seen[0][1] == "ckpt.pt"
    # ... which is gone; the old checkpoint is intact and no file appeared at the new target.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 3


def test_save_replaces_an_existing_checkpoint(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "sub" / "ckpt.pt", g, d, opt_g, opt_d, step=3)
    _save(path, g, d, opt_g, opt_d, step=4)
    assert load_checkpoint(path)["step"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


# ---------------------------------------------------------------------------- bad files


def test_truncated_file_is_a_one_line_input_error(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "ckpt.pt", g, d, opt_g, opt_d)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        load_checkpoint(cut)
    msg = _one_line_naming(e, cut)
    assert "truncated or corrupt" in msg


@pytest.mark.parametrize("head", [b"", b"PK\x03\x04"])
def test_random_bytes_are_an_input_error(tmp_path, head):
    path = tmp_path / "noise.pt"
    path.write_bytes(head + np.random.default_rng(0).bytes(3000))
    with pytest.raises(InputError) as e:
        load_checkpoint(path)
    _one_line_naming(e, path)


def test_empty_file_missing_file_and_folder_are_input_errors(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, words in [
        (empty, "empty"),
        (tmp_path / "missing.pt", "not found"),
        (tmp_path, "folder"),
    ]:
        with pytest.raises(InputError) as e:
            load_checkpoint(path)
        assert words in _one_line_naming(e, path)


def test_other_kind_is_refused_with_both_kinds_named(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "checkpoint.pt", g, d, opt_g, opt_d, kind="gan/sngan")
    with pytest.raises(InputError) as e:
        load_checkpoint(path, kind="gan/dcgan")
    assert str(e.value) == f"{path} is a 'gan/sngan' checkpoint, not 'gan/dcgan'"
    assert load_checkpoint(path, kind="gan/sngan")["kind"] == "gan/sngan"


def test_not_an_impasto_checkpoint_newer_format_and_pickled_objects(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(nn.Linear(2, 2).state_dict(), bare)
    with pytest.raises(InputError, match="not an impasto checkpoint .*bare state_dict"):
        load_checkpoint(bare)

    newer = tmp_path / "newer.pt"
    torch.save({"format_version": FORMAT_VERSION + 1, "kind": "gan/dcgan"}, newer)
    with pytest.raises(InputError) as e:
        load_checkpoint(newer)
    assert f"format {FORMAT_VERSION + 1} is newer" in _one_line_naming(e, newer)

    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": 1, "when": date(2020, 1, 1)}, pickled)
    with pytest.raises(InputError) as e:
        load_checkpoint(pickled)
    assert "pickled Python objects" in _one_line_naming(e, pickled)


def test_architecture_mismatch_names_model_and_key_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(
        tmp_path / "c.pt",
        kind="classifier",
        config={},
        step=0,
        images_seen=0,
        models={"net": nn.Linear(4, 4)},
        optimizers={},
    )
    other = nn.Linear(4, 5)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(InputError) as e:
        restore(load_checkpoint(path), {"net": other}, {})
    msg = _one_line_naming(e, path)
    assert "'net'" in msg and "'weight'" in msg and "(4, 4)" in msg and "(5, 4)" in msg
    _assert_same(before, other.state_dict())

    extra_layer = nn.Sequential(nn.Linear(4, 4))  # keys '0.weight', '0.bias' vs 'weight', 'bias'
    with pytest.raises(InputError, match="'0.weight' is missing"):
        restore(load_checkpoint(path), {"net": extra_layer}, {})
    with pytest.raises(InputError, match="no model 'G'"):
        restore(load_checkpoint(path), {"G": nn.Linear(4, 4)}, {})


def test_optimizer_that_does_not_fit_is_an_input_error(tmp_path):
    g, d, opt_g, opt_d = _trained()
    path = _save(tmp_path / "c.pt", g, d, opt_g, opt_d)
    g2, d2, _, opt_d2 = _nets(1)
    wrong = torch.optim.Adam(list(g2.parameters())[:2])  # fewer parameters than saved
    with pytest.raises(InputError) as e:
        restore(load_checkpoint(path), {"G": g2}, {"G": wrong}, rng=False)
    assert "optimizer 'G'" in _one_line_naming(e, path)


# ---------------------------------------------------------------------------- manager


def _mgr_save(mgr, step, g, d, opt_g, opt_d, **kw):
    return mgr.save(
        step,
        kind="gan/dcgan",
        config={},
        images_seen=step * 6,
        models={"G": g, "D": d},
        optimizers={"G": opt_g, "D": opt_d},
        rng=False,
        **kw,
    )


def test_manager_keeps_last_k_and_points_latest_at_the_newest(tmp_path):
    g, d, opt_g, opt_d = _trained()
    mgr = CheckpointManager(tmp_path / "run", keep_last=3)
    for step in (100, 200, 300, 400, 1234):
        path = _mgr_save(mgr, step, g, d, opt_g, opt_d)
    assert path.name == "ckpt-000001234.pt"
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["ckpt-000000300.pt", "ckpt-000000400.pt", "ckpt-000001234.pt", "latest.json"]
    assert json.loads((tmp_path / "run" / "latest.json").read_text()) == {
        "file": "ckpt-000001234.pt",
        "step": 1234,
    }
    assert mgr.latest_path() == path
    assert mgr.resolve(tmp_path / "run") == path
    assert load_checkpoint(mgr.resolve(tmp_path / "run"))["step"] == 1234


def test_manager_never_deletes_the_checkpoint_just_written(tmp_path):
    g, d, opt_g, opt_d = _trained()
    mgr = CheckpointManager(tmp_path, keep_last=2)
    _mgr_save(mgr, 10, g, d, opt_g, opt_d)
    _mgr_save(mgr, 20, g, d, opt_g, opt_d)
    new = _mgr_save(mgr, 15, g, d, opt_g, opt_d)  # resumed from an earlier step
    assert [p.name for p in mgr.checkpoints()] == ["ckpt-000000015.pt", "ckpt-000000020.pt"]
    assert mgr.latest_path() == new  # latest.json wins over the highest number


def test_resolve_file_folder_fallback_and_errors(tmp_path):
    g, d, opt_g, opt_d = _trained()
    mgr = CheckpointManager(tmp_path / "run", keep_last=None)
    for step in (1, 2, 3):
        _mgr_save(mgr, step, g, d, opt_g, opt_d)
    assert len(mgr.checkpoints()) == 3
    one = tmp_path / "run" / "ckpt-000000001.pt"
    assert resolve_checkpoint(one) == one
    (tmp_path / "run" / "latest.json").unlink()
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "ckpt-000000003.pt"
    (tmp_path / "run" / "latest.json").write_text("{broken")
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "ckpt-000000003.pt"

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError) as e:
        resolve_checkpoint(empty)
    assert "no checkpoint" in _one_line_naming(e, empty)
    assert CheckpointManager(empty).latest_path() is None
    with pytest.raises(InputError, match="no such"):
        resolve_checkpoint(tmp_path / "nowhere")


def test_best_checkpoint_updates_only_on_improvement(tmp_path):
    g, d, opt_g, opt_d = _trained()
    mgr = CheckpointManager(tmp_path, best_metric="fid", mode="min")
    kw = dict(kind="gan/dcgan", config={}, images_seen=0, models={"G": g}, optimizers={}, rng=False)

    assert mgr.save_best(5.0, step=1, **kw) is True
    assert mgr.save_best(7.0, step=2, **kw) is False
    assert mgr.save_best(float("nan"), step=3, **kw) is False
    assert mgr.save_best(5.0, step=4, **kw) is False  # equal is no improvement
    best = load_checkpoint(tmp_path / "best.pt")
    assert (
        best["step"] == 1
        and best["extra"]["best_value"] == 5.0
        and best["extra"]["best_metric"] == "fid"
    )

    assert mgr.save_best(torch.tensor(3.0), step=5, extra={"note": "x"}, **kw) is True
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 5 and best["extra"] == {
        "note": "x",
        "best_metric": "fid",
        "best_value": 3.0,
    }
    info = json.loads((tmp_path / "best.json").read_text())
    assert info["value"] == 3.0 and info["step"] == 5 and info["metric"] == "fid"

    # A new manager (a resumed run) remembers the best value.
    again = CheckpointManager(tmp_path, best_metric="fid", mode="min")
    assert again.best_value == 3.0
    assert again.save_best(4.0, step=6, **kw) is False
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 5

    up = CheckpointManager(tmp_path / "max", best_metric="acc", mode="max")
    assert [up.save_best(v, step=i, **kw) for i, v in enumerate([0.5, 0.4, 0.6])] == [
        True,
        False,
        True,
    ]
    assert load_checkpoint(tmp_path / "max" / "best.pt")["extra"]["best_value"] == 0.6
    with pytest.raises(ValueError, match="best_metric"):
        CheckpointManager(tmp_path).save_best(1.0, step=0, **kw)


def test_module_checks_numpy_via_helper():
    with pytest.raises(TypeError, match="numpy"):
        ckmod._check_plain({"a": [np.zeros(2)]}, "extra")
    ckmod._check_plain({"a": [torch.zeros(2), 1, 2.0, "s", None, True, (1, 2)]}, "extra")


def test_a_generator_state_of_another_device_is_refused_before_anything_is_set():
    # A CUDA generator's state is 16 bytes (seed and offset), a CPU one's 5056: a run written
    # on a GPU and resumed on a CPU (or the other way round) hands one to the other.
    gen = torch.Generator().manual_seed(1)
    state = capture_rng_state({"g": gen, "h": torch.Generator().manual_seed(2)})
    state["generators"]["g"] = torch.zeros(16, dtype=torch.uint8)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with pytest.raises(ckmod.GeneratorDeviceError, match="'g' .16 bytes. is not one a cpu "
                       r"generator takes \(5056 bytes\)") as err:
        restore_rng_state(state, {"g": gen, "h": torch.Generator()})
    assert err.value.names == ["g"] and isinstance(err.value, InputError)
    assert torch.equal(torch.rand(3), expected)  # the global stream was not touched


def test_resume_with_generators_of_another_device_falls_back_to_reseeding(caplog):
    from impasto.train import restore_rng_for_rank

    gen = torch.Generator().manual_seed(1)
    rng = capture_rng_state({"g": gen})
    rng["generators"]["g"] = torch.zeros(16, dtype=torch.uint8)
    ckpt = {"path": "run/ckpt-4.pt", "rng": rng, "extra": {"world_size": 1}}
    with caplog.at_level("WARNING"):
        assert restore_rng_for_rank(ckpt, {"g": gen}, rank=0, world_size=1) is False
    assert "run/ckpt-4.pt" in caplog.text and "another kind of device" in caplog.text
    rng["generators"]["g"] = gen.get_state()
    assert restore_rng_for_rank(ckpt, {"g": gen}, rank=0, world_size=1) is True
