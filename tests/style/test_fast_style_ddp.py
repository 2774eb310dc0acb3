"""Per-style network training on two CPU processes (gloo), as ``torchrun --nproc_per_node=2``
starts it, and model files written when training is stopped early.

Two processes get the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and, in one process group, run short trainings of a tiny network with a tiny
random VGG: one without and one with the patch discriminator, and the latter again stopped
after one step by an abort that only rank 1 asks for, then resumed. Each rank saves what
train_fast_style() returned; the ranks must hold identical, trained weights and optimiser
states although they trained on different photos, the stop must be agreed, the resumed run
must equal the straight one bit for bit, and the run folder must hold exactly one rank's files.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same, run_ranks, tiny_vgg
from PIL import Image

from impasto.cli import main
from impasto.errors import InputError
from impasto.nets.transformer import TransformerNet
from impasto.style.fast import (
    FastStyleConfig,
    FastStyleLoss,
    load_fast_style,
    train_fast_style,
)
from impasto.style.fast import training as fast_training
from impasto.train import EpochSampler, load_checkpoint, read_stats

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ("relu1_2", "relu2_2")
N_PHOTOS = 9  # odd: with 2 processes one photo per epoch is left out, 4 each (2 batches of 2)

WORKER = textwrap.dedent(
    """
    import json, shutil, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[3])  # the tests folder, for conftest.tiny_vgg
    from conftest import tiny_vgg
    from impasto.style.fast import FastStyleConfig, FastStyleLoss, train_fast_style
    from impasto.train import cleanup, init_distributed

    out, cases = sys.argv[1], json.loads(sys.argv[2])
    layers = ("relu1_2", "relu2_2")
    first_content = []
    original = FastStyleLoss.g_step

    def g_step(self, content, fake):
        first_content.append(float(content.double().sum()))
        return original(self, content, fake)

    FastStyleLoss.g_step = g_step
    info = init_distributed("cpu")

    def run(name, opts, **kw):
        first_content.clear()
        r = train_fast_style(FastStyleConfig(**opts), vgg=tiny_vgg(layers), **kw)
        torch.save({
            "net": r.net.state_dict(), "D": None if r.D is None else r.D.state_dict(),
            "opt": r.opt.state_dict(),
            "opt_d": None if r.opt_d is None else r.opt_d.state_dict(),
            "stats": r.stats, "step": r.step, "aborted": r.aborted,
            "rank": r.rank, "world_size": r.world_size,
            "output": None if r.output is None else str(r.output),
            "checkpoint": None if r.checkpoint is None else str(r.checkpoint),
            "first_content": first_content[0] if first_content else None,
        }, f"{out}/{name}-rank{info.rank}.pt")
        return r

    try:
        run("plain", cases["plain"])
        run("adv", cases["adv"])
        # stopped after step 1 by rank 1 alone; rank 0 keeps the model file it wrote
        polls = []
        r = run("split1", cases["split"], abort=lambda: polls.append(1) or info.rank == 1)
        if info.rank == 0:
            shutil.copy(r.output, f"{out}/split-aborted.pt")
        run("split2", cases["split"], resume=cases["split"]["run"])
    finally:
        cleanup()
    """
)


def photo(i: int, h: int, w: int) -> np.ndarray:
    """A smooth synthetic 'photo', different for each ``i``."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([np.sin(xx * (4 + i) + i), np.cos(yy * (3 + i % 4) - i), xx * yy * (1 + i % 3)],
                   -1)
    return ((rgb - rgb.min()) / np.ptp(rgb) * 255).astype(np.uint8)


def make_data(root: Path) -> tuple[Path, Path]:
    photos = root / "photos"
    photos.mkdir()
    for i in range(N_PHOTOS):
        Image.fromarray(photo(i, 36 + 2 * i, 48 - i)).save(photos / f"p{i}.png")
    style = np.zeros((48, 64, 3), np.uint8)
    style[::4] = (30, 60, 200)
    style[2::4] = (240, 220, 40)
    Image.fromarray(style).save(root / "style.png")
    return photos, root / "style.png"


def config_opts(root: Path, photos: Path, style: Path, name: str, **kw) -> dict:
    opts = dict(
        content=str(photos), style=str(style), output=str(root / f"{name}.pt"),
        run=str(root / f"{name}.run"), size=32, style_size=64, adv_crop=16,
        channels=[4, 8, 8], num_residual=1, batch_size=2, steps=4, lr=1e-2,
        content_layers=["relu2_2"], style_layers=list(LAYERS), style_weight=1e-2, tv_weight=0.0,
        disc_width=8, disc_layers=2, precision="fp32", device="cpu", deterministic=True, seed=1,
        log_every=1, sample_every=0, ckpt_every=0, n_samples=2, tensorboard=False,
    )
    opts.update(kw)
    return opts


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_ddp")
    photos, style = make_data(root)
    adv = dict(adversarial_weight=0.3, adv_loss="hinge")
    cases = {
        "plain": config_opts(root, photos, style, "plain", steps=3),
        "adv": config_opts(root, photos, style, "adv", sample_every=2, **adv),
        "split": config_opts(root, photos, style, "split", **adv),
    }
    script = root / "worker.py"
    script.write_text(WORKER)
    tests_dir = str(Path(__file__).resolve().parents[1])
    run_ranks(script, str(root), json.dumps(cases), tests_dir)

    def load(name: str, rank: int) -> dict:
        return torch.load(root / f"{name}-rank{rank}.pt", weights_only=True)

    return root, cases, load


def initial_net(opts: dict) -> TransformerNet:
    cfg = FastStyleConfig(**opts)
    torch.manual_seed(cfg.seed)  # what training starts from, on every rank
    return TransformerNet(cfg.net_config())


@pytest.mark.parametrize("case", ["plain", "adv"])
def test_ranks_end_with_identical_trained_networks(ddp_runs, case):
    root, cases, load = ddp_runs
    r0, r1 = load(case, 0), load(case, 1)
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world_size"] == r1["world_size"] == 2
    # the ranks trained on different photos ...
    assert r0["first_content"] != r1["first_content"]
    # ... yet hold the same weights and optimiser states, and report the same (averaged) losses
    for name in ("net", "D", "opt", "opt_d"):
        assert_same(r0[name], r1[name], f"{case}.{name}")
    assert r0["stats"] == r1["stats"]
    assert (r0["D"] is None) == (case == "plain")
    # training changed every tensor of the network
    start = initial_net(cases[case]).state_dict()
    changed = [k for k, v in start.items() if not torch.equal(v, r0["net"][k])]
    assert changed == list(start), set(start) - set(changed)
    assert r0["step"] == cases[case]["steps"] and not r0["aborted"]
    # only rank 0 writes: the model file and the checkpoint hold rank 0's networks
    assert r1["output"] is None and r1["checkpoint"] is None
    net, meta, _ = load_fast_style(r0["output"])
    assert_same(net.state_dict(), r0["net"], "model file")
    assert meta["steps"] == cases[case]["steps"] and meta["aborted"] is False
    ckpt = load_checkpoint(r0["checkpoint"], kind="fast-style/transformer")
    assert_same(ckpt["models"]["net"], r0["net"], "ckpt.net")
    assert ckpt["extra"]["world_size"] == 2 and len(ckpt["extra"]["rng_per_rank"]) == 2
    assert ckpt["images_seen"] == cases[case]["steps"] * 2 * 2  # batch 2 on each of 2 ranks
    crops = [s["generators"]["crops"] for s in ckpt["extra"]["rng_per_rank"]]
    assert not torch.equal(crops[0], crops[1])  # each rank its own random crops


def test_abort_on_one_rank_stops_all_and_resume_is_exact(ddp_runs):
    root, cases, load = ddp_runs
    a0, a1 = load("split1", 0), load("split1", 1)
    # only rank 1 asked to stop; both stopped after the same step
    assert a0["aborted"] and a1["aborted"] and a0["step"] == a1["step"] == 1
    assert_same(a0["net"], a1["net"], "aborted.net")
    # the aborted run wrote the model file from the weights it stopped with
    net, meta, _ = load_fast_style(root / "split-aborted.pt")
    assert_same(net.state_dict(), a0["net"], "aborted model file")
    assert meta["steps"] == 1 and meta["aborted"] is True
    # 1 step, then a resume (mid-epoch) for 3 more, equals 4 steps straight
    for rank in (0, 1):
        straight, rest = load("adv", rank), load("split2", rank)
        for name in ("net", "D", "opt", "opt_d", "stats", "step"):
            assert_same(straight[name], rest[name], f"rank{rank}.{name}")
    a = load_checkpoint(load("adv", 0)["checkpoint"])
    b = load_checkpoint(load("split2", 0)["checkpoint"])
    assert a["extra"]["epoch"] == b["extra"]["epoch"] == 1  # 2 batches per epoch and rank
    assert a["extra"]["pos"] == b["extra"]["pos"] == 4
    for key in ("models", "optimizers", "rng", "extra", "step"):
        assert_same(a[key], b[key], key)


def test_only_rank_0_writes(ddp_runs):
    root, cases, _ = ddp_runs
    run = root / "adv.run"
    assert sorted(p.name for p in run.iterdir()) == [
        "ckpt-000000004.pt", "config.json", "images", "latest.json", "stats.jsonl"
    ]
    assert sorted(p.name for p in (run / "images").iterdir()) == [
        "samples-000000002.png", "samples-000000004.png"
    ]
    rows = read_stats(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # one line per step, not two
    assert rows[-1]["images_per_s"] > 0 and "d_loss" in rows[-1]
    split = [r["step"] for r in read_stats(root / "split.run")]
    assert split == [1, 2, 3, 4]


def test_shards_are_disjoint_and_one_process_keeps_the_whole_order():
    whole = EpochSampler(9, seed=5, order="derived")
    shards = [EpochSampler(9, seed=5, world_size=2, rank=r, order="derived") for r in (0, 1)]
    for epoch in (0, 3):
        for s in (whole, *shards):
            s.set_epoch(epoch)
        order = list(whole)
        a, b = (list(s) for s in shards)
        assert sorted(order) == list(range(9))
        assert len(a) == len(b) == len(shards[0]) == 4 and not set(a) & set(b)
        assert a + b != order and sorted(a + b) == sorted(order[:8])  # the 9th is left out
    shards[1].skip_next(3)
    assert list(shards[1]) == b[3:]
    with pytest.raises(InputError, match="fewer than the 3 training processes"):
        EpochSampler(2, seed=0, world_size=3, rank=0, order="derived")


# --------------------------------------------------------------------------------------------
# model files of stopped runs (one process)


@pytest.fixture()
def single(tmp_path):
    photos, style = make_data(tmp_path)

    def opts(name: str, **kw) -> dict:
        return config_opts(tmp_path, photos, style, name, **kw)

    return tmp_path, opts


def test_keyboard_interrupt_writes_model_file(single):
    """Ctrl-C in the Python API (a KeyboardInterrupt, here raised after step 2) still leaves a
    model file of the weights of that moment, then propagates."""
    root, opts = single
    cfg = FastStyleConfig(**opts("kbd", steps=10, ckpt_every=1))

    def progress(info):
        if info.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fast_style(cfg, vgg=tiny_vgg(LAYERS), progress=progress)
    net, meta, _ = load_fast_style(cfg.output)
    assert meta["steps"] == 2 and meta["aborted"] is True
    run = cfg.run_folder()
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [
        "ckpt-000000001.pt", "ckpt-000000002.pt"
    ]
    # the weights after step 2, as its checkpoint (written before the interrupt) holds them
    assert_same(net.state_dict(), load_checkpoint(run / "ckpt-000000002.pt")["models"]["net"],
                "interrupted model file")
    assert not list(root.glob(".*.tmp"))  # written atomically


def test_cli_first_ctrl_c_writes_checkpoint_and_model_file(single, monkeypatch, capsys):
    root, opts = single
    monkeypatch.setattr(fast_training, "VGG19Features", lambda layers, **kw: tiny_vgg(tuple(layers)))
    calls = []
    original = FastStyleLoss.g_step

    def g_step(self, content, fake):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during step 2: training stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, content, fake)

    monkeypatch.setattr(FastStyleLoss, "g_step", g_step)
    handler = signal.getsignal(signal.SIGINT)
    out = root / "cli.pt"
    rc = main(["fast-style", "train", str(root / "photos"), "-s", str(root / "style.png"),
               "-o", str(out), "--steps", "10", "--size", "32", "--style-size", "64",
               "--channels", "4,8,8", "--num-residual", "1", "--batch-size", "2",
               "--content-layers", "relu2_2", "--style-layers", "relu1_2,relu2_2",
               "--precision", "fp32", "--device", "cpu", "--no-tensorboard",
               "--adv-crop", "16", "--sample-every", "0", "--ckpt-every", "0", "-q"])
    assert rc == 130, capsys.readouterr().err
    assert len(calls) == 2
    _, meta, _ = load_fast_style(out)
    assert meta["steps"] == 2 and meta["aborted"] is True
    ckpt = load_checkpoint(root / "cli.run" / "ckpt-000000002.pt")
    net, _, _ = load_fast_style(out)
    assert_same(net.state_dict(), ckpt["models"]["net"], "model file vs checkpoint")
    assert signal.getsignal(signal.SIGINT) is handler  # the CLI put its handler back
