"""impasto.temporal.blend: the flow-guided blend makes a flickering per-frame transform
consistent over time (measured with the warping error), leaves the first frame and occluded
pixels to the network, and checks its settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")

from impasto.errors import InputError
from impasto.metrics.flicker import warping_error
from impasto.temporal.blend import (
    TemporalConfig,
    TemporalStylizer,
    _low_pass,
    keep_detail,
    temporal_config,
)


def panning_clip(n: int = 8, h: int = 48, w: int = 64, step: int = 2) -> list[torch.Tensor]:
    """``n`` frames ``(1, 3, h, w)`` of a smooth seeded image moving right ``step`` px per
    frame (crops of one wider image, so nothing is resampled)."""
    g = torch.Generator().manual_seed(0)
    wide = torch.nn.functional.interpolate(torch.rand(1, 3, h // 6, (w + n * step) // 6,
                                                      generator=g),
                                           size=(h, w + n * step), mode="bicubic",
                                           align_corners=False).clamp(0, 1)
    return [wide[..., (n - i) * step: (n - i) * step + w] for i in range(n)]


class NoisyTransform:
    """A per-frame 'stylisation' that flickers: a fixed colour mapping plus fresh noise on
    every call (seeded), like strokes that a network paints anew on every frame."""

    def __init__(self, amount: float = 0.15) -> None:
        self.amount = amount
        self.g = torch.Generator().manual_seed(1)
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        noise = torch.randn(x.shape, generator=self.g) * self.amount
        return (x.flip(1) * 0.8 + 0.1 + noise).clamp(0, 1)


def _run(frames, transform, config=None, batch=4):
    if config is None:
        return [transform(f) for f in frames]
    st = TemporalStylizer(transform, config)
    out = []
    for i in range(0, len(frames), batch):
        out.extend(st(torch.cat(frames[i: i + batch])).split(1))
    return out


def test_the_blend_cuts_the_flicker_of_a_noisy_transform() -> None:
    frames = panning_clip()
    plain = warping_error(frames, _run(frames, NoisyTransform()))
    blended = warping_error(frames, _run(frames, NoisyTransform(), TemporalConfig(0.6)))
    strong = warping_error(frames, _run(frames, NoisyTransform(), TemporalConfig(0.9)))
    assert plain.stylised > 20 * plain.floor  # the noise flickers
    # an EMA along the motion: the error falls with the strength, by about (1-s)^2/(1+s)
    assert blended.stylised < plain.stylised / 3
    assert strong.stylised < blended.stylised / 3


def test_strength_zero_and_the_first_frame_are_the_network_s_own() -> None:
    frames = panning_clip(5)
    ref = _run(frames, NoisyTransform())
    off = _run(frames, NoisyTransform(), TemporalConfig(0.0, stabilize=False))
    for a, b in zip(ref, off):
        torch.testing.assert_close(a, b)
    on = _run(frames, NoisyTransform(), TemporalConfig(0.8))
    torch.testing.assert_close(on[0], ref[0])
    assert (on[3] - ref[3]).abs().mean() > 0.02


def test_batches_and_single_frames_agree_and_feed_runs_frame_by_frame() -> None:
    frames = panning_clip(6)
    det = lambda x: (x * 0.5 + 0.25)  # noqa: E731  (deterministic: batching must not matter)
    a = _run(frames, det, TemporalConfig(0.7), batch=4)
    b = _run(frames, det, TemporalConfig(0.7), batch=1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    t = NoisyTransform()
    fed = _run(frames, t, TemporalConfig(0.5, feed=0.5), batch=3)
    assert t.calls == 6 and len(fed) == 6  # one call per frame
    plain = warping_error(frames, _run(frames, NoisyTransform()))
    assert warping_error(frames, fed).stylised < plain.stylised / 2


def test_occluded_pixels_keep_the_new_frame() -> None:
    # a scene cut: nothing is consistent, so the blend changes nothing
    frames = panning_clip(2)
    g = torch.Generator().manual_seed(5)
    frames[1] = torch.rand(frames[1].shape, generator=g)
    t = NoisyTransform(0.0)
    out = _run(frames, t, TemporalConfig(1.0), batch=1)
    changed = (out[1] - NoisyTransform(0.0)(frames[1])).abs().amax(1) > 1e-6
    assert changed.float().mean() < 0.1  # the flow check rejects (almost) every pixel
    static = _run([frames[0], frames[0]], t, TemporalConfig(1.0), batch=1)
    torch.testing.assert_close(static[1], static[0])  # all consistent: the previous output


def test_settings_are_checked() -> None:
    assert temporal_config(None) is None and temporal_config(False) is None
    assert temporal_config(True) == TemporalConfig()
    assert temporal_config(0.3).strength == 0.3
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match=r"strength must lie in \[0, 1\]"):
            temporal_config(bad)
    with pytest.raises(InputError, match="feed"):
        TemporalConfig(feed=2.0).validate()
    with pytest.raises(InputError, match="unknown flow method"):
        TemporalConfig(flow="raft").validate()
    with pytest.raises(InputError, match="temporal must be"):
        temporal_config("strong")


def test_noise_math_matches_the_ema_model() -> None:
    """On a static scene, per-pixel i.i.d. noise of variance v blended plainly (no ``detail``)
    with strength s leaves consecutive outputs differing by 2 v (1-s)^2 / (1+s) (frame by
    frame: 2 v)."""
    frames = [panning_clip(1)[0]] * 40
    s = 0.5
    out = _run(frames, NoisyTransform(0.05), TemporalConfig(s, detail=False), batch=8)
    diffs = [float(((out[i + 1] - out[i]) ** 2).mean()) for i in range(20, 39)]
    expected = 2 * 0.05 ** 2 * (1 - s) ** 2 / (1 + s)
    assert np.mean(diffs) == pytest.approx(expected, rel=0.25)


def _fine_std(frames: list[torch.Tensor]) -> float:
    """The standard deviation of what the blend's low-pass leaves (the fine detail)."""
    return float(torch.stack([f - _low_pass(f) for f in frames]).std())


def test_detail_keeps_more_of_the_texture_than_the_plain_average() -> None:
    """Fresh noise on every frame (strokes repainted) on a static scene, strength 0.5: the plain
    average keeps sqrt(1/3) of the texture's standard deviation (the EMA's steady state); with
    ``detail`` the blend keeps more of it (0.73 here: per-pixel noise is the hardest case for
    the local contrast estimate), and the flicker still falls several times, less than with the
    plain average (the price of the texture)."""
    frames = [panning_clip(1)[0]] * 30
    ref = _run(frames, NoisyTransform(0.05))
    plain = _run(frames, NoisyTransform(0.05), TemporalConfig(0.5, detail=False), batch=6)
    kept = _run(frames, NoisyTransform(0.05), TemporalConfig(0.5, detail=True), batch=6)
    clean = NoisyTransform(0.0)(frames[0])  # the texture: what the noise adds to this
    net, soft, sharp = (_fine_std([f - clean for f in x[10:]]) for x in (ref, plain, kept))
    assert soft == pytest.approx(net / 3 ** 0.5, rel=0.1)
    assert 1.15 * soft < sharp < net
    diff = lambda xs: np.mean([float(((xs[i + 1] - xs[i]) ** 2).mean())  # noqa: E731
                              for i in range(10, 29)])
    assert diff(plain) < diff(kept) < diff(ref) / 3


def test_detail_by_default_only_where_the_camera_is_not_followed() -> None:
    frames = [panning_clip(1)[0]] * 8
    for stabilize in (True, False):
        auto = _run(frames, NoisyTransform(0.05), TemporalConfig(0.5, stabilize=stabilize))
        for detail in (True, False):
            out = _run(frames, NoisyTransform(0.05),
                       TemporalConfig(0.5, detail=detail, stabilize=stabilize))
            same = all(torch.equal(a, b) for a, b in zip(auto, out))
            assert same == (detail != stabilize), (stabilize, detail)


def test_keep_detail_is_the_frame_where_the_weight_is_zero_and_bounded_elsewhere() -> None:
    g = torch.Generator().manual_seed(2)
    frame, other = torch.rand(2, 1, 3, 32, 40, generator=g)
    w = torch.zeros(1, 1, 32, 40)
    w[..., 20:] = 0.5
    blend = frame + w * (other - frame)
    out = keep_detail(blend, frame, w)
    torch.testing.assert_close(out[..., :12], frame[..., :12], atol=1e-5, rtol=0)  # w = 0
    detail = (blend - _low_pass(blend))[..., 28:]  # away from the edge of the w = 0.5 half
    gain = ((out - _low_pass(blend))[..., 28:] / detail)[detail.abs() > 1e-3]
    assert gain.min() >= 1 - 1e-4 and gain.max() <= 2 ** 0.5 + 1e-4  # the cap at w = 0.5
    assert gain.median() > 1.2  # uncorrelated textures: the contrast is restored


def test_residual_weighting_leaves_flicker_that_is_not_motion() -> None:
    """Why ``residual`` is not the default: fresh noise on every frame of a pan (a network
    amplifying sensor noise) is not motion, so the camera explains every pixel and the blend
    weighted by the unexplained flow settles almost none of it; the blend everywhere does."""
    frames = panning_clip()
    plain = warping_error(frames, _run(frames, NoisyTransform())).stylised
    cfg = dict(strength=0.3)
    everywhere = warping_error(frames, _run(frames, NoisyTransform(),
                                            TemporalConfig(**cfg))).stylised
    residual = warping_error(frames, _run(frames, NoisyTransform(),
                                          TemporalConfig(**cfg, residual=1.0))).stylised
    assert everywhere < 0.6 * plain
    assert residual > 0.85 * plain


def test_the_lanczos_warp_keeps_what_the_blend_carries_closest_to_the_frames(monkeypatch
                                                                              ) -> None:
    """A transform that paints nothing new (the identity) on a detailed scene panning by a
    sub-pixel step, blended at 0.5: each output should be its frame. What it is not comes
    from warping the previous output, again on every frame along the average; Lanczos' kernel
    (the default, ``blend.WARP``) keeps the frames at about 52 dB here, bicubic 44, bilinear
    32 (a blur that the style loss sees: docs/video.md)."""
    from conftest import psnr8, sub_pixel_pan

    from impasto.temporal import blend

    assert blend.WARP == "lanczos"
    frames = sub_pixel_pan(12, 48, 64, 0.5, cell=2, mode="lanczos")

    def kept(mode: str) -> float:
        monkeypatch.setattr(blend, "WARP", mode)
        st = TemporalStylizer(lambda x: x, TemporalConfig(0.5, stabilize=False, detail=False))
        out = [st(f) for f in frames]
        inner = (..., slice(8, -8), slice(8, -8))  # away from the borders the pan uncovers
        return float(np.mean([psnr8(o[inner], f[inner]) for o, f in zip(out[4:], frames[4:])]))

    lanczos, bicubic, bilinear = kept("lanczos"), kept("bicubic"), kept("bilinear")
    assert lanczos > 48.0
    assert lanczos > bicubic + 4.0 > bilinear + 8.0
