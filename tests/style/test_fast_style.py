"""Per-style feed-forward networks: training lowers the loss (with and without the adversarial
term), model files round-trip exactly, resume is bit-exact, and the CLI refuses bad input with
one line and exit status 2.

Everything runs on tiny seeded networks (a 4-8 channel VGG from conftest, a 4-8-8 channel
TransformerNet, an 8-channel discriminator) on 32 px crops of synthetic photos.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import assert_same, assert_same_checkpoints, one_line_error, tiny_vgg
from PIL import Image

import impasto
from impasto.cli import main
from impasto.data import CropFolder
from impasto.errors import InputError
from impasto.io import to_pil
from impasto.nets.patch_disc import PatchDiscriminator
from impasto.nets.transformer import TransformerNet
from impasto.style import PerceptualLoss
from impasto.style.fast import (
    MODEL_KIND,
    ContentCrops,
    FastStyle,
    FastStyleConfig,
    load_fast_style,
    random_crops,
    save_fast_style,
    train_fast_style,
)
from impasto.style.fast import training as fast_training
from impasto.train import EMA, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ("relu1_2", "relu2_2")
N_PHOTOS = 10


def photo(i: int, h: int = 40, w: int = 52) -> np.ndarray:
    """A smooth synthetic 'photo': gradients and a blob, different for each ``i``."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([np.sin(xx * (4 + i) + i), np.cos(yy * (3 + i % 4) - i), xx * yy * (1 + i % 3)],
                   -1)
    blob = np.exp(-((yy - 0.3 - 0.04 * i) ** 2 + (xx - 0.5) ** 2) * 30)[..., None]
    rgb = rgb * (1 - blob) + blob * np.array([1.0, 0.2, 0.1])
    return ((rgb - rgb.min()) / np.ptp(rgb) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("fast")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(N_PHOTOS):
        folder = photos / "sub" if i % 3 == 0 else photos
        Image.fromarray(photo(i, 40 + 2 * i, 52 - i)).save(folder / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"not an image")
    rng = np.random.default_rng(0)
    style = np.zeros((48, 64, 3), np.uint8)
    style[::4] = (30, 60, 200)  # blue stripes on yellow noise: far from the photos
    style[1::4] = rng.integers(150, 256, (12, 64, 3))
    style[2::4] = (240, 220, 40)
    style_path = root / "style.png"
    Image.fromarray(style).save(style_path)
    (root / "empty").mkdir()
    return SimpleNamespace(root=root, photos=photos, style=style_path, empty=root / "empty")


def make_config(env, name: str, **kw) -> FastStyleConfig:
    opts = dict(
        content=str(env.photos), style=str(env.style), output=str(env.root / f"{name}.pt"),
        run=str(env.root / f"{name}.run"), size=32, style_size=64, adv_crop=16,
        channels=(4, 8, 8), num_residual=1, batch_size=3, steps=20, lr=1e-2,
        content_layers=("relu2_2",), style_layers=LAYERS, content_weight=1.0, style_weight=1e-2,
        tv_weight=0.0, disc_width=8, disc_layers=2, precision="fp32", device="cpu",
        deterministic=True, seed=1, log_every=1, sample_every=0, ckpt_every=0, n_samples=2,
        tensorboard=False,
    )
    opts.update(kw)
    return FastStyleConfig(**opts)


def fresh(env, name: str) -> None:
    (env.root / f"{name}.pt").unlink(missing_ok=True)
    shutil.rmtree(env.root / f"{name}.run", ignore_errors=True)


def evaluate(net: torch.nn.Module, cfg: FastStyleConfig, vgg) -> float:
    """The perceptual loss (fp32) of ``net`` on the centre crops of every photo."""
    data = ContentCrops(cfg.content, cfg.size, hflip=False)
    x = torch.stack([data.center(i) for i in range(len(data))])
    from impasto.io import load_image, resize, to_tensor

    style = to_tensor(resize(load_image(cfg.style), longest=cfg.style_size))
    loss = PerceptualLoss(vgg, cfg.content_layers, cfg.style_layers,
                          content_weight=cfg.content_weight, style_weight=cfg.style_weight,
                          tv_weight=cfg.tv_weight)
    loss.set_styles([style])
    loss.set_content(x)
    with torch.no_grad():
        total, _ = loss(net.eval()(x))
    return float(total)


def initial_net(cfg: FastStyleConfig) -> TransformerNet:
    torch.manual_seed(cfg.seed)  # what training starts from
    return TransformerNet(cfg.net_config())


@pytest.fixture(scope="module")
def trained(env) -> SimpleNamespace:
    """One plain and one adversarial run of 20 steps, shared by several tests."""
    cfg = make_config(env, "plain")
    seen = []
    plain = train_fast_style(cfg, vgg=tiny_vgg(LAYERS), progress=seen.append)
    cfg_adv = make_config(env, "adv", adversarial_weight=0.5, adv_loss="hinge")
    adv = train_fast_style(cfg_adv, vgg=tiny_vgg(LAYERS))
    return SimpleNamespace(cfg=cfg, plain=plain, seen=seen, cfg_adv=cfg_adv, adv=adv)


# --------------------------------------------------------------------------------------------
# training


def test_training_lowers_the_loss(trained):
    cfg, res = trained.cfg, trained.plain
    vgg = tiny_vgg(LAYERS)
    before = evaluate(initial_net(cfg), cfg, vgg)
    after = evaluate(res.net, cfg, vgg)
    assert after < 0.6 * before, (before, after)
    assert res.step == 20 and not res.aborted and res.output == Path(cfg.output)
    # progress: once before the first step, then after each one, with the loss parts
    assert [p.step for p in trained.seen] == list(range(21))
    assert set(trained.seen[-1].stats) == {"loss", "content", "style", "tv"}
    assert res.D is None and res.opt_d is None


def test_training_with_adversarial_term_lowers_both_losses(trained):
    cfg, res = trained.cfg_adv, trained.adv
    vgg = tiny_vgg(LAYERS)
    before = evaluate(initial_net(cfg), cfg, vgg)
    after = evaluate(res.net, cfg, vgg)
    assert after < 0.6 * before, (before, after)
    assert set(res.stats) >= {"d_loss", "d_real", "d_fake", "g_adv"}
    # D learned to tell style crops from the untrained network's output crops:
    # its hinge loss on fixed crops is lower than that of the D it started from.
    torch.manual_seed(cfg.seed)
    TransformerNet(cfg.net_config())  # same draws as training before D is built
    D0 = PatchDiscriminator(cfg.disc_config()).eval()
    from impasto.gan.losses import d_loss_hinge
    from impasto.io import load_image, resize, to_tensor

    g = torch.Generator().manual_seed(5)
    style = to_tensor(resize(load_image(cfg.style), longest=cfg.style_size))
    data = ContentCrops(cfg.content, cfg.size, hflip=False)
    x = torch.stack([data.center(i) for i in range(len(data))])
    with torch.no_grad():
        fake = random_crops(initial_net(cfg).eval()(x), 10, 16, g)
        real = random_crops(style, 10, 16, g)
        d_before = float(d_loss_hinge(D0(real), D0(fake)))
        d_after = float(d_loss_hinge(res.D.eval()(real), res.D.eval()(fake)))
    assert d_after < d_before - 0.2, (d_before, d_after)
    # The adversarial term changed what the network learned.
    assert not torch.equal(res.net.decoder[-1][1].weight, trained.plain.net.decoder[-1][1].weight)


def test_bf16_channels_last_training(env):
    fresh(env, "bf16")
    cfg = make_config(env, "bf16", precision="bf16", channels_last=True, steps=3,
                      adversarial_weight=0.5, deterministic=False)
    res = train_fast_style(cfg, vgg=tiny_vgg(LAYERS))
    assert res.step == 3 and all(np.isfinite(v) for v in res.stats.values())
    assert not torch.equal(res.net.decoder[-1][1].weight,
                           initial_net(cfg).decoder[-1][1].weight)


class _NanVGG(torch.nn.Module):
    """A feature network whose features turn NaN: the loss guard must stop training."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_vgg(LAYERS)

    def forward(self, x):
        return {k: v * float("nan") for k, v in self.inner(x).items()}


def test_nan_loss_stops_training_without_model_file(env):
    from impasto.train import NonFiniteLossError

    fresh(env, "nan")
    cfg = make_config(env, "nan", steps=3)
    with pytest.raises(NonFiniteLossError, match="at step 1"):
        train_fast_style(cfg, vgg=_NanVGG())
    assert not Path(cfg.output).exists()


def test_run_folder_holds_logs_checkpoint_and_samples(trained):
    run = Path(trained.cfg_adv.run)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert {"content", "style", "d_loss", "g_adv", "images_per_s"} <= set(rows[-1])
    assert json.loads((run / "config.json").read_text())["adversarial_weight"] == 0.5
    ckpt = load_checkpoint(run / "ckpt-000000020.pt", kind="fast-style/transformer")
    assert set(ckpt["models"]) == {"net", "D"} and set(ckpt["optimizers"]) == {"net", "D"}
    assert list((run / "images").glob("samples-*.png"))


def test_content_crops(env):
    data = ContentCrops(env.photos, 32, seed=3)
    assert len(data) == N_PHOTOS and data.skipped == ["broken.jpg"]
    a = data[4]
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, data[4])  # same epoch, same crop
    data.set_epoch(1)
    assert not torch.equal(a, data[4])  # a new epoch, a new crop
    with pytest.raises(InputError, match="no images"):
        ContentCrops(env.empty, 32)
    with pytest.raises(InputError, match="no such folder"):
        ContentCrops(env.root / "missing", 32)


# --------------------------------------------------------------------------------------------
# model files


def test_save_load_run_identical(trained, tmp_path):
    res = trained.plain
    model = FastStyle.load(res.output, device="cpu")
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = res.net.eval()(x)
    got = model(x, precision="fp32")
    # the same weights, bit for bit; the outputs to float rounding (the trained network may be
    # NHWC, the loaded one NCHW: different kernels, bit-identical on a Zen 4, not on a Zen 3)
    for k, v in res.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # one image alone: the same up to the summation order of another batch size
    torch.testing.assert_close(model(x[0], precision="fp32"), expected[0], rtol=0, atol=1e-5)
    # PIL in, PIL out; the same numbers as the tensor path, to 8-bit rounding
    pil = Image.fromarray(photo(3, 37, 53))
    out = model(pil, precision="fp32")
    assert isinstance(out, Image.Image) and out.size == (53, 37)
    ref = res.net(torch.from_numpy(photo(3, 37, 53)).permute(2, 0, 1)[None].float() / 255)
    diff = np.asarray(out) / 255.0 - ref[0].permute(1, 2, 0).detach().numpy()
    assert np.abs(diff).max() <= 0.5 / 255 + 1e-6
    # metadata rebuilds everything; save -> load again is identical
    meta = model.metadata
    assert meta["kind"] == MODEL_KIND and meta["format_version"] == 1
    assert meta["net"] == {"channels": [4, 8, 8], "num_residual": 1, "kernel_size": 9}
    assert meta["style"]["name"] == "style.png" and meta["steps"] == 20
    assert meta["training"]["style_weight"] == trained.cfg.style_weight
    assert model.thumbnail.dtype == torch.uint8 and model.thumbnail.shape == (3, 48, 64)
    again = tmp_path / "again.pt"
    model.save(again)
    model2 = FastStyle.load(again, device="cpu")
    assert torch.equal(model2(x, precision="fp32"), got)  # loaded the same way: bit for bit
    assert model2.metadata == meta and torch.equal(model2.thumbnail, model.thumbnail)
    assert impasto.FastStyle is FastStyle


def test_save_fast_style_api_and_bf16(tmp_path):
    torch.manual_seed(0)
    net = TransformerNet(make_config(SimpleNamespace(photos="", style="", root=tmp_path), "x")
                         .net_config())
    big = np.full((200, 100, 3), 128, np.uint8)
    path = save_fast_style(net, tmp_path / "m.pt", {"style": {"name": "grey"}}, thumbnail=big)
    loaded, meta, thumb = load_fast_style(path)
    assert meta["style"] == {"name": "grey"} and thumb.shape == (3, 64, 32)
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    x = torch.rand(1, 3, 20, 24)
    model = FastStyle(loaded, meta)
    bf = model(x, precision="bf16")
    fp = model(x, precision="fp32")
    assert bf.dtype == torch.float32 and float((bf - fp).abs().max()) < 0.05
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_model_file_is_the_common_format_and_exports_from_a_run(trained, tmp_path):
    from impasto.style.fast import export_model
    from impasto.train import load_model

    res, cfg = trained.plain, trained.cfg
    m = load_model(res.output)
    assert (m.kind, m.legacy, m.format_version) == ("fast-style/transformer", None, 1)
    assert m.config == {"channels": [4, 8, 8], "num_residual": 1, "kernel_size": 9}
    assert m.extra["metadata"]["steps"] == 20 and m.extra["thumbnail"].shape == (3, 48, 64)
    # export from the run folder (its latest checkpoint): the same network and metadata
    out = export_model(cfg.run, tmp_path / "exported.safetensors")
    exported = FastStyle.from_file(out, device="cpu")
    assert_same(exported.net.state_dict(), res.net.state_dict(), "exported net")
    meta = exported.metadata
    assert meta["style"] == {"name": "style.png"} and meta["steps"] == 20
    assert meta["training"]["steps"] == 20 and meta["content"] == cfg.content
    assert torch.equal(exported.thumbnail, FastStyle.from_file(res.output).thumbnail)
    # a model file of the previous release exports too (re-written in this format)
    legacy = Path(__file__).parents[1] / "fixtures" / "legacy"
    again = export_model(legacy / "fast_style.pt", tmp_path / "legacy.pt")
    assert load_model(again).legacy is None
    assert FastStyle.from_file(again).style_name == "style.png"
    with pytest.raises(InputError, match="not a fast-style checkpoint"):
        export_model(gan_checkpoint(tmp_path / "gan.pt"), tmp_path / "x.pt")


def test_pipeline_output_and_old_names(trained):
    from impasto.style import fast

    model = FastStyle.from_file(trained.plain.output, device="cpu")
    pil = Image.fromarray(photo(2, 30, 41))
    as_tensor = model(pil, precision="fp32", output="tensor", seed=3)
    assert as_tensor.shape == (1, 3, 30, 41) and as_tensor.dtype == torch.float32
    assert np.array_equal(np.asarray(model(pil, precision="fp32")),
                          np.asarray(to_pil(as_tensor)))
    pair = model(as_tensor.expand(2, -1, -1, -1), precision="fp32", output="pil")
    assert isinstance(pair, list) and len(pair) == 2 and pair[0].size == (41, 30)
    with pytest.raises(InputError, match="output must be one of pil, tensor"):
        model(pil, output="png")
    assert fast.train_fast_style is fast.train and fast.FastStyleConfig is fast.FastStyleTrainConfig
    assert fast.FastStyleResult is fast.FastStyleRunResult and fast.ContentCrops is CropFolder
    assert FastStyle.load(trained.plain.output).source == str(trained.plain.output)


def test_loss_phases_return_device_tensors(trained):
    from impasto.style.fast import FastStyleLoss

    cfg = trained.cfg_adv
    perceptual = PerceptualLoss(tiny_vgg(LAYERS), cfg.content_layers, cfg.style_layers)
    style = torch.rand(1, 3, 40, 40)
    perceptual.set_styles([style])
    D = PatchDiscriminator(cfg.disc_config())
    loss = FastStyleLoss(perceptual, D, style=style, adversarial_weight=0.5, crop=16)
    x = torch.rand(2, 3, 32, 32)
    fake = initial_net(cfg)(x)
    stats = loss.d_step(fake) | loss.g_step(x, fake)
    assert list(stats) == ["d_loss", "d_real", "d_fake", "loss", "content", "style", "tv", "g_adv"]
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad
               for v in stats.values())
    assert float(stats["loss"]) > float(stats["content"]) > 0  # the total holds the parts


def gan_checkpoint(path: Path) -> Path:
    """A GAN training checkpoint (a generator average and its network config)."""
    return save_checkpoint(path, kind="gan/dcgan", config={}, step=1, images_seen=1,
                           models={"G_ema": EMA(torch.nn.Linear(2, 2))}, optimizers={},
                           extra={"net": {"arch": "dcgan"}})


def test_load_refuses_other_files(tmp_path, trained):
    gan = gan_checkpoint(tmp_path / "gan.pt")
    with pytest.raises(InputError, match="'gan/dcgan' file, not a fast-style model"):
        FastStyle.load(gan)
    ckpt = Path(trained.cfg.run) / "ckpt-000000020.pt"
    with pytest.raises(InputError, match="training checkpoint"):
        FastStyle.load(ckpt)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not an impasto model file"):
        FastStyle.load(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="not found"):
        FastStyle.load(tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------
# resume


def test_resume_is_exact(env):
    """4 steps, then a resume for 4 more (mid-epoch: 10 photos make 3 batches of 3), equal
    8 steps straight: both networks, both optimisers, RNG streams, data position, model file."""
    common = dict(adversarial_weight=0.3, steps=8)
    for name in ("straight", "split"):
        fresh(env, name)
    straight = train_fast_style(make_config(env, "straight", **common), vgg=tiny_vgg(LAYERS))
    first = train_fast_style(make_config(env, "split", **common), vgg=tiny_vgg(LAYERS),
                             abort=lambda: True)  # stops (with a checkpoint) after step 1
    assert first.aborted and first.step == 1
    # an aborted run still leaves a model file, of the weights it stopped with
    assert first.output == Path(make_config(env, "split").output)
    aborted_net, aborted_meta, _ = load_fast_style(first.output)
    assert aborted_meta["steps"] == 1 and aborted_meta["aborted"] is True
    assert_same(first.net.state_dict(), aborted_net.state_dict(), "net")
    cfg4 = make_config(env, "split", adversarial_weight=0.3, steps=4)
    mid = train_fast_style(cfg4, vgg=tiny_vgg(LAYERS), resume=first.run)
    assert mid.step == 4
    rest = train_fast_style(make_config(env, "split", **common), vgg=tiny_vgg(LAYERS),
                            resume=mid.run)
    assert rest.step == 8
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(rest.checkpoint)
    assert a["extra"]["epoch"] == b["extra"]["epoch"] == 2  # 8 batches of 3 per 3-batch epoch
    assert a["extra"]["pos"] == b["extra"]["pos"] == 6
    assert_same_checkpoints(a, b, ("models", "optimizers", "rng", "extra", "step"))
    net_a, _, _ = load_fast_style(straight.output)
    net_b, _, _ = load_fast_style(rest.output)
    assert_same(net_a.state_dict(), net_b.state_dict(), "model file")


def test_resume_refusals(env, trained):
    # a run folder with checkpoints is not overwritten without --resume
    with pytest.raises(InputError, match="already holds checkpoints"):
        train_fast_style(trained.cfg, vgg=tiny_vgg(LAYERS))
    # another network, or without the discriminator it was trained with
    with pytest.raises(InputError, match="network"):
        train_fast_style(make_config(env, "adv", adversarial_weight=0.5, num_residual=2),
                         vgg=tiny_vgg(LAYERS), resume=trained.cfg_adv.run)
    with pytest.raises(InputError, match="adversarial"):
        train_fast_style(make_config(env, "adv"), vgg=tiny_vgg(LAYERS),
                         resume=trained.cfg_adv.run)


def test_config_checks(env):
    for bad, words in (
        (dict(steps=0), "steps"),
        (dict(adv_loss="wgan"), "adversarial loss"),
        (dict(style_layers=("relu9_1",)), "unknown style layer"),
        (dict(content_weight=-1.0), "content weight"),
        (dict(adv_crop=64, adversarial_weight=0.1), "larger than the training size"),
        (dict(channels=(4, 8)), "three widths"),
        (dict(precision="fp16"), "precision"),
        (dict(lr=0.0), "lr"),
    ):
        with pytest.raises(InputError, match=words):
            make_config(env, "bad", **bad).validate()
    # without the adversarial term its crop is not checked: any training size will do
    make_config(env, "small", size=32, adv_crop=64, adversarial_weight=0.0).validate()


# --------------------------------------------------------------------------------------------
# command line


@pytest.fixture()
def tiny_cli_vgg(monkeypatch):
    """The CLI builds VGG19Features itself: give it the tiny one."""
    monkeypatch.setattr(fast_training, "VGG19Features",
                        lambda layers, **kw: tiny_vgg(tuple(layers)))


CLI_TINY = ["--size", "32", "--style-size", "64", "--channels", "4,8,8", "--num-residual", "1",
            "--batch-size", "2", "--content-layers", "relu2_2", "--style-layers",
            "relu1_2,relu2_2", "--precision", "fp32", "--device", "cpu", "--no-tensorboard",
            "--sample-every", "0", "-q"]


def test_cli_train_and_info(env, tiny_cli_vgg, capsys, tmp_path):
    out = tmp_path / "cli.pt"
    rc = main(["fast-style", "train", str(env.photos), "-s", str(env.style), "-o", str(out),
               "--steps", "3", "--adversarial-weight", "0.1", "--adv-loss", "hinge",
               "--adv-crop", "16", "--disc-width", "8", "--disc-layers", "2", *CLI_TINY])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and (tmp_path / "cli.run" / "ckpt-000000003.pt").is_file()
    capsys.readouterr()
    assert main(["fast-style", "info", str(out), "--thumbnail", str(tmp_path / "t.png")]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["training"]["adversarial_weight"] == 0.1 and meta["training"]["adv_loss"] == "hinge"
    assert Image.open(tmp_path / "t.png").size == (64, 48)
    # resume to 5 steps, keeping the saved settings
    rc = main(["fast-style", "train", "--resume", str(tmp_path / "cli.run"), "--steps", "5", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert load_fast_style(out)[1]["steps"] == 5


def test_cli_refuses_model_of_another_kind(env, capsys, tmp_path, trained):
    gan = gan_checkpoint(tmp_path / "gan.pt")
    one_line_error(capsys, ["fast-style", "info", str(gan)],
                   "is a 'gan/dcgan' file, not a fast-style model")
    one_line_error(capsys, ["fast-style", "info", str(Path(trained.cfg.run) / "ckpt-000000020.pt")],
                   "training checkpoint")
    # --resume with a model file (or another kind) instead of a training checkpoint
    one_line_error(capsys, ["fast-style", "train", "--resume", str(trained.plain.output)],
                   "is a 'fast-style/transformer' model file, not a training checkpoint")
    one_line_error(capsys, ["fast-style", "train", "--resume", str(gan)], "'gan/dcgan'")


@pytest.mark.parametrize("extra, expect", [
    (["--steps", "0"], "--steps: must be at least 1"),
    (["--adv-loss", "wgan"], "--adv-loss: invalid choice"),
    (["--style-layers", "relu9_9"], "unknown VGG19 layer(s) relu9_9"),
    (["--content-weight", "-1"], "must not be negative"),
    (["--adversarial-weight", "nan"], "not a finite number"),
    (["--channels", "4,8"], "three positive widths"),
    (["--adversarial-weight", "1", "--adv-crop", "64"], "larger than the training size"),
    (["--adversarial-weight", "1", "--adv-crop", "16"], "too small for a discriminator"),
    (["--adversarial-weight", "1", "--disc-layers", "100000000000"],
     "disc layers must be a whole number from 1 to 10"),
    (["--adversarial-weight", "1", "--style-size", "16", "--size", "16", "--adv-crop", "16",
      "--disc-layers", "2"],
     "does not fit the style image"),  # 16 px crops of a 16x12 style image
])
def test_cli_bad_options(env, capsys, tmp_path, extra, expect, tiny_cli_vgg):
    out = tmp_path / "m.pt"
    argv = ["fast-style", "train", str(env.photos), "-s", str(env.style), "-o", str(out),
            "--steps", "1", *CLI_TINY, *extra]
    one_line_error(capsys, argv, expect)
    assert not out.exists() and not (tmp_path / "m.run").exists()


def test_cli_bad_files(env, capsys, tmp_path):
    out = tmp_path / "m.pt"
    base = ["fast-style", "train"]
    one_line_error(capsys, [*base, str(env.photos), "-o", str(out)], "give --style")
    one_line_error(capsys, [*base, str(env.empty), "-s", str(env.style), "-o", str(out)],
                   "no images in this folder")
    one_line_error(capsys, [*base, str(tmp_path / "nope"), "-s", str(env.style), "-o", str(out)],
                   "no such folder")
    one_line_error(capsys, [*base, str(env.photos), "-s", str(tmp_path / "nope.png"), "-o",
                            str(out)], "nope.png")
    one_line_error(capsys, [*base, str(env.photos), "-s", str(env.style), "-o", str(tmp_path)],
                   "is a folder")
    assert list(tmp_path.iterdir()) == []
