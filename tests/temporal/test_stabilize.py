"""impasto.temporal.stabilize: the camera's zoom and shift fitted from the flow (moving objects
ignored), the anchor that chains them and starts again, the canvas on the network's grid, and
that stylising through it removes the flicker of a transform that is not shift-equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GridPattern, sub_pixel_pan

pytest.importorskip("cv2")

from impasto.metrics.flicker import warping_error
from impasto.temporal.blend import TemporalConfig, TemporalStylizer
from impasto.errors import InputError
from impasto.temporal.stabilize import (
    MAX_SCALE,
    Anchor,
    fit_motion,
    unexplained,
    warp_affine_tensor,
)


def _flow(h, w, s, tx, ty):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([(s - 1) * xs + tx, (s - 1) * ys + ty], -1).astype(np.float32)


def test_fit_motion_finds_the_zoom_and_shift_and_ignores_a_moving_object():
    h, w = 96, 128
    flow = _flow(h, w, 1.02, 3.3, -1.7)
    flow[20:60, 30:70] += (6.0, -4.0)  # an object moving on its own: a sixth of the frame
    m = fit_motion(flow, np.ones((h, w), bool))
    np.testing.assert_allclose(m, [[1.02, 0, 3.3], [0, 1.02, -1.7], [0, 0, 1]], atol=1e-4)
    # the same input gives the same fit (RANSAC's seed is fixed)
    np.testing.assert_array_equal(m, fit_motion(flow, np.ones((h, w), bool)))
    # too few consistent pixels, or no dominant motion: no fit
    assert fit_motion(flow, np.zeros((h, w), bool)) is None
    rng = np.random.default_rng(0)
    assert fit_motion(rng.normal(0, 20, (h, w, 2)).astype(np.float32),
                      np.ones((h, w), bool)) is None


def test_the_anchor_chains_motions_and_starts_again_past_its_limits():
    a = Anchor()
    a.update(None)  # the first frame
    np.testing.assert_array_equal(a.m, np.eye(3))
    z = MAX_SCALE ** 0.45  # two steps stay within the limit, three pass it
    step = np.array([[z, 0, 2.0], [0, z, 0], [0, 0, 1]])
    a.update(step)
    a.update(step)
    np.testing.assert_allclose(a.m, step @ step)
    assert a.restarts == 0
    for _ in range(2):
        a.update(step)
    assert a.restarts == 1 and np.sqrt(np.linalg.det(a.m[:2, :2])) <= MAX_SCALE
    a.update(None)  # a cut (no fit)
    assert a.restarts == 2
    np.testing.assert_array_equal(a.m, np.eye(3))
    a.reset()
    a.update(None)
    assert a.restarts == 2


def test_the_canvas_covers_the_frame_on_the_networks_grid():
    a = Anchor(grid=8)
    a.m = np.array([[0.97, 0, -21.3], [0, 0.97, 5.6], [0, 0, 1]])
    c, (ch, cw) = a.canvas((90, 130))
    assert ch % 8 == 0 and cw % 8 == 0
    # the canvas's origin sits on the anchor's 8-pixel grid: c = shift . m with integer shift
    shift = c @ np.linalg.inv(a.m)
    np.testing.assert_allclose(shift[:2, :2], np.eye(2), atol=1e-9)
    assert np.allclose(shift[:2, 2] % 8, 0) or np.allclose(shift[:2, 2] % 8, 8)
    corners = np.array([[0, 0, 1], [129, 0, 1], [0, 89, 1], [129, 89, 1]]) @ c.T
    assert corners[:, 0].min() >= 0 and corners[:, 0].max() <= cw - 1
    assert corners[:, 1].min() >= 0 and corners[:, 1].max() <= ch - 1
    assert cw - (corners[:, 0].max() - corners[:, 0].min()) < 2 * 8 + 1


def test_warp_affine_tensor_moves_pixels_and_inverts():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(48, 64),
                                        mode="bicubic", align_corners=False)
    shifted = warp_affine_tensor(x, np.array([[1, 0, 3], [0, 1, 2]]), (48, 64))
    torch.testing.assert_close(shifted[..., :-2, :-3], x[..., 2:, 3:], atol=1e-5, rtol=0)
    a = np.array([[1.03, 0, 2.4], [0, 1.03, -1.3], [0, 0, 1]])
    back = warp_affine_tensor(warp_affine_tensor(x, np.linalg.inv(a), (48, 64)), a, (48, 64))
    assert float((back - x)[..., 6:-6, 6:-6].abs().mean()) < 5e-3
    # the grid_sample path (any device) agrees with OpenCV's
    g2 = warp_affine_tensor(x.double(), a, (48, 64), "bilinear").float()
    cv = warp_affine_tensor(x, a, (48, 64), "bilinear")
    torch.testing.assert_close(g2[..., 2:-2, 2:-2], cv[..., 2:-2, 2:-2], atol=1e-4, rtol=0)


def test_stabilising_stops_a_grid_fixed_pattern_from_flickering():
    frames = sub_pixel_pan()
    cfg = dict(strength=0.0)
    plain = warping_error(frames, [GridPattern()(f) for f in frames])
    st = TemporalStylizer(GridPattern(), TemporalConfig(**cfg, stabilize=True))
    stab = warping_error(frames, [st(f) for f in frames])
    assert st.anchor.restarts == 0
    fitted = st.anchor.m
    # the content moves right 1.5 px a frame: frame t's pixel p was at p - 1.5 t
    assert abs(fitted[0, 2] + 1.5 * (len(frames) - 1)) < 1.0 and abs(fitted[0, 0] - 1) < 0.01
    assert plain.stylised > 20 * plain.floor  # the pattern flickers under the pan
    assert stab.stylised < plain.stylised / 5
    # one call per frame, each frame's output its own size
    assert all(o.shape == f.shape for o, f in zip([st(f) for f in frames[:2]], frames[:2]))


class Counting(GridPattern):
    """The grid pattern, counting its calls and the frames in each."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x):
        self.calls.append(int(x.shape[0]))
        return super().__call__(x)


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_a_batch_of_frames_runs_its_canvases_together_with_the_same_output(strength):
    frames = sub_pixel_pan(n=9)
    one, many = Counting(), Counting()
    cfg = TemporalConfig(strength=strength, stabilize=True)
    alone = TemporalStylizer(one, cfg)
    by_one = torch.cat([alone(f) for f in frames])
    batched = TemporalStylizer(many, cfg)
    by_four = torch.cat([batched(torch.cat(frames[i:i + 4])) for i in range(0, 9, 4)])
    torch.testing.assert_close(by_four, by_one, rtol=0, atol=1e-6)
    assert one.calls == [1] * 9
    # the anchor's first frame is its own canvas; the pan's canvases then keep one size
    assert sum(many.calls) == 9 and len(many.calls) < 9 and max(many.calls) > 1


def test_unexplained_is_the_flow_the_camera_does_not_explain_in_pixels():
    h, w = 40, 60
    flow = _flow(h, w, 1.02, 1.5, -0.5)
    flow[10:20, 10:20] += (3.0, 4.0)  # 5 px on its own
    flow[30:35, 40:50, 0] += 0.25  # a quarter of a pixel
    m = np.array([[1.02, 0, 1.5], [0, 1.02, -0.5], [0, 0, 1]])
    r = unexplained(flow, m, 1.0)
    assert r.dtype == np.float32 and r.shape == (h, w)
    assert r[:8].max() < 1e-4 and r[10:20, 10:20].min() == 1.0
    np.testing.assert_allclose(r[30:35, 40:50], 0.25, atol=1e-4)
    np.testing.assert_allclose(unexplained(flow, m, 0.5)[30:35, 40:50], 0.5, atol=1e-4)


def test_the_blend_leaves_alone_what_the_camera_explains():
    """A pure pan: following the camera explains all of it, so with ``residual`` the output is
    (nearly) the stabilised network's alone, while the same blend everywhere moves it."""
    frames = sub_pixel_pan(n=8)
    run = lambda cfg: torch.cat([TemporalStylizer(GridPattern(), cfg)(torch.cat(frames))])  # noqa: E731
    alone = run(TemporalConfig(strength=0.0))
    residual = run(TemporalConfig(strength=0.5, residual=1.0))
    everywhere = run(TemporalConfig(strength=0.5, residual=0.0))
    near = float((residual - alone).abs().mean())
    far = float((everywhere - alone).abs().mean())
    assert far > 1e-3 and near < far / 4
    with pytest.raises(InputError, match="residual must be a number of pixels >= 0"):
        TemporalConfig(residual=-1.0).validate()
