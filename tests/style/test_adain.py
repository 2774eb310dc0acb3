"""The AdaIN pipeline and decoder training (impasto.style.adain), on a tiny random VGG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_vgg
from impasto.errors import InputError
from impasto.nets.adain import ENCODER_LAYERS, AdaINDecoder, AdaINDecoderConfig, _pad_to
from impasto.style.adain import (
    DECODER_KIND,
    AdaIN,
    AdaINTrainConfig,
    export_model,
    load_decoder,
    save_decoder,
    train,
)
from impasto.style.color import rgb_to_yiq
from impasto.train import load_checkpoint, read_stats, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = (4, 8, 8, 8)


def encoder():
    return tiny_vgg(layers=ENCODER_LAYERS, seed=0)


def make_decoder(seed: int = 0) -> AdaINDecoder:
    """A random decoder whose output follows its input (a default-initialised one is almost
    constant): He-initialised, the last layer scaled to outputs of mean 0.5, std 0.2."""
    torch.manual_seed(seed)
    dec = AdaINDecoder(AdaINDecoderConfig(TINY))
    convs = [m for m in dec.modules() if isinstance(m, torch.nn.Conv2d)]
    for c in convs:
        torch.nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
        torch.nn.init.zeros_(c.bias)
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(99))
        y = dec(encoder()(x)["relu4_1"])
        convs[-1].weight.mul_(0.2 / y.std())
        y = dec(encoder()(x)["relu4_1"])
        convs[-1].bias.add_(0.5 - y.mean((0, 2, 3)))
    return dec.eval()


def pipeline(seed: int = 0, precision: str = "fp32") -> AdaIN:
    return AdaIN(make_decoder(seed), encoder(), device="cpu", precision=precision)


def images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(1, 3, 44, 60, generator=g)
    style_a = torch.rand(1, 3, 40, 40, generator=g) * torch.tensor([1.0, 0.2, 0.4]).view(1, 3, 1, 1)
    style_b = torch.rand(1, 3, 48, 32, generator=g) * 0.3 + 0.7
    return content, style_a, style_b


def reconstruction(ada: AdaIN, x: torch.Tensor) -> torch.Tensor:
    """decoder(encoder(x)), cropped to x's size and clamped: the decoder's reconstruction."""
    h, w = x.shape[-2:]
    with torch.no_grad():
        xp, _, _ = _pad_to(x, 8)
        return ada.decoder(ada.encoder(xp)["relu4_1"])[..., :h, :w].clamp(0, 1)


# --------------------------------------------------------------------------------------------
# inference


def test_alpha_zero_reproduces_the_decoders_reconstruction_of_the_content():
    ada = pipeline()
    content, style, _ = images()
    out = ada(content, style, alpha=0.0)
    # 1e-5: the pipeline's runner works in NHWC, the reference in NCHW (4e-6 apart in fp32
    # on an AVX2 CPU)
    torch.testing.assert_close(out, reconstruction(ada, content), atol=1e-5, rtol=0)
    full = ada(content, style, alpha=1.0)
    assert (full - out).abs().mean() > 1e-3  # alpha matters


def test_alpha_zero_in_bf16_stays_close_to_the_reconstruction():
    ada = pipeline(precision="bf16")
    content, style, _ = images()
    out = ada(content, style, alpha=0.0)
    diff = (out - reconstruction(ada, content)).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.1  # bf16 keeps 8 significant bits


def test_alpha_moves_the_output_between_content_and_style():
    ada = pipeline()
    content, style, _ = images()
    outs = [ada(content, style, alpha=a) for a in (0.0, 0.5, 1.0)]
    full = outs[2]
    dists = [float((o - full).abs().mean()) for o in outs]
    assert dists[0] > dists[1] > dists[2] == 0.0


def test_weights_one_zero_equal_the_first_style_alone_and_masks_too():
    ada = pipeline()
    content, a, b = images()
    alone = ada(content, a)
    torch.testing.assert_close(ada(content, [a, b], weights=[1, 0]), alone, atol=1e-6, rtol=0)
    masks = torch.stack([torch.ones(44, 60), torch.zeros(44, 60)])
    torch.testing.assert_close(ada(content, [a, b], masks=masks), alone, atol=1e-5, rtol=0)
    mixed = ada(content, [a, b], weights=[1, 1])
    assert (mixed - alone).abs().mean() > 1e-3


def test_masks_give_regions_their_own_style_in_the_feature_target():
    ada = pipeline()
    content, a, b = images()
    masks = torch.zeros(2, 44, 60)
    masks[0, :, :32] = 1
    masks[1, :, 32:] = 1
    st = ada.stylizer([a, b], masks=masks)
    with torch.no_grad():
        xp, _, _ = _pad_to(content, 8)
        f = st.features(xp).float()
        m = st.region_masks(tuple(f.shape[-2:]), (44, 60))
        from impasto.nets.adain import region_sums

        t = st.target(f, m, region_sums(f, m))
    # feature columns 0-3 are style a's region, 4-7 style b's (60 px -> 64 -> 8 cells)
    for k, cols in enumerate((slice(0, 4), slice(4, 8))):
        region = t[0, :, :, cols].reshape(8, -1)
        torch.testing.assert_close(region.mean(1), st.style_mean[k], atol=1e-3, rtol=0)
        # a channel that is constant (dead ReLU) in the content region cannot take a spread
        live = f[0, :, :, cols].reshape(8, -1).std(1) > 1e-3
        assert live.sum() >= 4
        got = region.std(1, unbiased=False)[live]
        torch.testing.assert_close(got, st.style_std[k][live], atol=1e-2, rtol=1e-3)
    assert not torch.allclose(st.style_mean[0], st.style_mean[1], atol=0.1)


def test_masked_output_regions_differ_by_style():
    ada = pipeline()
    content, a, b = images()
    masks = torch.zeros(2, 44, 60)
    masks[0, :, :30] = 1
    masks[1, :, 30:] = 1
    out = ada(content, [a, b], masks=masks)
    only_a, only_b = ada(content, a), ada(content, b)
    # far from the boundary, each side is closer to its own style's result than to the other's
    left, right = (..., slice(None), slice(0, 12)), (..., slice(None), slice(48, 60))
    assert (out[left] - only_a[left]).abs().mean() < (out[left] - only_b[left]).abs().mean()
    assert (out[right] - only_b[right]).abs().mean() < (out[right] - only_a[right]).abs().mean()


def test_luminance_keeps_the_content_chroma():
    ada = pipeline()
    content, style, _ = images()
    out = ada(content, style, preserve_color="luminance")
    iq_out, iq_in = rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:]
    plain = ada(content, style)
    # clamping to [0, 1] may shift the chroma a little at saturated pixels
    assert (iq_out - iq_in).abs().mean() < 0.01
    assert (rgb_to_yiq(plain)[:, 1:] - iq_in).abs().mean() > 0.02


def test_histogram_mode_runs_and_differs():
    ada = pipeline()
    content, style, _ = images()
    out = ada(content, style, preserve_color="histogram")
    assert out.shape == content.shape
    assert (out - ada(content, style)).abs().mean() > 1e-4


def test_pil_and_paths_in_pil_out(tmp_path):
    ada = pipeline()
    content, style, _ = images()
    from impasto.io import to_pil

    to_pil(style).save(tmp_path / "style.png")
    out = ada(to_pil(content), tmp_path / "style.png", size=30)
    assert isinstance(out, Image.Image) and out.size == (30, 22)
    # the style read from its (lossless) file gives the very pixels of the in-memory style
    same = ada(to_pil(content), to_pil(style), size=30)
    assert np.array_equal(np.asarray(out), np.asarray(same))
    assert np.asarray(out).std() > 0  # an image, not a constant


def test_from_file_and_the_output_and_seed_arguments(tmp_path):
    ada = pipeline(seed=3)
    path = save_decoder(tmp_path / "dec.pt", ada.decoder,
                        encoder={"weights": None, "widths": list(TINY), "layer": "relu4_1"})
    assert AdaIN.load == AdaIN.from_file
    loaded = AdaIN.from_file(path, "cpu", encoder=encoder(), precision="fp32")
    assert loaded.device == torch.device("cpu")
    content, style, _ = images()
    want = ada(content, style)
    assert torch.equal(loaded(content, style, seed=5), want)  # the seed changes nothing
    pil = loaded(content, style, output="pil")
    assert isinstance(pil, Image.Image) and pil.size == (60, 44)
    from impasto.io import to_pil, to_tensor

    assert np.array_equal(np.asarray(pil), np.asarray(to_pil(want)))
    tensor = loaded(to_pil(content), style, output="tensor")
    assert tensor.shape == (1, 3, 44, 60)
    torch.testing.assert_close(tensor, ada(to_tensor(to_pil(content)), style), atol=0, rtol=0)
    with pytest.raises(InputError, match="output must be one of pil, tensor"):
        loaded(content, style, output="png")


@pytest.mark.parametrize("kw, word", [
    (dict(weights=[1.0]), "blend weights"),
    (dict(masks=torch.ones(1, 8, 8)), "masks"),
    (dict(weights=[1, 1], masks=torch.ones(2, 8, 8)), "not both"),
    (dict(alpha=-0.1), "alpha"),
    (dict(preserve_color="sepia"), "preserve color"),
])
def test_bad_arguments(kw, word):
    ada = pipeline()
    content, a, b = images()
    with pytest.raises(InputError, match=word):
        ada(content, [a, b], **kw)


# --------------------------------------------------------------------------------------------
# decoder files


def test_save_load_run_identical(tmp_path):
    ada = pipeline(seed=3)
    path = save_decoder(tmp_path / "dec.pt", ada.decoder,
                        encoder={"weights": None, "widths": list(TINY), "layer": "relu4_1"},
                        styles=["a.png"])
    from impasto.train import load_model

    model = load_model(path)
    assert model.kind == DECODER_KIND == "adain/decoder" and model.format_version == 1
    assert model.config["decoder"]["widths"] == list(TINY)
    loaded = AdaIN.load(path, encoder=encoder(), device="cpu", precision="fp32")
    content, a, b = images()
    assert torch.equal(loaded(content, [a, b], weights=[2, 1]),
                       ada(content, [a, b], weights=[2, 1]))
    assert loaded.metadata["styles"] == ["a.png"]


def test_a_test_encoder_decoder_needs_its_encoder(tmp_path):
    ada = pipeline()
    path = save_decoder(tmp_path / "dec.pt", ada.decoder,
                        encoder={"weights": None, "widths": list(TINY), "layer": "relu4_1"})
    with pytest.raises(InputError, match="random test encoder"):
        AdaIN.load(path)


def test_files_of_another_kind_are_refused(tmp_path):
    from impasto.nets.transformer import TransformerConfig, TransformerNet
    from impasto.style.fast import save_fast_style

    fast = save_fast_style(TransformerNet(TransformerConfig(channels=(4, 4, 4), num_residual=0)),
                           tmp_path / "fast.pt", {})
    with pytest.raises(InputError, match="fast-style") as e:
        load_decoder(fast)
    assert "not an AdaIN decoder" in str(e.value)
    gan = save_checkpoint(tmp_path / "gan.pt", kind="gan/dcgan", config={}, step=0,
                          images_seen=0, models={}, optimizers={})
    with pytest.raises(InputError, match="gan/dcgan"):
        load_decoder(gan)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.pt"):
        load_decoder(tmp_path / "junk.pt")


def test_decoder_for_other_encoder_widths_is_refused():
    dec = AdaINDecoder(AdaINDecoderConfig((4, 8, 8, 16)))
    with pytest.raises(InputError, match="widths"):
        AdaIN(dec, encoder(), device="cpu")


# --------------------------------------------------------------------------------------------
# training


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    c, s = tmp_path / "content", tmp_path / "styles"
    c.mkdir()
    s.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(c / f"{i}.png")
    for i in range(2):
        arr = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) * np.array([1.0, 0.3, 0.5])
        Image.fromarray(arr.astype(np.uint8)).save(s / f"s{i}.jpg")
    (s / "broken.png").write_bytes(b"not an image")  # left out with a warning
    return c, s


def _config(tmp_path: Path, run: str, steps: int, **kw) -> AdaINTrainConfig:
    c, s = _folders(tmp_path) if not (tmp_path / "content").exists() else (
        tmp_path / "content", tmp_path / "styles")
    settings = dict(content=str(c), styles=str(s), run=str(tmp_path / run), steps=steps,
                    batch_size=2, image_size=32, load_size=40, lr=1e-3, lr_decay=1e-3,
                    device="cpu", precision="fp32", log_every=5, ckpt_every=5, tensorboard=False)
    return AdaINTrainConfig(**{**settings, **kw})


def test_a_few_training_steps_lower_the_loss_and_write_a_decoder(tmp_path):
    config = _config(tmp_path, "run", 40)
    seen = []
    result = train(config, encoder=encoder(), progress=seen.append)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert result.output == tmp_path / "run" / "decoder.pt" and result.output.is_file()
    assert [p.step for p in seen] == list(range(41))
    stats = read_stats(tmp_path / "run" / "stats.jsonl")
    assert [r["step"] for r in stats] == [5, 10, 15, 20, 25, 30, 35, 40]
    ada = AdaIN.load(result.output, encoder=encoder(), device="cpu", precision="fp32")
    for a, b in zip(ada.decoder.state_dict().values(), result.decoder.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_continues_exactly(tmp_path):
    straight = train(_config(tmp_path, "straight", 6), encoder=encoder())
    stop = {"n": 0}

    def abort() -> bool:
        stop["n"] += 1
        return stop["n"] == 3

    first = train(_config(tmp_path, "split", 6), encoder=encoder(), abort=abort)
    assert first.aborted and first.step == 3 and first.output is None
    second = train(_config(tmp_path, "split", 6), encoder=encoder(), resume=tmp_path / "split")
    assert second.step == 6
    for a, b in zip(second.decoder.state_dict().values(), straight.decoder.state_dict().values()):
        assert torch.equal(a, b)
    # the losses of every step, read once at the end, are those of the straight run
    assert len(straight.history) == 6 and first.history + second.history == straight.history
    assert straight.history[-1] == straight.stats
    ckpt = load_checkpoint(second.checkpoint, kind="adain/decoder")
    assert ckpt["step"] == 6 and ckpt["extra"]["styles"] == ["s0.jpg", "s1.jpg"]
    with pytest.raises(InputError, match="already holds checkpoints"):
        train(_config(tmp_path, "split", 8), encoder=encoder())


def test_export_model_writes_the_decoder_file_of_an_aborted_run(tmp_path):
    result = train(_config(tmp_path, "run", 6), encoder=encoder(), abort=lambda: True)
    assert result.aborted and result.step == 1 and result.output is None
    with pytest.raises(InputError, match="training checkpoint.*export_model"):
        load_decoder(result.checkpoint)
    path = export_model(tmp_path / "run", tmp_path / "dec.safetensors")
    decoder, meta = load_decoder(path)
    for a, b in zip(decoder.state_dict().values(), result.decoder.state_dict().values()):
        assert torch.equal(a, b)
    assert (meta["step"], meta["images_seen"], meta["styles"]) == (1, 2, ["s0.jpg", "s1.jpg"])
    assert meta["encoder"] == {"weights": None, "widths": list(TINY), "layer": "relu4_1"}
    assert meta["training"]["batch_size"] == 2
    # a decoder file exports to itself; a folder as the output and other kinds are refused
    again = export_model(path, tmp_path / "again.pt")
    assert load_decoder(again)[1]["step"] == 1
    with pytest.raises(InputError, match="is a folder"):
        export_model(tmp_path / "run", tmp_path)
    gan = save_checkpoint(tmp_path / "gan.pt", kind="gan/dcgan", config={}, step=0,
                          images_seen=0, models={}, optimizers={})
    with pytest.raises(InputError, match="not an AdaIN decoder file"):
        export_model(gan, tmp_path / "x.pt")


@pytest.mark.parametrize("kw, word", [
    (dict(image_size=16), "image size"),
    (dict(load_size=20), "load size"),
    (dict(style_layers=("relu5_1",)), "relu4_1"),
    (dict(lr=0.0), "lr"),
])
def test_bad_training_settings(tmp_path, kw, word):
    with pytest.raises(InputError, match=word):
        train(_config(tmp_path, "bad", 2, **kw), encoder=encoder())
    assert not (tmp_path / "bad").exists()


def test_empty_or_unreadable_style_folder(tmp_path):
    config = _config(tmp_path, "run", 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    config.styles = str(empty)
    with pytest.raises(InputError, match=r"empty: no images in this folder \(the style images\)"):
        train(config, encoder=encoder())
    (empty / "x.png").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"no readable images.*\(the style images\)"):
        train(config, encoder=encoder())
    assert not (tmp_path / "run").exists()


def test_cli_adain_train_writes_a_decoder_the_stylize_command_uses(tmp_path, capsys):
    """End to end with the real VGG19 (tiny crops, two steps)."""
    from impasto.cli import main

    c, s = _folders(tmp_path)
    out = tmp_path / "dec.pt"
    rc = main(["adain", "train", "--content", str(c), "--styles", str(s), "-o", str(out),
               "--steps", "2", "--batch-size", "1", "--image-size", "32", "--load-size", "40",
               "--device", "cpu", "--no-tensorboard", "-q"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "dec.run" / "config.json").is_file()
    decoder, meta = load_decoder(out)
    assert meta["encoder"] == {"weights": "caffe", "widths": [64, 128, 256, 512],
                               "layer": "relu4_1"}
    assert meta["step"] == 2 and meta["training"]["steps"] == 2
    rc = main(["stylize", str(c / "0.png"), "--method", "adain", "--decoder", str(out),
               "-s", str(s / "s0.jpg"), "-o", str(tmp_path / "o.png"), "-q", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (52, 40)


def test_cli_adain_train_bad_folder(tmp_path, capsys):
    from impasto.cli import main

    rc = main(["adain", "train", "--content", str(tmp_path / "none"), "--styles",
               str(tmp_path), "-o", str(tmp_path / "d.pt"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "none" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "d.pt").exists() and not (tmp_path / "d.run").exists()


def test_cli_adain_train_ctrl_c_stops_with_a_checkpoint(tmp_path, capsys, monkeypatch):
    """The first Ctrl-C stops after the current step: a checkpoint, exit status 130, and a
    --resume that finishes the run."""
    import os
    import signal

    from impasto.cli import main
    from impasto.cli import adain as adain_commands

    calls = []
    real = adain_commands.LossBar.__call__

    def interrupt_once(self, info):
        real(self, info)
        if not calls:
            calls.append(info.step)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(adain_commands.LossBar, "__call__", interrupt_once)
    c, s = _folders(tmp_path)
    out = tmp_path / "dec.pt"
    argv = ["adain", "train", "--content", str(c), "--styles", str(s), "-o", str(out),
            "--steps", "4", "--batch-size", "1", "--image-size", "32", "--load-size", "40",
            "--device", "cpu", "--no-tensorboard", "-q"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 130, err
    assert "stopping after this step" in err and "--resume" in err
    assert not out.exists()
    assert list((tmp_path / "dec.run").glob("ckpt-*.pt"))
    rc = main(argv + ["--resume", str(tmp_path / "dec.run")])
    assert rc == 0, capsys.readouterr().err
    assert load_decoder(out)[1]["step"] == 4
