"""impasto.temporal.flow: DIS flow recovers a known motion, warping by it undoes the motion (numpy
and torch alike), and the forward-backward check flags what the motion uncovers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from impasto.errors import InputError
from impasto.temporal import consistency_mask, optical_flow, warp, warp_tensor


def _photo(size: int = 96) -> np.ndarray:
    """A smooth, textured RGB float image (H, W, 3) in [0, 1]."""
    rng = np.random.default_rng(0)
    noise = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``out(x) = img(x - (dx, dy))``: the content moves by (dx, dy)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_of_a_shift_is_the_shift_and_warping_undoes_it(method: str) -> None:
    a = _photo()
    b = _shift(a, 3.0, -2.0)
    flow = optical_flow(a, b, method)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16]
    assert np.abs(inner[..., 0] - 3.0).mean() < 0.3
    assert np.abs(inner[..., 1] + 2.0).mean() < 0.3
    before = ((b - a) ** 2)[16:-16, 16:-16].mean()
    after = ((warp(b, flow) - a) ** 2)[16:-16, 16:-16].mean()
    assert after < before / 20


def test_uint8_and_float_frames_give_the_same_flow() -> None:
    a = _photo()
    b = _shift(a, 2.0, 1.0)
    f1 = optical_flow(a, b)
    f2 = optical_flow((a * 255 + 0.5).astype(np.uint8), (b * 255 + 0.5).astype(np.uint8))
    np.testing.assert_allclose(f1, f2, atol=1e-5)


def test_warp_tensor_matches_warp() -> None:
    rng = np.random.default_rng(1)
    img = _photo(48)
    flow = rng.normal(0, 2.0, (48, 48, 2)).astype(np.float32)
    ref = warp(img, flow)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = warp_tensor(t, flow)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=2e-3)
    # zero flow is the identity
    same = warp_tensor(t, np.zeros((48, 48, 2), np.float32))
    torch.testing.assert_close(same, t, atol=1e-5, rtol=0)


def test_consistency_mask_flags_the_uncovered_border_only() -> None:
    h = w = 64
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 5.0  # every pixel of frame t is found 5 px to the right in t'
    bwd = np.zeros((h, w, 2), np.float32)
    bwd[..., 0] = -5.0
    ok = consistency_mask(fwd, bwd)
    assert ok.shape == (h, w) and ok.dtype == bool
    assert not ok[:, w - 5:].any()  # they leave the frame
    assert ok[:, : w - 6].all()
    # a backward flow that disagrees fails the round trip
    bad = consistency_mask(fwd, np.zeros_like(bwd))
    assert not bad.any()


def test_consistency_mask_flags_motion_boundaries() -> None:
    h = w = 64
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[:, 32:, 1] = 4.0  # the right half moves down: a sharp edge in the flow
    bwd = np.zeros_like(fwd)
    bwd[:, 32:, 1] = -4.0
    with_mb = consistency_mask(fwd, bwd, motion_boundaries=True)
    without = consistency_mask(fwd, bwd, motion_boundaries=False)
    assert not with_mb[10:50, 31:33].any()
    assert without[10:50, 31:33].all()


def test_frames_of_different_sizes_and_unknown_method_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="one size"):
        optical_flow(_photo(32), _photo(48))
    with pytest.raises(InputError, match="unknown flow method"):
        optical_flow(_photo(32), _photo(32), "raft")
