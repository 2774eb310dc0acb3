"""Progressive growing: the schedule and α, the faded reals, a tiny 4 -> 16 run, exact resume
mid-fade, sampling at reached resolutions, and schedule mistakes on the command line.

Tiny networks (widths 16, 16, 8; z 16) on 36 synthetic grey 16x16 images, deterministic fp32
on CPU. The schedule of :func:`config` is 32 images stable at 4x4 (4 steps of 8), 48 fading in
8x8 (6 steps), 32 stable (4), 48 fading in 16x16 with batches of 4 (12 steps), 32 stable at
16x16 (8): 34 steps. An epoch is 4 batches of 8 (32 of the 36 images), so most phase
boundaries fall inside an epoch.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from conftest import assert_same, assert_same_checkpoints, blobs, one_line_error, run_ranks
from impasto.cli import main
from impasto.errors import InputError
from impasto.gan import GanGenerator, export_model
from impasto.gan.progressive import (
    PgganSchedule,
    PgganTrainConfig,
    generator_from_checkpoint,
    prepare_reals,
    train,
)
from impasto.nets.pggan import upsample2x
from impasto.train import load_checkpoint, read_stats, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES = 36
SCHEDULE = dict(stable_kimg=0.032, fade_kimg=0.048, batch_sizes=(8, 8, 4))
# (resolution, phase, steps) of the schedule above
PHASES = [(4, "stable", 4), (8, "fade", 6), (8, "stable", 4), (16, "fade", 12), (16, "stable", 8)]
TOTAL_STEPS = sum(n for *_, n in PHASES)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pgdata") / "blobs.npz"
    np.savez(path, images=blobs(N_IMAGES))
    return str(path)


def config(data: str, run: Path, **kw) -> PgganTrainConfig:
    schedule = PgganSchedule(**{**SCHEDULE, **kw.pop("schedule", {})})
    opts = dict(
        data=data, run=str(run), resolution=16, channels=1, z_dim=16, widths=(16, 16, 8),
        schedule=schedule, precision="fp32", device="cpu", deterministic=True, seed=3,
        log_every=1, sample_every=0, ckpt_every=0, keep_last=10, n_samples=4, tensorboard=False,
    )
    opts.update(kw)
    return PgganTrainConfig(**opts)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The whole tiny run, with the stage of every step (from the progress callback)."""
    run = tmp_path_factory.mktemp("pgrun") / "run"
    seen = []
    result = train(config(data, run), progress=lambda p: seen.append(p))
    return result, seen


# --------------------------------------------------------------------------------------------
# the schedule


def simulate(schedule: PgganSchedule, resolution: int) -> list:
    """The stage of every step of a run (as the loop computes it)."""
    n, stages = 0, []
    total = schedule.total_images(resolution)
    while n < total:
        s = schedule.stage_at(n, resolution)
        stages.append(s)
        n += s.batch_size
    return stages


def test_alpha_rises_from_0_to_1_in_every_fade_and_is_1_when_stable():
    schedule = PgganSchedule(stable_kimg=0.1, fade_kimg=0.3, batch_sizes=(16, 12, 8, 8))
    stages = simulate(schedule, 32)
    assert len(stages) == schedule.total_steps(32)
    order = []
    for s in stages:
        if not order or order[-1] != (s.resolution, s.phase):
            order.append((s.resolution, s.phase))
    assert order == [(4, "stable"), (8, "fade"), (8, "stable"), (16, "fade"), (16, "stable"),
                     (32, "fade"), (32, "stable")]
    for res in (8, 16, 32):
        fade = [s for s in stages if s.resolution == res and s.phase == "fade"]
        alphas = [s.alpha for s in fade]
        assert all(b > a for a, b in zip(alphas, alphas[1:])), alphas  # strictly rising
        assert alphas[0] < 16 / 300 + 1e-12  # at 0, or past it by less than a batch
        assert alphas[-1] < 1.0 and alphas[-1] > 1.0 - 2 * fade[0].batch_size / 300
        assert all(s.net_alpha == s.alpha for s in fade)
    stable = [s for s in stages if s.phase == "stable"]
    assert all(s.alpha == 1.0 and s.net_alpha is None for s in stable)
    assert [s.batch_size for s in stages if s.resolution == 8] == [12] * len(
        [s for s in stages if s.resolution == 8])
    # The last step of the 4x4 phase runs past its end (7 * 16 = 112 > 100 images), so the fade
    # starts at (112 - 100) / 300; the 32x32 one (the 16x16 phase ends exactly) at 0.
    assert stages[7].phase == "fade" and stages[7].alpha == pytest.approx(12 / 300)
    assert next(s for s in stages if s.resolution == 32).alpha == 0.0


def test_schedule_lengths_presets_and_mistakes():
    s = PgganSchedule(**SCHEDULE)
    phases = s.phases(16)
    assert [(p.resolution, p.kind, p.start, p.length, p.batch_size) for p in phases] == [
        (4, "stable", 0, 32, 8), (8, "fade", 32, 48, 8), (8, "stable", 80, 32, 8),
        (16, "fade", 112, 48, 4), (16, "stable", 160, None, 4),
    ]
    assert s.total_images(16) == 192 and s.total_steps(16) == TOTAL_STEPS
    assert s.total_steps(16, world_size=2) == 2 + 3 + 2 + 6 + 4
    # total_kimg stops early or lengthens the last stable phase
    assert PgganSchedule(**SCHEDULE, total_kimg=0.1).total_steps(16) == 4 + 6 + 3
    assert PgganSchedule(**SCHEDULE, total_kimg=0.4).total_steps(16) == 26 + (400 - 160) // 4
    # no fades: straight jumps; a later start
    assert [p.kind for p in PgganSchedule(0.01, 0.0, (4, 4, 4)).phases(16)] == ["stable"] * 3
    assert [p.resolution for p in PgganSchedule(**SCHEDULE, start_resolution=8).phases(16)] == [
        8, 16, 16]
    paper = PgganSchedule.paper()
    assert (paper.stable_kimg, paper.fade_kimg) == (800.0, 800.0)
    assert paper.batch_sizes == (16, 16, 16, 16, 16, 16, 14, 6, 3)
    assert paper.batch_size(256) == 14 and paper.batch_size(1024) == 3
    assert paper.total_images(1024) == 17 * 800_000  # 9 stable + 8 fade phases
    cpu = PgganSchedule.cpu()
    assert cpu.total_images(64) == 9 * 20_000 and cpu.batch_size(4) > paper.batch_size(4)
    with pytest.raises(InputError, match="stable_kimg must be a number >= 0, not -1"):
        PgganSchedule(stable_kimg=-1)
    with pytest.raises(InputError, match="fade_kimg"):
        PgganSchedule(fade_kimg=float("nan"))
    with pytest.raises(InputError, match="batch_sizes has 2 entries for 3 resolutions"):
        PgganSchedule(batch_sizes=(8, 8)).check(16)
    with pytest.raises(InputError, match="every batch size"):
        PgganSchedule(batch_sizes=(8, 0, 8))
    with pytest.raises(InputError, match="start resolution 32 is above"):
        PgganSchedule(start_resolution=32).check(16)
    with pytest.raises(InputError, match="is not a power of two"):
        PgganTrainConfig(data="x", resolution=24)


def test_reals_fade_like_the_generator():
    torch.manual_seed(0)
    real = torch.randn(3, 1, 16, 16)
    down = F.avg_pool2d(real, 2)  # 8x8
    assert torch.equal(prepare_reals(real, 8), down)
    assert torch.equal(prepare_reals(real, 8, 1.0), down)
    assert torch.equal(prepare_reals(real, 8, 0.0), upsample2x(F.avg_pool2d(down, 2)))
    torch.testing.assert_close(
        prepare_reals(real, 8, 0.25), 0.75 * upsample2x(F.avg_pool2d(down, 2)) + 0.25 * down
    )
    assert torch.equal(prepare_reals(real, 16), real)
    assert torch.equal(prepare_reals(real, 4), F.avg_pool2d(real, 4))


# --------------------------------------------------------------------------------------------
# training


def test_tiny_run_grows_from_4_to_16(straight, data, tmp_path):
    result, seen = straight
    steps = [p for p in seen if p.stats]
    assert len(steps) == result.step == result.total_steps == TOTAL_STEPS
    got, i = [], 0
    for res, phase, n in PHASES:
        chunk = steps[i : i + n]
        assert {(p.resolution, p.phase) for p in chunk} == {(res, phase)}
        alphas = [p.alpha for p in chunk]
        if phase == "fade":
            assert alphas[0] == 0.0 and all(b > a for a, b in zip(alphas, alphas[1:]))
            assert alphas[-1] < 1.0
        else:
            assert set(alphas) == {1.0}
        got.append((res, phase, len(chunk)))
        i += n
    assert got == PHASES
    assert all(np.isfinite(list(p.stats.values())).all() for p in steps)
    assert {"d_loss", "drift", "gp", "g_loss"} <= steps[-1].stats.keys()
    assert (result.stage.resolution, result.stage.phase) == (16, "stable")
    assert result.images_seen == 192

    run = result.run
    # a checkpoint and a sample grid at the end of every phase, at that phase's resolution
    ends = np.cumsum([n for *_, n in PHASES]).tolist()
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == [f"ckpt-{s:09d}.pt" for s in ends]
    for (res, *_), s in zip(PHASES, ends):
        grid = Image.open(run / "images" / f"samples-ema-{s:09d}.png")
        assert grid.size == (2 * (res + 2) + 2,) * 2  # 2x2 images of res px, 2 px padding
    rows = read_stats(run)
    assert [r["resolution"] for r in rows] == [p.resolution for p in steps]
    assert [r["alpha"] for r in rows] == [p.alpha for p in steps]
    assert json.loads((run / "config.json").read_text())["schedule"]["batch_sizes"] == [8, 8, 4]
    ckpt = load_checkpoint(result.checkpoint, kind="gan/pggan")
    assert ckpt["extra"]["stage"] == {"resolution": 16, "phase": "stable", "alpha": 1.0,
                                      "phase_index": 4, "batch_size": 4}
    mid = load_checkpoint(run / "ckpt-000000010.pt")["extra"]["stage"]
    assert (mid["resolution"], mid["phase"]) == (8, "fade") and mid["alpha"] == pytest.approx(
        40 / 48)
    # Adam's state was reset at the start of the last phase (the paper's code): 8 steps in it.
    adam = ckpt["optimizers"]["G"]["state"]
    assert {int(v["step"]) for v in adam.values()} == {8}
    # the networks returned render at the last stage
    assert result.G_ema(torch.randn(2, 16)).shape == (2, 1, 16, 16)


def test_without_the_reset_adam_counts_every_step(data, tmp_path):
    result = train(config(data, tmp_path / "run", reset_optimizers=False,
                          schedule=dict(total_kimg=0.1), output=str(tmp_path / "pg.pt")))
    adam = load_checkpoint(result.checkpoint)["optimizers"]["D"]["state"]
    # D's last block trained at every step (13), the 4x4 fromRGB until the fade ended (4 + 6),
    # the 8x8 layers from the fade's first step on (6 + 3)
    steps = sorted({int(v["step"]) for v in adam.values()})
    assert result.step == 13 and steps == [9, 10, 13]
    # the model file written at the end renders as the run's last checkpoint does
    assert result.output == tmp_path / "pg.pt"
    for r in (4, 8):
        torch.testing.assert_close(GanGenerator.from_file(result.output, resolution=r)(3, seed=1),
                                   GanGenerator.load(result.run, resolution=r)(3, seed=1),
                                   rtol=0, atol=0)


def split_run(data, run: Path, at: int, **kw):
    calls = []
    first = train(config(data, run, **kw), abort=lambda: calls.append(1) or len(calls) == at)
    assert first.aborted and first.step == at
    half = load_checkpoint(first.checkpoint)
    resumed = train(config(data, run, **kw), resume=run)
    return half, resumed


@pytest.mark.parametrize("at", [7, 14])
def test_resume_is_bit_identical(straight, data, tmp_path, at):
    """At 7: in the middle of the 8x8 fade and of an epoch. At 14: the last step of the 8x8
    stable phase: the resumed run starts the 16x16 fade, resets Adam and changes batch size."""
    result, _ = straight
    half, resumed = split_run(data, tmp_path / "run", at)
    stage = half["extra"]["stage"]
    if at == 7:
        assert stage["phase"] == "fade" and 0.0 < stage["alpha"] < 1.0
        assert 0 < half["extra"]["pos"] < 32
    else:
        assert (stage["resolution"], stage["phase"]) == (8, "stable")
    assert resumed.step == TOTAL_STEPS
    assert_same_checkpoints(result.checkpoint, resumed.checkpoint)
    assert len(read_stats(tmp_path / "run")) == TOTAL_STEPS


def test_resume_mid_fade_in_bf16_channels_last(data, tmp_path):
    kw = dict(precision="bf16", channels_last=True, schedule=dict(total_kimg=0.14))
    whole = train(config(data, tmp_path / "whole", **kw))
    half, resumed = split_run(data, tmp_path / "split", 18, **kw)  # 16x16 fade, 4 steps in
    assert half["extra"]["stage"]["phase"] == "fade"
    assert_same_checkpoints(whole.checkpoint, resumed.checkpoint,
                            ("models", "optimizers", "rng", "extra"))


def test_the_comparison_notices_a_wrong_alpha(straight, data, tmp_path, monkeypatch):
    # Control: a resumed run whose fade is off by one step of alpha is caught.
    from impasto.gan.progressive import training

    result, _ = straight
    train(config(data, tmp_path / "run", schedule=dict(total_kimg=0.056)))  # 7 steps
    real = training.stage_at

    def late(phases, images_seen):
        return real(phases, max(0, images_seen - 8))

    monkeypatch.setattr(training, "stage_at", late)
    resumed = train(config(data, tmp_path / "run"), resume=tmp_path / "run")
    with pytest.raises(AssertionError, match="tensors differ"):
        assert_same(load_checkpoint(result.checkpoint)["models"],
                    load_checkpoint(resumed.checkpoint)["models"])


def test_resume_refuses_other_networks_and_kinds(straight, data, tmp_path):
    result, _ = straight
    with pytest.raises(InputError, match="widths \\[16, 16, 8\\], not \\[16, 8, 8\\]"):
        train(config(data, tmp_path / "a", widths=(16, 8, 8)), resume=result.checkpoint)
    other = save_checkpoint(tmp_path / "dc.pt", kind="gan/dcgan", config={}, step=1,
                            images_seen=1, models={}, optimizers={})
    with pytest.raises(InputError, match="'gan/dcgan' checkpoint, not 'gan/pggan'"):
        train(config(data, tmp_path / "b"), resume=other)
    with pytest.raises(InputError, match="already holds checkpoints"):
        train(config(data, result.run))
    with pytest.raises(InputError, match="fewer than the batch size"):
        train(config(data, tmp_path / "c", schedule=dict(batch_sizes=(8, 64, 4))))
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------------------------
# sampling at reached resolutions


def test_generator_renders_at_every_reached_resolution(straight, tmp_path):
    result, _ = straight
    gen = GanGenerator.load(result.run)
    assert (gen.resolution, gen.z_dim, gen.channels) == (16, 16, 1)
    x = gen(3, seed=1)
    assert x.shape == (3, 1, 16, 16) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    z = gen.latents(3, seed=1)
    G = result.G_ema
    for r in (4, 8):
        low = GanGenerator.load(result.run, resolution=r)
        G.set_stage(r)
        with torch.no_grad():
            expect = ((G(z) + 1) / 2).clamp(0, 1)
        # (the run's G_ema is channels_last, the loaded one NCHW: rounding may differ)
        torch.testing.assert_close(low(3, seed=1), expect, atol=1e-5, rtol=0)
        assert low.resolution == r
    # an older checkpoint renders at its own stage: mid-fade, with its alpha
    faded = generator_from_checkpoint(load_checkpoint(result.run / "ckpt-000000010.pt"))
    assert faded.stage == (8, pytest.approx(40 / 48))
    # ... and so does its model file, which reaches the same resolutions
    model = export_model(result.run / "ckpt-000000010.pt", tmp_path / "mid.safetensors")
    mid = GanGenerator.from_file(model)
    assert mid.G.stage == faded.stage and mid.resolution == 8
    assert torch.equal(mid(2, seed=4), GanGenerator.load(result.run / "ckpt-000000010.pt")(
        2, seed=4))
    with pytest.raises(InputError, match="has not trained at resolution 16; it has reached 4, 8"):
        GanGenerator.from_file(model, resolution=16)
    grey = mid(2, seed=4, output="pil")
    assert [(p.mode, p.size) for p in grey] == [("L", (8, 8))] * 2
    assert np.array_equal(np.asarray(grey[1]),
                          (mid(2, seed=4)[1, 0] * 255).round().to(torch.uint8).numpy())
    with pytest.raises(InputError, match="has not trained at resolution 16; it has reached 4, 8"):
        GanGenerator.load(result.run / "ckpt-000000010.pt", resolution=16)
    with pytest.raises(InputError, match="has not trained at resolution 32"):
        GanGenerator.load(result.run, resolution=32)
    # through the command line
    out = tmp_path / "grid.png"
    assert main(["gan", "sample", str(result.run), "-n", "4", "--grid", str(out),
                 "--resolution", "8", "-q"]) == 0
    assert Image.open(out).size == (22, 22)
    gif = tmp_path / "walk.gif"
    assert main(["gan", "interpolate", str(result.run), "--seeds", "1,2", "--frames", "3",
                 "-o", str(gif), "--resolution", "4", "-q"]) == 0
    assert Image.open(gif).size == (4, 4)


# --------------------------------------------------------------------------------------------
# the command line


@pytest.mark.parametrize("options,expect", [
    (["--resolution", "48"], "resolution 48 is not a power of two"),
    (["--resolution", "2048"], "resolution 2048 is not a power of two from 4 to 1024"),
    (["--batch-sizes", "8,8"], "batch_sizes has 2 entries for 3 resolutions (4 to 16)"),
    (["--stable-kimg", "-1"], "stable_kimg must be a number >= 0, not -1.0"),
    (["--fade-kimg", "-0.5"], "fade_kimg must be a number >= 0, not -0.5"),
    (["--kimg", "-2"], "--kimg: must be positive"),
    (["--widths", "8,8"], "widths has 2 entries for 3 resolutions"),
    (["--loss", "hinge"], "--loss applies to --arch dcgan and --arch sngan, not to --arch pggan"),
    (["--steps", "10"], "--steps applies to --arch dcgan and --arch sngan, not to --arch pggan"),
    (["--batch-size", "8", "--batch-sizes", "8,8,8"], "--batch-size or --batch-sizes"),
])
def test_bad_schedule_settings_are_one_line_exit_2(capsys, data, tmp_path, options, expect):
    run = tmp_path / "run"
    argv = ["gan", "train", data, "--run", str(run), "--arch", "pggan", "--resolution", "16",
            "--channels", "1", "-q", *options]
    one_line_error(capsys, argv, expect, run)


def test_pggan_options_are_refused_for_other_archs(capsys, data, tmp_path):
    run = tmp_path / "run"
    one_line_error(capsys, ["gan", "train", data, "--run", str(run), "--arch", "dcgan",
                            "--fade-kimg", "3"],
                   "--fade-kimg applies to --arch pggan, not to --arch dcgan", run)


def test_cli_trains_and_resumes_a_pggan_run(data, tmp_path):
    run = tmp_path / "run"
    base = ["--precision", "fp32", "--device", "cpu", "--no-tensorboard", "-q"]
    assert main(["gan", "train", data, "--run", str(run), "--arch", "pggan", "--resolution", "8",
                 "--channels", "1", "--z-dim", "8", "--widths", "8,8", "--stable-kimg", "0.016",
                 "--fade-kimg", "0.016", "--batch-size", "8", "--mbstd-group", "2", *base]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["arch"] == "pggan" and cfg["mbstd_group_size"] == 2
    assert cfg["schedule"]["batch_sizes"][:2] == [8, 8] and cfg["schedule"]["fade_kimg"] == 0.016
    assert load_checkpoint(run / "ckpt-000000006.pt")["images_seen"] == 48
    # --resume picks up the run's settings (no --arch needed) and lengthens it with --kimg
    assert (cfg["ema_beta"], cfg["ema_kimg"]) == (None, 10.0)  # the default half-life
    # (--ema-beta on resume replaces the saved half-life)
    assert main(["gan", "train", "--resume", str(run), "--kimg", "0.08", "--ema-beta", "0.99",
                 *base]) == 0
    last = load_checkpoint(sorted(run.glob("ckpt-*.pt"))[-1])
    assert last["step"] == 10 and last["images_seen"] == 80
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["schedule"]["total_kimg"] == 0.08
    assert (cfg["ema_beta"], cfg["ema_kimg"]) == (0.99, None)


# --------------------------------------------------------------------------------------------
# two processes (as torchrun starts them)

DDP_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from impasto.gan.progressive import PgganSchedule, PgganTrainConfig, train
    from impasto.train import cleanup, init_distributed

    out, opts = sys.argv[1], json.loads(sys.argv[2])
    info = init_distributed("cpu")
    try:
        opts["schedule"] = PgganSchedule(**opts["schedule"])
        r = train(PgganTrainConfig(**opts))
        torch.save({"G": r.G.state_dict(), "D": r.D.state_dict(), "E": r.G_ema.state_dict(),
                    "opt_d": r.opt_d.state_dict(), "step": r.step, "images": r.images_seen,
                    "stage": r.stage.to_dict()}, f"{out}/rank{info.rank}.pt")
    finally:
        cleanup()
    """
)


def test_two_processes_grow_in_step(data, tmp_path):
    """DDP through every phase change (the idle layers change at each): identical ranks."""
    opts = dict(data=data, run=str(tmp_path / "run"), resolution=16, channels=1, z_dim=16,
                widths=[16, 16, 8],
                schedule=dict(SCHEDULE, batch_sizes=[4, 4, 4], total_kimg=0.12),
                precision="fp32", device="cpu", deterministic=True, log_every=1,
                sample_every=0, ckpt_every=0, n_samples=4, tensorboard=False)
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    run_ranks(script, str(tmp_path), json.dumps(opts))
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in range(2))
    # 4 + 6 + 4 steps of 2 x 4 images up to the 16x16 fade, and one step into it
    assert r0["step"] == 15 and r0["images"] == 120
    assert (r0["stage"]["resolution"], r0["stage"]["phase"]) == (16, "fade")
    for name in ("G", "D", "E", "opt_d"):
        assert_same(r0[name], r1[name], name)
    assert len(read_stats(tmp_path / "run")) == 15  # rank 0 alone logs
