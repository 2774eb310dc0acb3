"""Model files (impasto.train.modelfile): exact round trips in .pt and safetensors, weights_only
loading, one-line refusals, and the files of the previous release read through load_model
(the fixtures of tests/fixtures/legacy, checked against the numbers the old loaders gave)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from conftest import assert_same
from impasto.errors import InputError
from impasto.train import save_checkpoint
from impasto.train.modelfile import FORMAT, ModelFile, load_model, model_kind, save_model
from test_legacy_files import EXPECTED, LEGACY, assert_matches, content_input, encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def content(**kw) -> dict:
    state = net().state_dict()
    state["half"] = torch.linspace(-1, 1, 7, dtype=torch.bfloat16)
    out = dict(kind="test/tiny-net_1.0", state_dict=state,
               config={"widths": [4, 2], "name": "é", "nested": {"a": None}},
               extra={"thumbnail": torch.arange(12, dtype=torch.uint8).reshape(3, 2, 2),
                      "classes": ["cat", "dog"], "info": {"steps": 3, "lr": 1e-3, "ok": True,
                                                          "per_class": [torch.ones(2), 0.5]}})
    out.update(kw)
    return out


def assert_error(path, expect: str, **kw) -> str:
    with pytest.raises(InputError) as e:
        load_model(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and expect in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_is_exact(tmp_path, suffix):
    c = content()
    path = save_model(tmp_path / f"m{suffix}", **c)
    assert path == tmp_path / f"m{suffix}" and [p.name for p in tmp_path.iterdir()] == [path.name]
    m = load_model(path)
    assert isinstance(m, ModelFile)
    assert (m.kind, m.family, m.arch, m.format_version, m.path, m.legacy) == (
        "test/tiny-net_1.0", "test", "tiny-net_1.0", 1, path, None)
    assert m.config == c["config"]
    assert_same(m.state_dict, dict(c["state_dict"]), "state_dict")
    assert m.state_dict["half"].dtype == torch.bfloat16
    want = dict(c["extra"])
    want["info"] = dict(want["info"], per_class=list(want["info"]["per_class"]))
    assert_same(m.extra, want, "extra")
    # the weights rebuild the network exactly
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    fresh.load_state_dict({k: v for k, v in m.state_dict.items() if k != "half"})
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(fresh.eval()(x), net().eval()(x))


def test_pt_loads_with_weights_only_and_safetensors_is_told_by_its_bytes(tmp_path):
    c = content(config={"widths": (4, 2)})  # a tuple is stored as JSON gives it back
    raw = torch.load(save_model(tmp_path / "m.pt", **c), weights_only=True)
    assert set(raw) == {"format", "format_version", "kind", "config", "state_dict", "extra"}
    assert (raw["format"], raw["format_version"], raw["config"]) == (FORMAT, 1, {"widths": [4, 2]})
    from safetensors import safe_open

    save_model(tmp_path / "m.safetensors", **c)
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = f.metadata()
        assert {"state_dict/0.weight", "extra/0"} <= set(f.keys())
    assert (meta["format"], meta["format_version"], meta["kind"]) == (FORMAT, "1", c["kind"])
    assert json.loads(meta["config"]) == {"widths": [4, 2]}
    shutil.copy(tmp_path / "m.safetensors", tmp_path / "renamed.pt")  # the name does not matter
    assert_same(load_model(tmp_path / "renamed.pt").state_dict, raw["state_dict"])
    # a converted or loaded model saves again in this format
    again = load_model(tmp_path / "m.pt").save(tmp_path / "again.pt")
    assert_same(torch.load(again, weights_only=True), raw)


def test_save_refuses_what_a_model_file_cannot_hold(tmp_path):
    import numpy as np

    for bad in ("Gan/dcgan", "gan", "gan/", "/dcgan", "gan/dc gan", 3):
        with pytest.raises(ValueError, match="family"):
            save_model(tmp_path / "m.pt", **content(kind=bad))
    with pytest.raises(TypeError, match="JSON"):
        save_model(tmp_path / "m.pt", **content(config={"f": object()}))
    with pytest.raises(TypeError, match="numpy"):
        save_model(tmp_path / "m.pt", **content(extra={"a": np.ones(2)}))
    with pytest.raises(TypeError, match="not a str -> tensor"):
        save_model(tmp_path / "m.pt", **content(state_dict={"w": [1.0]}))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "m.pt").write_bytes(b"old")
    with pytest.raises(TypeError):  # an existing file is left as it was
        save_model(tmp_path / "m.pt", **content(config={"f": object()}))
    assert (tmp_path / "m.pt").read_bytes() == b"old"


# --------------------------------------------------------------------------------------------
# refusals


def test_every_bad_file_is_one_line_naming_it(tmp_path):
    assert_error(tmp_path / "none.pt", "model file not found")
    assert_error(tmp_path, "is a folder")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert_error(tmp_path / "empty.pt", "empty file")
    (tmp_path / "text.pt").write_text("hello, not a model at all")
    assert_error(tmp_path / "text.pt", "not an impasto model file")
    good = save_model(tmp_path / "good.pt", **content())
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert_error(tmp_path / "cut.pt", "truncated or corrupt")
    st = save_model(tmp_path / "good.safetensors", **content()).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(st[: len(st) - 40])
    assert_error(tmp_path / "cut.safetensors", "truncated or corrupt")
    torch.save(net().state_dict(), tmp_path / "bare.pt")
    assert_error(tmp_path / "bare.pt", "bare state_dict")
    torch.save({"kind": "gan/dcgan", "weights": net()}, tmp_path / "pickled.pt")
    assert_error(tmp_path / "pickled.pt", "pickled Python objects")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    assert_error(tmp_path / "foreign.safetensors", "without the 'impasto-model' tag")


def test_a_newer_format_and_another_kind_are_refused(tmp_path):
    raw = torch.load(save_model(tmp_path / "m.pt", **content()), weights_only=True)
    torch.save({**raw, "format_version": 2}, tmp_path / "newer.pt")
    assert_error(tmp_path / "newer.pt", "model file format 2 is newer than this impasto reads")
    from safetensors.torch import save_file

    save_file({"state_dict/w": torch.ones(2)}, str(tmp_path / "newer.safetensors"),
              metadata={"format": FORMAT, "format_version": "7", "kind": "a/b", "config": "{}"})
    assert_error(tmp_path / "newer.safetensors", "format 7 is newer")
    path = tmp_path / "m.pt"
    assert load_model(path, kind="test/tiny-net_1.0").kind == load_model(path, kind="test").kind
    msg = assert_error(path, "not 'gan/dcgan'", kind="gan/dcgan")
    assert "is a 'test/tiny-net_1.0' model" in msg
    assert_error(path, "not 'tes'", kind="tes")  # a family matches whole, not as a prefix
    # the release before: a newer checkpoint layout, fast-style metadata, AdaIN decoder format
    old = torch.load(LEGACY / "fast_style.pt", weights_only=True)
    torch.save({**old, "format_version": 5}, tmp_path / "ckpt5.pt")
    assert_error(tmp_path / "ckpt5.pt", "checkpoint format 5 is newer")
    meta = json.loads(old["extra"]["metadata"])
    newer = json.dumps({**meta, "format_version": 2})
    torch.save({**old, "extra": {**old["extra"], "metadata": newer}}, tmp_path / "fast2.pt")
    assert_error(tmp_path / "fast2.pt", "fast-style model format 2 is newer")
    dec = torch.load(LEGACY / "adain_decoder.pt", weights_only=True)
    torch.save({**dec, "extra": {**dec["extra"], "decoder_format": 2}}, tmp_path / "dec2.pt")
    assert_error(tmp_path / "dec2.pt", "AdaIN decoder format 2")
    save_checkpoint(tmp_path / "odd.pt", kind="cyclegan/resnet", step=0, images_seen=0, config={},
                    models={"G": net()}, optimizers={}, rng=False)
    assert_error(tmp_path / "odd.pt", "a 'cyclegan/resnet' checkpoint holds no model")
    save_checkpoint(tmp_path / "noema.pt", kind="gan/dcgan", step=0, images_seen=0, config={},
                    models={"G": net()}, optimizers={}, rng=False)
    assert_error(tmp_path / "noema.pt", "an incomplete 'gan/dcgan' file")


# --------------------------------------------------------------------------------------------
# the files of the previous release


def test_model_kind_maps_old_kinds_to_family_and_arch():
    assert model_kind("fast-style") == model_kind("fast-style-train") == "fast-style/transformer"
    assert model_kind("adain-decoder") == model_kind("adain/train") == "adain/decoder"
    assert model_kind("classifier/resnet") == "classify/resnet"
    assert model_kind("gan/pggan") == "gan/pggan" and model_kind("gan/sngan") == "gan/sngan"
    assert model_kind("classify/lenet") == "classify/lenet"
    assert model_kind("nonsense") is None and model_kind("A/b") is None


def test_old_fast_style_files_read_as_fast_style_models(tmp_path):
    from impasto.nets.transformer import TransformerConfig, TransformerNet
    from impasto.style.fast import FastStyle

    m = load_model(LEGACY / "fast_style.pt", kind="fast-style")
    assert (m.kind, m.legacy, m.extra["step"]) == ("fast-style/transformer", "fast-style", 6)
    assert m.extra["metadata"]["style"]["name"] == "style.png"
    assert set(m.extra["metadata"]).isdisjoint({"kind", "format_version", "net"})
    assert m.extra["thumbnail"].shape == (3, 40, 40)
    net_ = TransformerNet(TransformerConfig.from_dict(m.config))
    net_.load_state_dict(m.state_dict)
    out = FastStyle(net_, device="cpu")(content_input(), precision="fp32")
    assert_matches(out, EXPECTED["fast_style"]["output"], "fast-style via load_model")
    # converted and saved again, in this format and in safetensors: the same model
    for name in ("new.pt", "new.safetensors"):
        again = load_model(m.save(tmp_path / name))
        assert again.legacy is None and again.kind == m.kind and again.config == m.config
        assert_same(again.state_dict, m.state_dict)
        assert_same(again.extra, m.extra)
    half = load_model(LEGACY / "fast_style_run" / "ckpt-000000003.pt")
    assert (half.kind, half.legacy, half.config) == (m.kind, "fast-style-train", m.config)
    assert half.extra["metadata"]["style"] == {"name": "style.png"}


def test_old_adain_files_read_as_adain_decoders():
    from impasto.nets.adain import AdaINDecoder, AdaINDecoderConfig
    from impasto.style.adain import AdaIN

    m = load_model(LEGACY / "adain_decoder.pt", kind="adain/decoder")
    assert m.legacy == "adain-decoder" and m.extra["styles"] == ["0.png", "1.png", "2.png"]
    assert m.config["encoder"] == {"weights": None, "widths": [4, 8, 8, 8], "layer": "relu4_1"}
    assert m.extra["training"]["steps"] == 6
    dec = AdaINDecoder(AdaINDecoderConfig.from_dict(m.config["decoder"]))
    dec.load_state_dict(m.state_dict)
    ada = AdaIN(dec, encoder(), device="cpu", precision="fp32")
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    assert_matches(ada(content_input(), style, alpha=0.8), EXPECTED["adain"]["output"],
                   "AdaIN via load_model")
    half = load_model(LEGACY / "adain_run" / "ckpt-000000003.pt")
    assert (half.kind, half.legacy, half.config) == ("adain/decoder", "adain/train", m.config)


def test_old_gan_checkpoints_read_as_their_ema_generators():
    from impasto.gan import GanGenerator
    from impasto.nets.gan import GanNetConfig, build_gan
    from impasto.nets.pggan import build_pggan

    m = load_model(LEGACY / "gan_dcgan_run" / "ckpt-000000003.pt", kind="gan")
    assert (m.kind, m.legacy, m.extra["step"], m.extra["classes"]) == ("gan/dcgan", "gan/dcgan",
                                                                      3, [])
    G, _ = build_gan(GanNetConfig.from_dict(m.config))
    G.load_state_dict(m.state_dict)
    assert_matches(GanGenerator(G)(4, seed=1), EXPECTED["gan_dcgan"]["ckpt3_ema"], "DCGAN G_ema")

    pg = load_model(LEGACY / "pggan_run" / "ckpt-000000006.pt", kind="gan/pggan")
    assert pg.extra["stage"]["phase"] == "fade" and pg.extra["start_resolution"] == 4
    G, _ = build_pggan(pg.config)
    G.load_state_dict(pg.state_dict)
    G.set_stage(pg.extra["stage"]["resolution"], pg.extra["stage"]["alpha"])
    assert_matches(GanGenerator(G)(4, seed=2), EXPECTED["pggan"]["ckpt6_ema"], "PGGAN G_ema")


def test_old_classifier_checkpoints_read_as_classifiers():
    from impasto.nets.classifier import ClassifierNetConfig, build_classifier

    m = load_model(LEGACY / "classifier_run" / "ckpt-000000003.pt", kind="classify/lenet")
    assert (m.legacy, m.extra["classes"], m.config["num_classes"]) == (
        "classifier/lenet", ["0", "1", "2", "3"], 4)
    model = build_classifier(ClassifierNetConfig.from_dict(m.config))
    model.load_state_dict(m.state_dict)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_matches(model.eval()(x), EXPECTED["classifier"]["ckpt3_logits"], "logits")
    msg = assert_error(LEGACY / "classifier_run" / "ckpt-000000003.pt", "not 'gan'", kind="gan")
    assert "an old 'classifier/lenet' file" in msg


# --------------------------------------------------------------------------------------------
# the style families write this format


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_style_model_files_are_written_in_this_format(tmp_path, suffix):
    from impasto.nets.adain import AdaINDecoder, AdaINDecoderConfig
    from impasto.nets.transformer import TransformerConfig, TransformerNet
    from impasto.style.adain import load_decoder, save_decoder
    from impasto.style.fast import load_fast_style, save_fast_style

    torch.manual_seed(0)
    net_ = TransformerNet(TransformerConfig(channels=(4, 4, 4), num_residual=1))
    thumb = torch.randint(0, 256, (3, 8, 10), dtype=torch.uint8)
    path = save_fast_style(net_, tmp_path / f"fast{suffix}", {"style": {"name": "s"}, "steps": 2},
                           thumbnail=thumb)
    m = load_model(path, kind="fast-style/transformer")
    assert m.legacy is None and not m.training_checkpoint
    assert m.config == {"channels": [4, 4, 4], "num_residual": 1, "kernel_size": 9}
    assert m.extra["metadata"]["style"] == {"name": "s"}
    assert torch.equal(m.extra["thumbnail"], thumb)
    loaded, meta, t = load_fast_style(path)
    assert_same(loaded.state_dict(), net_.state_dict())
    assert torch.equal(t, thumb)
    assert (meta["kind"], meta["format_version"], meta["net"], meta["steps"]) == (
        "fast-style/transformer", 1, m.config, 2)

    dec = AdaINDecoder(AdaINDecoderConfig((4, 8, 8, 8)))
    enc = {"weights": None, "widths": [4, 8, 8, 8], "layer": "relu4_1"}
    path = save_decoder(tmp_path / f"dec{suffix}", dec, encoder=enc, step=7, styles=["a.png"])
    m = load_model(path, kind="adain")
    assert (m.kind, m.config["encoder"], m.extra["step"]) == ("adain/decoder", enc, 7)
    loaded, info = load_decoder(path)
    assert_same(loaded.state_dict(), dec.state_dict())
    assert (info["step"], info["styles"], info["encoder"]) == (7, ["a.png"], enc)
    if suffix == ".pt":
        raw = torch.load(path, weights_only=True)
        assert (raw["format"], raw["kind"]) == (FORMAT, "adain/decoder")
