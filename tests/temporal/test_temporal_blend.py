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
from impasto.temporal.blend import TemporalConfig, TemporalStylizer, temporal_config


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
    off = _run(frames, NoisyTransform(), TemporalConfig(0.0))
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
    """On a static scene, per-pixel i.i.d. noise of variance v blended with strength s leaves
    consecutive outputs differing by 2 v (1-s)^2 / (1+s) (frame by frame: 2 v)."""
    frames = [panning_clip(1)[0]] * 40
    s = 0.5
    out = _run(frames, NoisyTransform(0.05), TemporalConfig(s), batch=8)
    diffs = [float(((out[i + 1] - out[i]) ** 2).mean()) for i in range(20, 39)]
    expected = 2 * 0.05 ** 2 * (1 - s) ** 2 / (1 + s)
    assert np.mean(diffs) == pytest.approx(expected, rel=0.25)
