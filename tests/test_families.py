"""The contract every registered training family keeps (impasto.families.FAMILIES), one test
parametrised over the families instead of a near-copy per family:

- a short deterministic run on CPU leaves a checkpoint and the stats of every step;
- abort half way, then ``resume``: the end is bit-identical to the straight run (weights,
  buffers, optimiser states);
- ``export_model`` writes the one model-file format with the family's kind, and the family's
  pipeline (``from_file(path, device=...)``, ``__call__(..., seed=, output="tensor")``) reads it
  and gives finite, seeded-reproducible output.

Adding a family means registering it and giving it an entry in ``ADAPTERS`` (its tiny config,
the pretrained features it needs replaced by tiny ones, and one pipeline call):
``test_every_family_has_an_adapter`` fails until it has one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_vgg
from PIL import Image

from impasto.families import FAMILIES
from impasto.train import load_checkpoint
from impasto.train.modelfile import load_model
from impasto.train.runlog import read_stats

RUNTIME = dict(precision="fp32", device="cpu", deterministic=True, tensorboard=False,
               log_every=1, keep_last=10)


def smooth(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    """``n`` uint8 images ``(n, h, w, c)``: random low-frequency colour fields."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        chans = []
        for _ in range(c):
            a, b, p = rng.uniform(1, 6, 3)
            chans.append(np.sin(a * xx + p) * np.cos(b * yy - p))
        out.append(((np.stack(chans, -1) + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
    return np.stack(out)


def folder(root: Path, images: np.ndarray) -> str:
    if not root.exists():
        root.mkdir(parents=True)
        for i, img in enumerate(images):
            Image.fromarray(img.squeeze()).save(root / f"{i}.png")
    return str(root)


@dataclass
class Adapter:
    """How the contract drives one family: ``config(tmp, name)`` a tiny deterministic config
    whose run folder is ``tmp/name``; ``abort_after`` the step to stop at; ``train_kwargs()``
    the tiny pretrained features; ``pipe_kwargs()`` the same for ``from_file``; ``call(pipe,
    seed)`` one pipeline call with ``output="tensor"``."""

    config: Callable[[Path, str], Any]
    abort_after: int
    call: Callable[[Any, int], torch.Tensor]
    train_kwargs: Callable[[], dict[str, Any]] = dict
    pipe_kwargs: Callable[[], dict[str, Any]] = dict
    kind_prefix: str = ""
    #: More settings to run under DDP (straight runs, ranks must agree): name -> overrides.
    ddp_variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The step to abort at on two processes, where the run is shorter (kimg-long runs).
    ddp_abort_after: int | None = None


def gan_config(tmp: Path, name: str) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    from impasto.gan import GanTrainConfig

    data = tmp / "gan.npz"
    if not data.exists():
        np.savez(data, images=smooth(16, 32, 32, 3, 1), labels=np.arange(16) % 2)
    return GanTrainConfig(data=str(data), run=str(tmp / name), resolution=32, z_dim=8,
                          base_width=4, batch_size=4, steps=4, seed=0, sample_every=0,
                          ckpt_every=2, n_samples=4, ema_rampup=0.01, **RUNTIME)


def pggan_config(tmp: Path, name: str) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    from impasto.gan.progressive import PgganSchedule, PgganTrainConfig

    data = tmp / "pg.npz"
    if not data.exists():
        np.savez(data, images=smooth(16, 8, 8, 1, 2))
    schedule = PgganSchedule(stable_kimg=0.016, fade_kimg=0.016, batch_sizes=(4, 4))
    return PgganTrainConfig(data=str(data), run=str(tmp / name), resolution=8, channels=1,
                            z_dim=8, widths=(8, 4), schedule=schedule, seed=3, sample_every=0,
                            ckpt_every=3, n_samples=4, **RUNTIME)


def classify_config(tmp: Path, name: str) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    from impasto.classify import ClassifierTrainConfig

    data, val = tmp / "clf.npz", tmp / "clf-val.npz"
    if not data.exists():
        np.savez(data, images=smooth(40, 8, 8, 1, 3), labels=np.arange(40) % 4)
        np.savez(val, images=smooth(16, 8, 8, 1, 6), labels=np.arange(16) % 4)
    return ClassifierTrainConfig(data=str(data), val_data=str(val), run=str(tmp / name),
                                 image_size=8, width=4, batch_size=8, steps=4, eval_every=2,
                                 dropout=0.2, **RUNTIME)


def fast_style_config(tmp: Path, name: str) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    from impasto.style.fast import FastStyleTrainConfig

    style = tmp / "style.png"
    if not style.exists():
        Image.fromarray(smooth(1, 40, 40, 3, 5)[0]).save(style)
    return FastStyleTrainConfig(
        content=folder(tmp / "photos", smooth(6, 40, 44, 3, 4)), style=str(style),
        output=str(tmp / f"{name}.pt"), run=str(tmp / name), size=32, style_size=40, adv_crop=16,
        channels=(4, 4, 4), num_residual=1, batch_size=2, steps=4, lr=1e-2,
        content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2"), style_weight=1e-2,
        tv_weight=0.0, seed=1, sample_every=0, ckpt_every=2, **RUNTIME,
    )


def adain_config(tmp: Path, name: str) -> Any:
    from impasto.style.adain import AdaINTrainConfig

    return AdaINTrainConfig(
        content=folder(tmp / "acontent", smooth(6, 40, 44, 3, 4)),
        styles=folder(tmp / "astyles", smooth(3, 40, 40, 3, 5)), run=str(tmp / name),
        steps=4, batch_size=2, image_size=32, load_size=40, lr=1e-3, lr_decay=1e-3,
        ckpt_every=2, **RUNTIME,
    )


def _adain_encoder() -> dict[str, Any]:
    from impasto.nets.adain import ENCODER_LAYERS

    return {"encoder": tiny_vgg(ENCODER_LAYERS)}


def _content(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, 24, 28, generator=torch.Generator().manual_seed(seed))


ADAPTERS: dict[str, Adapter] = {
    "gan": Adapter(gan_config, 2, lambda p, s: p(3, seed=s, output="tensor"),
                   kind_prefix="gan/dcgan", ddp_variants={
                       # batch norm in D, a penalty outside DDP's reducer, augmentation
                       "conditional-r1": dict(conditional=True, r1_gamma=0.5,
                                              diffaugment="translation", steps=3),
                       "sngan": dict(arch="sngan", d_steps=2, steps=2),
                   }),
    "pggan": Adapter(pggan_config, 6, lambda p, s: p(3, seed=s, output="tensor"),
                     kind_prefix="gan/pggan", ddp_abort_after=3),  # both mid-fade
    "classify": Adapter(classify_config, 2,
                        lambda p, s: p(torch.rand(3, 1, 8, 8, generator=torch.Generator()
                                                  .manual_seed(s)), seed=s, output="tensor"),
                        kind_prefix="classify/"),
    "fast-style": Adapter(fast_style_config, 2,
                          lambda p, s: p(_content(s), seed=s, output="tensor"),
                          train_kwargs=lambda: {"vgg": tiny_vgg(("relu1_2", "relu2_2"))},
                          kind_prefix="fast-style/transformer",
                          ddp_variants={"adversarial": dict(adversarial_weight=0.1, adv_crop=24)}),
    "adain": Adapter(adain_config, 2,
                     lambda p, s: p(_content(s), _content(s + 1), seed=s, output="tensor"),
                     train_kwargs=_adain_encoder, pipe_kwargs=_adain_encoder,
                     kind_prefix="adain/decoder"),
}


def test_every_family_has_an_adapter():
    assert set(FAMILIES.names()) == set(ADAPTERS)


def _models(path: Path | str) -> dict[str, Any]:
    ckpt = load_checkpoint(path)
    return {"models": ckpt["models"], "optimizers": ckpt["optimizers"], "step": ckpt["step"]}


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_family_contract(name: str, tmp_path: Path) -> None:
    fam, ad = FAMILIES.get(name), ADAPTERS[name]
    torch.set_num_threads(1)

    # a short straight run
    straight = fam.train(ad.config(tmp_path, "a"), **ad.train_kwargs())
    assert not straight.aborted and straight.step >= ad.abort_after + 1
    steps = [row["step"] for row in read_stats(tmp_path / "a") if "step" in row]
    assert sorted(set(steps)) == list(range(1, straight.step + 1))

    # abort half way, resume: bit-identical end
    polls = itertools.count(1)
    half = fam.train(ad.config(tmp_path, "b"), abort=lambda: next(polls) >= ad.abort_after,
                     **ad.train_kwargs())
    assert half.aborted and half.step == ad.abort_after
    resumed = fam.train(ad.config(tmp_path, "b"), resume=tmp_path / "b", **ad.train_kwargs())
    assert resumed.step == straight.step and not resumed.aborted
    _assert_same(_models(straight.checkpoint), _models(resumed.checkpoint))

    # the model file and the pipeline
    out = fam.export_model(tmp_path / "a", tmp_path / "model.pt")
    assert load_model(out).kind.startswith(ad.kind_prefix)
    pipe = fam.pipeline.from_file(out, device="cpu", **ad.pipe_kwargs())
    y1, y2, y3 = ad.call(pipe, 3), ad.call(pipe, 3), ad.call(pipe, 4)
    assert isinstance(y1, torch.Tensor) and bool(torch.isfinite(y1).all())
    assert torch.equal(y1, y2)
    if name in ("gan", "pggan"):  # the seed draws the latents
        assert not torch.equal(y1, y3)


# --------------------------------------------------------------------------------------------
# the same under torchrun: two gloo processes

DDP_WORKER = Path(__file__).with_name("_families_ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> dict[str, Any]:
    """Every family's three runs (straight; aborted on rank 1 only; resumed) on two processes,
    in one process group; each rank's networks, steps and flags, by family and run."""
    from conftest import run_ranks

    root = tmp_path_factory.mktemp("families_ddp")
    for name, ad in ADAPTERS.items():
        ad.config(root / name, "probe")  # write the data once, before the ranks start
    run_ranks(DDP_WORKER, root, ",".join(ADAPTERS), timeout=600)
    return {"root": root, **{
        name: [torch.load(root / name / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        for name in ADAPTERS
    }}


DDP_CASES = [(name, run) for name, ad in ADAPTERS.items()
             for run in ("straight", *ad.ddp_variants)]


@pytest.mark.parametrize(("name", "run"), DDP_CASES)
def test_ranks_agree_under_ddp(name: str, run: str, ddp_results: dict[str, Any]) -> None:
    """The ranks trained on different shards yet end with the same networks (weights, batch
    norm statistics, spectral-norm vectors, EMA) and the same averaged losses; only rank 0
    reports a checkpoint, which holds every rank's random streams."""
    rank0, rank1 = ddp_results[name]
    _assert_same(rank0[run]["nets"], rank1[run]["nets"], f"{name}/{run}")
    assert rank0[run]["stats"] == rank1[run]["stats"]
    assert rank0[run]["images_seen"] > 0
    assert rank1[run]["checkpoint"] is None
    ckpt = load_checkpoint(rank0[run]["checkpoint"])
    assert ckpt["extra"]["world_size"] == 2 and len(ckpt["extra"]["rng_per_rank"]) == 2
    assert ckpt["images_seen"] == rank0[run]["images_seen"]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_abort_on_one_rank_and_exact_resume_under_ddp(name: str,
                                                     ddp_results: dict[str, Any]) -> None:
    rank0, rank1 = ddp_results[name]
    root = ddp_results["root"] / name
    assert rank0["aborted"]["aborted"] and rank1["aborted"]["aborted"]  # one rank asked
    ad = ADAPTERS[name]
    assert rank0["aborted"]["step"] == rank1["aborted"]["step"] == (
        ad.ddp_abort_after or ad.abort_after)
    assert rank0["resumed"]["step"] == rank0["straight"]["step"]
    _assert_same(rank0["straight"]["nets"], rank0["resumed"]["nets"], f"{name}/resume")
    _assert_same(rank0["resumed"]["nets"], rank1["resumed"]["nets"], f"{name}/resume ranks")
    # only rank 0 wrote: one stats row per step, one TensorBoard-free set of files
    steps = [row["step"] for row in read_stats(root / "a") if "step" in row]
    assert len(steps) == len(set(steps)) == rank0["straight"]["step"]


def test_classifier_validation_is_summed_over_the_shards(ddp_results: dict[str, Any]) -> None:
    from impasto.classify import evaluate, load_classifier

    rank0, rank1 = ddp_results["classify"]
    root = ddp_results["root"] / "classify"
    assert rank0["straight"]["val"] == rank1["straight"]["val"]
    single = evaluate(load_classifier(root / "a", which="latest"), str(root / "clf-val.npz"))
    assert single.n == 16
    assert rank0["straight"]["val"]["val_acc"] == pytest.approx(single.accuracy)
    assert rank0["straight"]["val"]["val_loss"] == pytest.approx(single.loss, rel=1e-5)
