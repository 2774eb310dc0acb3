"""Gatys style transfer on a tiny random VGG: options, scales, seeds, colour, blending."""

from __future__ import annotations

import pytest
import torch

from impasto.errors import InputError
from impasto.io import to_pil
from impasto.style import GatysConfig, GatysStyleTransfer, PerceptualLoss
from impasto.style.gatys import SCHEDULE_RULE
from impasto.style.color import rgb_to_yiq

from conftest import CONTENT_LAYERS, STYLE_LAYERS, tiny_vgg


def _images(seed=0, h=24, w=32):
    g = torch.Generator().manual_seed(seed)
    content = torch.rand(1, 3, h, w, generator=g)
    style_a = torch.rand(1, 3, 20, 20, generator=g) ** 2
    style_b = 1 - torch.rand(1, 3, 28, 28, generator=g) ** 3
    return content, style_a, style_b


def _run(cfg: GatysConfig, content, styles, **kw):
    return GatysStyleTransfer(cfg, encoder=tiny_vgg()).run(content, styles, **kw)


def _cfg(**kw):
    base = dict(size=32, iterations=15, precision="fp32", device="cpu", scales=1)
    base.update(kw)
    return GatysConfig(**base)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(size=-5), "size"),
        (dict(size=0), "size"),
        (dict(style_scale=0), "style scale"),
        (dict(content_layers=("relu9_9",)), "relu9_9"),
        (dict(style_layers=("relu1_1", "bogus")), "bogus"),
        (dict(style_layer_weights=(1.0, 2.0)), "layer weights"),
        (dict(style_blend_weights=(1.0, 2.0)), "blend"),
        (dict(preserve_color="sepia"), "preserve color"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(iterations=(10, 10, 10), scales=2), "iteration counts"),
        (dict(iterations=-1), "iterations"),
        (dict(tv_weight=-1.0), "tv weight"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(InputError, match=message):
        _cfg(**kw).validate(1)


def test_automatic_scales_halve_down_to_about_128px():
    assert GatysConfig(size=512).scale_sizes() == [128, 256, 512]
    assert GatysConfig(size=1000).scale_sizes() == [250, 500, 1000]
    assert GatysConfig(size=2048).scale_sizes() == [128, 256, 512, 1024, 2048]
    assert GatysConfig(size=200).scale_sizes() == [200]
    assert GatysConfig(size=512, scales=2).scale_sizes() == [256, 512]
    assert GatysConfig(size=512, iterations=7).scale_iterations() == [7, 7, 7]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize(
    "size, sizes, iterations",
    [
        (100, [100], [150]),
        (128, [128], [150]),
        (200, [200], [150]),
        (256, [128, 256], [100, 150]),
        (512, [128, 256, 512], [100, 100, 150]),
        (1024, [128, 256, 512, 1024], [100, 100, 100, 150]),
    ],
)
def test_default_schedule_is_one_rule_at_every_size(size, sizes, iterations, optimizer):
    cfg = GatysConfig(size=size, optimizer=optimizer)
    assert cfg.scale_sizes() == sizes
    assert cfg.scale_iterations() == iterations
    # an explicit number of scales follows the same rule
    assert GatysConfig(size=size, scales=1, optimizer=optimizer).scale_iterations() == [150]


def test_smaller_outputs_do_fewer_iterations():
    totals = [sum(GatysConfig(size=n).scale_iterations()) for n in (128, 256, 512, 1024)]
    assert totals == [150, 250, 350, 450]
    assert "100 iterations at each coarse scale and 150 at full size" in SCHEDULE_RULE


def test_loss_falls_and_output_has_the_requested_size():
    content, style, _ = _images()
    seen = []
    out = _run(_cfg(size=40, iterations=30), content, [style], callback=seen.append)
    assert out.shape == (1, 3, 30, 40) and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert len(seen) == 30 and seen[-1].step == seen[-1].total_steps == 30
    assert seen[-1].style < 0.2 * seen[0].style


def test_multi_scale_runs_every_scale_coarse_to_fine():
    content, style, _ = _images(h=48, w=64)
    seen = []
    _run(_cfg(size=128, scales=3, iterations=(10, 10, 5)), content, [style], callback=seen.append)
    assert [s.size for s in seen[::10]] == [(24, 32), (48, 64), (96, 128)]
    assert [s.scale for s in seen[::10]] == [0, 1, 2]
    assert seen[-1].total_steps == 25


def test_scales_too_small_for_the_deepest_layer_are_skipped():
    content, style, _ = _images(h=48, w=64)
    seen = []
    # 4 poolings before relu5_1: scales with a short side under 16 px cannot be encoded
    _run(_cfg(size=64, scales=3, iterations=(10, 10, 10)), content, [style], callback=seen.append)
    assert {s.size for s in seen} == {(24, 32), (48, 64)}
    with pytest.raises(InputError, match="16 px"):
        _run(_cfg(size=32, scales=1), torch.rand(1, 3, 10, 64), [style])


def test_same_seed_same_output_different_seed_differs():
    content, style, _ = _images()
    a = _run(_cfg(init="noise", seed=3), content, [style])
    b = _run(_cfg(init="noise", seed=3), content, [style])
    c = _run(_cfg(init="noise", seed=4), content, [style])
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.05


def test_init_image_and_content_init_differ():
    content, style, other = _images()
    a = _run(_cfg(iterations=3), content, [style])
    b = _run(_cfg(iterations=3), content, [style], init=other)
    assert (a - b).abs().mean() > 0.05


def test_blend_weights_select_and_mix_styles():
    content, style_a, style_b = _images()
    only_a = _run(_cfg(), content, [style_a])
    blend_a = _run(_cfg(style_blend_weights=(1.0, 0.0)), content, [style_a, style_b])
    mixed = _run(_cfg(style_blend_weights=(1.0, 1.0)), content, [style_a, style_b])
    torch.testing.assert_close(blend_a, only_a, atol=1e-5, rtol=0)
    assert (mixed - only_a).abs().mean() > 0.01


def test_luminance_mode_keeps_the_content_chroma():
    content, style, _ = _images()
    style = style * torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1)  # a red style
    out = _run(_cfg(preserve_color="luminance"), content, [style])
    out8 = (out * 255).round() / 255  # what a saved file holds
    iq_out, iq_content = rgb_to_yiq(out8)[:, 1:], rgb_to_yiq(content[..., :24, :32])[:, 1:]
    # where the result is not clipped at 0 or 1, the chroma is the content's
    inside = ((out > 0.02) & (out < 0.98)).all(1, keepdim=True).expand_as(iq_out)
    assert inside.float().mean() > 0.5
    assert (iq_out - iq_content)[inside].abs().max() < 0.02
    plain = _run(_cfg(), content, [style])
    assert (rgb_to_yiq(plain)[:, 1:] - iq_content).abs().mean() > 0.02


def test_histogram_mode_changes_the_result():
    content, style, _ = _images()
    a = _run(_cfg(preserve_color="histogram"), content, [style])
    b = _run(_cfg(), content, [style])
    assert (a - b).abs().mean() > 0.01


def test_abort_stops_early():
    content, style, _ = _images()
    seen = []
    _run(_cfg(iterations=50), content, [style], callback=seen.append, abort=lambda: len(seen) >= 4)
    assert len(seen) == 4


def test_adam_also_lowers_the_loss():
    content, style, _ = _images()
    seen = []
    _run(_cfg(optimizer="adam", iterations=40, lr=0.05), content, [style],
         callback=seen.append)
    assert seen[-1].loss < 0.5 * seen[0].loss


def test_bf16_autocast_reaches_a_similar_loss_to_fp32():
    content, style, _ = _images()
    ref = PerceptualLoss(tiny_vgg(), CONTENT_LAYERS, STYLE_LAYERS, content_weight=5,
                         style_weight=100, tv_weight=1e-3)
    ref.set_content(content[..., :24, :32])
    ref.set_styles([torch.nn.functional.interpolate(style, size=(32, 32), mode="bicubic")])
    start = float(ref(content)[0])
    finals = {}
    for precision in ("fp32", "bf16"):
        out = _run(_cfg(precision=precision, iterations=40), content, [style])
        finals[precision] = float(ref(out)[0])
    assert finals["bf16"] < 0.5 * start
    assert finals["bf16"] < 2.0 * finals["fp32"]


def test_the_pipeline_call_shape():
    """GatysStyleTransfer(...)(content, style, seed=, output=): images or tensors in, a PIL
    image or a tensor out; the seed of the call decides the noise start."""
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 24, 32, generator=g), torch.rand(3, 20, 20, generator=g)
    pipe = GatysStyleTransfer(_cfg(size=32, init="noise", iterations=3), encoder=tiny_vgg())
    a = pipe(content, style, seed=1, output="tensor")
    b = pipe(content, [style], seed=1, output="tensor")
    c = pipe(content, style, seed=2, output="tensor")
    assert a.shape == (1, 3, 24, 32) and torch.equal(a, b) and not torch.equal(a, c)
    img = pipe(to_pil(content[0]), style, seed=1)
    assert img.size == (32, 24) and img.mode == "RGB"
    with pytest.raises(InputError, match="output must be"):
        pipe(content, style, output="png")


def test_old_config_names_still_work():
    with pytest.warns(DeprecationWarning, match="lr="):
        cfg = GatysConfig(learning_rate=0.05, weights_path="w.pt")
    assert cfg.lr == 0.05 and cfg.vgg_weights == "w.pt"
    assert "learning_rate" not in cfg.to_dict() and cfg.to_dict()["lr"] == 0.05


def test_cudnn_autotuning_only_for_a_cuda_run_and_put_back_afterwards():
    from impasto.style.gatys import _cudnn_autotune

    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with _cudnn_autotune(torch.device("cuda")):  # sets a flag only: no GPU needed
            assert torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.benchmark
        with _cudnn_autotune(torch.device("cpu")):
            assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = saved
