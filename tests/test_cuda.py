"""What only a CUDA GPU can show: bf16 autocast, random streams and checkpoints on the device,
``weights_only`` loads onto it, int8 refused there, DDP over NCCL in one process, checkpoints
crossing between GPU and CPU, and training steps that never make the host wait for the GPU.

Every test is marked ``cuda`` and skipped without a CUDA device (``tests/conftest.py``);
``pytest -m cuda`` runs them alone, as ``benchmarks/gpu_check.py`` does on a lent GPU."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import (
    GridPattern,
    cuda_syncs,
    free_port,
    one_line_error,
    psnr8,
    sub_pixel_pan,
    tiny_transformer,
)
from impasto.errors import InputError

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda", 0)


# --------------------------------------------------------------------------------------------
# precision


def test_bf16_autocast_on_cuda_keeps_the_losses_in_float32():
    from impasto.device import autocast, fast_bf16, resolve_device, resolve_precision
    from impasto.losses.perceptual import gram_matrix

    assert resolve_device("auto").type == "cuda"
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert fast_bf16(CUDA) == (want == torch.bfloat16)
    assert resolve_precision("auto", CUDA) == want
    conv = nn.Conv2d(3, 8, 3).to(CUDA)
    x = torch.rand(2, 3, 16, 16, device=CUDA)
    with autocast(CUDA, torch.bfloat16):
        y = conv(x)
        g = gram_matrix(y)
    assert y.dtype == torch.bfloat16 and g.dtype == torch.float32
    with autocast(CUDA, torch.float32):
        assert conv(x).dtype == torch.float32


# --------------------------------------------------------------------------------------------
# random streams, checkpoints and model files on the device


def _trained_on_cuda() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(CUDA)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 3, 8, 8, device=CUDA)).square().mean().backward()
    opt.step()
    return net, opt


def test_cuda_random_streams_round_trip_through_a_checkpoint(tmp_path):
    from impasto.train import load_checkpoint, restore_rng_state, save_checkpoint

    net, opt = _trained_on_cuda()
    gen = torch.Generator(device=CUDA).manual_seed(7)
    torch.rand(3, device=CUDA, generator=gen)  # move the stream on
    path = save_checkpoint(tmp_path / "c.pt", kind="test/net", config={}, step=1,
                           images_seen=2, models={"net": net}, optimizers={"net": opt},
                           generators={"g": gen})
    a = (torch.rand(4, device=CUDA), torch.rand(4, device=CUDA, generator=gen))
    ckpt = load_checkpoint(path)
    cuda_states = ckpt["rng"]["cuda"]
    assert len(cuda_states) == torch.cuda.device_count()
    assert all(s.device.type == "cpu" and s.dtype == torch.uint8 for s in cuda_states)
    assert ckpt["rng"]["generators"]["g"].numel() == gen.get_state().numel()
    restore_rng_state(ckpt["rng"], {"g": gen})
    b = (torch.rand(4, device=CUDA), torch.rand(4, device=CUDA, generator=gen))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_weights_only_loads_onto_cuda_and_back_to_the_cpu(tmp_path):
    from impasto.style.fast import FastStyle, save_fast_style
    from impasto.train import load_checkpoint, restore, save_checkpoint
    from impasto.train.modelfile import load_model

    net, opt = _trained_on_cuda()
    path = save_checkpoint(tmp_path / "c.pt", kind="test/net", config={}, step=1,
                           images_seen=2, models={"net": net}, optimizers={"net": opt})
    on_cpu = load_checkpoint(path)  # map_location defaults to the CPU
    assert all(t.device.type == "cpu" for t in on_cpu["models"]["net"].values())
    on_gpu = load_checkpoint(path, map_location="cuda")
    assert all(t.device.type == "cuda" for t in on_gpu["models"]["net"].values())
    # a CPU network takes the GPU's weights; a GPU optimiser the CPU-loaded state
    cpu_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    gpu_net, gpu_opt = _trained_on_cuda()
    restore(on_cpu, {"net": cpu_net}, rng=False)
    restore(on_cpu, {"net": gpu_net}, {"net": gpu_opt}, rng=False)
    for k, v in net.state_dict().items():
        assert torch.equal(cpu_net.state_dict()[k], v.cpu()), k
    state = next(iter(gpu_opt.state.values()))
    assert state["exp_avg"].device.type == "cuda"

    tnet = tiny_transformer().to(CUDA)
    model = save_fast_style(tnet, tmp_path / "style.pt")
    loaded = load_model(model, map_location="cuda")
    assert all(t.device.type == "cuda" for t in loaded.state_dict.values())
    pipe = FastStyle.from_file(model, device="cuda")
    assert next(pipe.net.parameters()).device.type == "cuda"
    y = pipe(torch.rand(1, 3, 24, 28), seed=0, output="tensor")
    assert y.shape == (1, 3, 24, 28) and bool(torch.isfinite(y).all())


def test_pinned_batches_for_cuda_runs():
    from impasto.data import make_loader

    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 4, 4), torch.zeros(8))
    batch = next(iter(make_loader(data, 4, pin_memory=True)))
    assert batch[0].is_pinned()
    assert not next(iter(make_loader(data, 4)))[0].is_pinned()


# --------------------------------------------------------------------------------------------
# int8 is for CPUs


def test_int8_is_refused_on_cuda_in_one_line(tmp_path, capsys):
    from impasto.infer.runner import InferenceRunner
    from impasto.style.fast import save_fast_style

    with pytest.raises(InputError, match="int8") as err:
        InferenceRunner(tiny_transformer(), device="cuda", precision="int8")
    assert "\n" not in str(err.value)
    from conftest import noise_image

    content = tmp_path / "c.png"
    noise_image(32, 24, 0).save(content)
    model = save_fast_style(tiny_transformer(), tmp_path / "m.pt")
    out = tmp_path / "out.png"
    one_line_error(capsys, ["stylize", str(content), "--model", str(model), "--device", "cuda",
                            "--precision", "int8", "-o", str(out)], "int8", out)


# --------------------------------------------------------------------------------------------
# DDP over NCCL


def test_ddp_over_nccl_in_one_process(monkeypatch, tmp_path):
    import torch.distributed as dist

    from impasto.train import (
        agree_across_ranks,
        all_reduce_grads,
        all_reduce_mean,
        capture_rng_state,
        init_distributed,
        wrap_ddp,
    )
    from impasto.train.loop import broadcast_buffers

    if not dist.is_nccl_available():
        pytest.fail("this PyTorch has no NCCL")
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(free_port())),
                       ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1, init_method="env://")
    try:
        assert dist.get_backend() == "nccl"
        info = init_distributed("cuda")  # describes the group already joined
        assert (info.rank, info.world_size, info.device) == (0, 1, CUDA)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(CUDA)
        plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(CUDA)
        plain.load_state_dict(net.state_dict())
        x = torch.rand(2, 3, 8, 8, device=CUDA)
        wrap_ddp(net, CUDA)(x).square().mean().backward()
        plain(x).square().mean().backward()
        for p, q in zip(net.parameters(), plain.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
        before = [p.grad.clone() for p in net.parameters()]
        all_reduce_grads(net, 1)
        for p, b in zip(net.parameters(), before):
            assert torch.equal(p.grad, b)
        t = torch.rand(5, device=CUDA)
        assert torch.equal(all_reduce_mean(t), t)
        assert agree_across_ranks({"a": 1.5}, True, CUDA, True) == ({"a": 1.5}, True)
        broadcast_buffers(net)
        states: list[Any] = [None]
        gen = torch.Generator(device=CUDA).manual_seed(3)
        dist.all_gather_object(states, capture_rng_state({"g": gen}))
        assert torch.equal(states[0]["generators"]["g"], gen.get_state())
        # a family trains inside the group (one process: no DDP wrappers, the group stays)
        from test_families import ADAPTERS
        from impasto.families import FAMILIES

        config = _on_cuda(ADAPTERS["gan"].config(tmp_path, "nccl"), steps=2)
        result = FAMILIES.get("gan").train(config)
        assert result.step == 2 and dist.is_initialized()
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# the families on the GPU


def _on_cuda(config: Any, **overrides: Any) -> Any:
    return dataclasses.replace(config, device="cuda", precision="auto", deterministic=False,
                               **overrides)


FAMILY_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "dcgan": ("gan", {}),
    "sngan": ("gan", dict(arch="sngan", d_steps=2)),
    "wgan-gp": ("gan", dict(loss="wgan-gp", diffaugment="color,translation,cutout")),
    "conditional-r1": ("gan", dict(conditional=True, r1_gamma=0.5)),
    "pggan": ("pggan", {}),
    "classify": ("classify", {}),
    "fast-style": ("fast-style", {}),
    "fast-style-adversarial": ("fast-style", dict(adversarial_weight=0.1, adv_crop=24)),
    "adain": ("adain", {}),
}


def _quiet_config(name: str, overrides: dict[str, Any], tmp: Path, run: str) -> Any:
    """The family's tiny config on CUDA, logging and checkpointing only at the end: nothing
    due between the first and the last step."""
    from test_families import ADAPTERS

    config = ADAPTERS[name].config(tmp, run)
    quiet: dict[str, Any] = dict(log_every=1000, ckpt_every=0)
    if name in ("gan", "classify", "fast-style", "adain"):
        quiet["steps"] = 8
    if name == "classify":
        quiet["eval_every"] = 1000
    return _on_cuda(config, **quiet, **overrides)


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_training_steps_make_the_host_wait_only_when_due(case, tmp_path):
    """No synchronising call (``.item()``, a blocking copy, ...) in a step where nothing is
    logged, checkpointed or measured: the first step (set-up work) and the last are exempt,
    and for PGGAN the steps that end a phase (they checkpoint)."""
    from test_families import ADAPTERS
    from impasto.families import FAMILIES

    name, overrides = FAMILY_CASES[case]
    fam, ad = FAMILIES.get(name), ADAPTERS[name]
    config = _quiet_config(name, overrides, tmp_path, "run")
    steps: list[tuple[int, Any]] = []  # (step, its PGGAN stage)

    def progress(p: Any) -> None:
        log.mark(p.step)
        steps.append((p.step, (getattr(p, "resolution", None), getattr(p, "phase", None))))

    with cuda_syncs() as log:
        result = fam.train(config, progress=progress, **ad.train_kwargs())
    assert not result.aborted and all(math.isfinite(v) for v in result.stats.values())
    last = result.step
    exempt = {1, last, last + 1}
    for (a, stage_a), (b, stage_b) in zip(steps[1:], steps[2:]):
        if stage_a != stage_b:  # a ends a phase (a checkpoint), b starts the next
            exempt |= {a, b}
    counts = log.per_step()
    busy = {s: n for s, n in counts.items() if s not in exempt and s > 0}
    assert last >= 4 and not busy, (busy, log.where()[:10])


@pytest.mark.parametrize("name", ["gan", "pggan", "classify", "fast-style", "adain"])
def test_a_checkpoint_crosses_between_gpu_and_cpu(name, tmp_path):
    """Written on the GPU, resumed on the CPU, and the other way round: the run goes on to
    its end with finite losses (the random streams of the other device are reseeded)."""
    from test_families import ADAPTERS
    from impasto.families import FAMILIES

    fam, ad = FAMILIES.get(name), ADAPTERS[name]
    for first, then in (("cuda", "cpu"), ("cpu", "cuda")):
        run = f"{first}-{then}"
        polls = itertools.count(1)
        config = ad.config(tmp_path, run)
        half = fam.train(dataclasses.replace(config, device=first, deterministic=False),
                         abort=lambda polls=polls: next(polls) >= ad.abort_after,
                         **ad.train_kwargs())
        assert half.aborted and half.step == ad.abort_after
        done = fam.train(dataclasses.replace(config, device=then, deterministic=False),
                         resume=tmp_path / run, **ad.train_kwargs())
        assert not done.aborted and done.step > half.step, run
        assert all(math.isfinite(v) for v in done.stats.values()), (run, done.stats)
        out = fam.export_model(tmp_path / run, tmp_path / f"{run}.pt")
        pipe = fam.pipeline.from_file(out, device=then, **ad.pipe_kwargs())
        y = ad.call(pipe, 3)
        assert bool(torch.isfinite(y).all()), run


# --------------------------------------------------------------------------------------------
# paths that only run off the CPU: the instant networks' cast copies, the camera-following
# canvases through grid_sample


def test_instant_styles_on_cuda_match_the_cpu():
    """The instant pipeline on the GPU (its shared cast network, the default precision there)
    against fp32 on the CPU, a built-in style and a painting: PSNR on the 8-bit images."""
    from impasto.style.instant import InstantStyle

    g = torch.Generator().manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=g),
                                            size=(192, 256), mode="bicubic").clamp(0, 1)
    painting = torch.rand(1, 3, 64, 64, generator=g)
    cpu = InstantStyle.from_file(device="cpu", precision="fp32")
    gpu = InstantStyle.from_file(device="cuda")
    for kwargs in ({"preset": 19}, {"style": painting}):
        a = cpu(photo, output="tensor", **kwargs)
        b = gpu(photo, output="tensor", **kwargs)
        assert b.shape == a.shape and bool(torch.isfinite(b).all())
        psnr = psnr8(a, b.float().cpu())
        assert psnr > 30, (kwargs, psnr)


def test_following_the_camera_on_cuda_cuts_flicker_as_on_the_cpu():
    """--temporal's canvases on the GPU (grid_sample, bicubic) against the CPU (OpenCV,
    Lanczos): a transform fixed to the pixel grid, under a sub-pixel pan, flickers several
    times less through either, and the two outputs are close."""
    from impasto.metrics.flicker import warping_error
    from impasto.temporal.blend import TemporalConfig, TemporalStylizer

    pattern, frames = GridPattern(), sub_pixel_pan(8)
    plain = warping_error(frames, [pattern(f) for f in frames]).stylised
    outs = {}
    for device in ("cpu", "cuda"):
        st = TemporalStylizer(pattern, TemporalConfig(strength=0.3))
        outs[device] = [o.cpu() for o in st(torch.cat(frames).to(device)).split(1)]
        assert warping_error(frames, outs[device]).stylised < plain / 3, device
    diff = torch.cat(outs["cuda"]) - torch.cat(outs["cpu"])
    assert float(diff.abs().mean()) < 0.02
