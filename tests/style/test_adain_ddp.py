"""AdaIN decoder training on two CPU processes (gloo), as ``torchrun --nproc_per_node=2`` starts
it, with a tiny random encoder.

Two processes in one process group train the decoder for a few deterministic steps, then again
stopped after one step by an abort that only rank 1 asks for, then resumed. Each rank saves what
train() returned: the ranks must hold identical, trained decoders although they saw different
images, the stop must be agreed, the resumed run must equal the straight one bit for bit, and
only rank 0 may write files.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_same, run_ranks
from impasto.nets.adain import AdaINDecoder, AdaINDecoderConfig
from impasto.style.adain import CHECKPOINT_KIND, AdaINTrainConfig, load_decoder
from impasto.train import load_checkpoint, read_stats

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = (4, 8, 8, 8)  # conftest.tiny_vgg's widths up to relu4_1
STEPS = 3

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[3])  # the tests folder, for conftest.tiny_vgg
    from conftest import tiny_vgg
    from impasto.nets.adain import ENCODER_LAYERS
    from impasto.style.adain import training as adain_module
    from impasto.style.adain import AdaINTrainConfig, train
    from impasto.train import cleanup, init_distributed

    out, cases = sys.argv[1], json.loads(sys.argv[2])
    first_content = []
    original = adain_module.adain

    def spy(content, style):  # the content features of each step, on this rank
        first_content.append(float(content.double().sum()))
        return original(content, style)

    adain_module.adain = spy
    info = init_distributed("cpu")

    def run(name, opts, **kw):
        first_content.clear()
        r = train(AdaINTrainConfig(**opts), encoder=tiny_vgg(ENCODER_LAYERS, seed=0), **kw)
        torch.save({
            "decoder": r.decoder.state_dict(), "stats": r.stats, "step": r.step,
            "aborted": r.aborted, "rank": r.rank, "world_size": r.world_size,
            "output": None if r.output is None else str(r.output),
            "checkpoint": None if r.checkpoint is None else str(r.checkpoint),
            "first_content": first_content[0] if first_content else None,
        }, f"{out}/{name}-rank{info.rank}.pt")

    try:
        run("straight", cases["straight"])
        run("split1", cases["split"], abort=lambda: info.rank == 1)  # rank 1 alone asks
        run("split2", cases["split"], resume=cases["split"]["run"])
    finally:
        cleanup()
    """
)


def make_folders(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    c, s = root / "content", root / "styles"
    c.mkdir()
    s.mkdir()
    for i in range(5):  # odd: with 2 processes one image per epoch is left out
        Image.fromarray(rng.integers(0, 256, (40, 44 + 2 * i, 3), dtype=np.uint8)).save(
            c / f"{i}.png")
    for i in range(3):
        arr = rng.integers(0, 256, (44, 40, 3), dtype=np.uint8) * np.array([1.0, 0.4, 0.6])
        Image.fromarray(arr.astype(np.uint8)).save(s / f"s{i}.png")
    return c, s


def config_opts(root: Path, c: Path, s: Path, name: str) -> dict:
    return dict(content=str(c), styles=str(s), run=str(root / f"{name}-run"),
                output=str(root / f"{name}.pt"), steps=STEPS, batch_size=1, image_size=32,
                load_size=40, lr=1e-3, lr_decay=1e-3, device="cpu", precision="fp32",
                deterministic=True, log_every=1, ckpt_every=0, tensorboard=False, seed=0)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain_ddp")
    c, s = make_folders(root)
    cases = {name: config_opts(root, c, s, name) for name in ("straight", "split")}
    script = root / "worker.py"
    script.write_text(WORKER)
    run_ranks(script, str(root), json.dumps(cases), str(Path(__file__).resolve().parents[1]))

    def load(name: str, rank: int) -> dict:
        return torch.load(root / f"{name}-rank{rank}.pt", weights_only=True)

    return root, cases, load


def test_ranks_end_with_identical_trained_decoders(ddp_runs):
    root, cases, load = ddp_runs
    r0, r1 = load("straight", 0), load("straight", 1)
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world_size"] == r1["world_size"] == 2
    assert r0["first_content"] != r1["first_content"]  # each rank its own images ...
    assert_same(r0["decoder"], r1["decoder"], "decoder")  # ... yet the same decoder
    assert r0["stats"] == r1["stats"]  # averaged losses
    torch.manual_seed(cases["straight"]["seed"])  # what training starts from, on every rank
    start = AdaINDecoder(AdaINDecoderConfig(TINY)).state_dict()
    changed = [k for k, v in start.items() if not torch.equal(v, r0["decoder"][k])]
    assert changed and changed == [k for k in start if start[k].is_floating_point()]
    assert r0["step"] == STEPS and not r0["aborted"]
    # rank 0 alone writes: the decoder file and the checkpoint hold its weights
    assert r1["output"] is None and r1["checkpoint"] is None
    decoder, meta = load_decoder(r0["output"])
    assert_same(decoder.state_dict(), r0["decoder"], "decoder file")
    ckpt = load_checkpoint(r0["checkpoint"], kind=CHECKPOINT_KIND)
    assert ckpt["images_seen"] == STEPS * 2  # batch 1 on each of 2 ranks
    states = ckpt["extra"]["rng_per_rank"]
    assert ckpt["extra"]["world_size"] == 2 and len(states) == 2
    assert not torch.equal(states[0]["torch"], states[1]["torch"])  # each rank its own stream
    run = root / "straight-run"
    assert sorted(p.name for p in run.iterdir()) == [
        "ckpt-000000003.pt", "config.json", "latest.json", "stats.jsonl"
    ]
    assert [r["step"] for r in read_stats(run)] == [1, 2, 3]  # one line per step, not two


def test_abort_on_one_rank_stops_all_and_resume_is_exact(ddp_runs):
    root, cases, load = ddp_runs
    a0, a1 = load("split1", 0), load("split1", 1)
    assert a0["aborted"] and a1["aborted"] and a0["step"] == a1["step"] == 1
    assert a0["output"] is None and a1["output"] is None
    for rank in (0, 1):  # 1 step, then a resume for 2 more, equals 3 steps straight
        straight, rest = load("straight", rank), load("split2", rank)
        for name in ("decoder", "stats", "step"):
            assert_same(straight[name], rest[name], f"rank{rank}.{name}")
    a = load_checkpoint(load("straight", 0)["checkpoint"])
    b = load_checkpoint(load("split2", 0)["checkpoint"])
    for key in ("models", "optimizers", "step", "images_seen"):
        assert_same(a[key], b[key], key)
    # the data positions; not the global torch streams, from which every (re)started data
    # loader draws a seed that the crops (keyed by seed, epoch and index) never use
    for key in ("content", "style", "world_size", "decoder"):
        assert_same(a["extra"][key], b["extra"][key], key)


def test_cli_passes_deterministic_to_the_config(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from impasto.cli import main
    from impasto.style import adain as adain_module

    seen = []

    def fake_train(config, **kw):
        seen.append(config)
        return SimpleNamespace(aborted=False, output=None, step=config.steps, run=config.run)

    monkeypatch.setattr(adain_module, "train", fake_train)
    base = ["adain", "train", "--content", "c", "--styles", "s", "-o", str(tmp_path / "d.pt"),
            "-q"]
    assert main(base) == 0 and main([*base, "--deterministic"]) == 0
    assert [c.deterministic for c in seen] == [False, True]
    assert AdaINTrainConfig(content="", styles="").deterministic is False
