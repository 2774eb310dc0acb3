"""Motion-compensated stylisation: each frame stylised in the coordinates of an anchor frame.

A feed-forward network is not equivariant to sub-pixel shifts and zooms (its strided
convolutions see the content on a different sampling grid), so under a camera pan it paints
different strokes on every frame: most of its flicker. Here the camera's motion is estimated
from the optical flow of the input frames (:func:`fit_motion`: a zoom and shift fitted to the
flow's consistent pixels with RANSAC, so moving objects do not pull it), chained from frame
to frame into ``M_t`` (frame ``t`` pixel coordinates -> the anchor's), and each frame is
resampled onto the anchor's pixel grid before the network sees it (the *canvas*: the frame's
footprint in anchor coordinates, its corner on a multiple of :data:`GRID` pixels so that the
network's strides line up from frame to frame), and its output resampled back::

    canvas_t(c) = x_t(C_t^-1 c),   o_t(p) = net(canvas_t)(C_t p),   C_t = shift_t . M_t

Where the camera only moves, the network sees the same content on the same grid on every frame
and paints the same strokes, which then move with the scene: fresh strokes on every frame, so
the style is the network's own (a blend with the previous output, which averages strokes that do
not line up, softens it). Objects that move on their own are left to the blend of
:mod:`impasto.temporal.blend`.

The anchor starts again (``M_t = I``) at the first frame, when the fit fails (too few
consistent pixels: a cut, a blank frame), and when the frame's scale or rotation against the
anchor passes :data:`MAX_SCALE` (a long zoom would otherwise paint ever larger or smaller
strokes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.temporal.flow import _cv2, cv2_interp, grid_mode, per_image

__all__ = ["GRID", "MAX_SCALE", "MIN_POINTS", "Anchor", "fit_motion", "stylize_planned",
           "unexplained", "warp_affine_tensor"]

#: The canvas's corner lies on a multiple of this many anchor pixels: the total stride of the
#: networks (4 for the per-style and instant networks, 8 for AdaIN's VGG encoder).
GRID = 8
#: Start a new anchor when the frame's scale against it leaves ``[1/MAX_SCALE, MAX_SCALE]``:
#: strokes painted at the anchor's scale grow or shrink with the zoom, and the style with
#: them (benchmarks/video.py's pan clip, 60 frames zooming 16%, strength 0.3: the painting
#: network's style loss +13.6% with 1.08, +9.9% with 1.05, +8.8% with 1.04, for a flicker cut
#: of 16.2x / 13.8x / 14.2x; the preset 3 network's +22% with 1.15).
MAX_SCALE = 1.04
#: A fit needs at least this many consistent flow samples (one every 4 pixels), and RANSAC
#: inliers for half of them.
MIN_POINTS = 64
#: At most about this many flow samples (larger frames are sampled more sparsely).
MAX_SAMPLES = 4096
#: RANSAC scores its hypotheses on this many of them.
SCORE_SAMPLES = 512


def _scale_shift(p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray]:
    """The least-squares ``s, t`` of ``q = s p + t`` for points ``(n, 2)``."""
    pc, qc = p - p.mean(0), q - q.mean(0)
    s = float((pc * qc).sum() / max(float((pc * pc).sum()), 1e-12))
    return s, q.mean(0) - s * p.mean(0)


def fit_motion(flow: np.ndarray, mask: np.ndarray, step: int = 4, *, tries: int = 64,
               threshold: float = 1.0) -> np.ndarray | None:
    """The zoom and shift (``3 x 3``, pixel coordinates: ``p -> s p + t``) that maps frame
    ``t`` onto the frame its ``flow`` ``(H, W, 2)`` points to (``p -> p + flow(p)``), fitted
    to the flow at every ``step``-th pixel (sparser on large frames: :data:`MAX_SAMPLES`) where ``mask`` ``(H, W)`` is True: RANSAC over
    ``tries`` pairs of samples (a fixed seed: the same video gives the same fit), inliers
    within ``threshold`` px, then least squares on the inliers. None when fewer than
    :data:`MIN_POINTS` samples, or inliers for fewer than half of them.

    No rotation: cameras seldom roll, and a similarity fit (OpenCV's
    ``estimateAffinePartial2D``) drifted by 0.7 degrees and 1% of scale over 24 frames of a
    pure pan (benchmarks/video.py's object clip), which rotated the canvas and raised the
    preset 3 network's style loss from 8% to 25% there. Rotation is left to the blend."""
    h, w = mask.shape
    step = max(step, math.ceil(math.sqrt(h * w / MAX_SAMPLES)))
    ys, xs = np.mgrid[step // 2: h: step, step // 2: w: step]
    keep = mask[ys, xs]
    n = int(keep.sum())
    if n < MIN_POINTS:
        return None
    p = np.stack([xs[keep], ys[keep]], axis=-1).astype(np.float64)
    q = p + flow[ys, xs][keep].astype(np.float64)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, n, (2, tries))
    dp, dq = p[i] - p[j], q[i] - q[j]
    s = (dp * dq).sum(1) / np.maximum((dp * dp).sum(1), 1e-12)  # (tries,)
    t = q[i] - s[:, None] * p[i]  # (tries, 2)
    far = (dp * dp).sum(1) >= 64.0  # pairs too close fix the scale badly
    # each hypothesis scored on a subset (a few hundred samples tell a dominant motion), the
    # best one's inliers found among all
    k = rng.choice(n, min(n, SCORE_SAMPLES), replace=False)
    err2 = ((s[:, None, None] * p[k][None] + t[:, None] - q[k][None]) ** 2).sum(-1)
    best = int(np.where(far, (err2 < threshold ** 2).sum(1), -1).argmax())
    inliers = ((s[best] * p + t[best] - q) ** 2).sum(-1) < threshold ** 2
    if int(inliers.sum()) < max(MIN_POINTS, n // 2):
        return None
    s1, t1 = _scale_shift(p[inliers], q[inliers])
    return np.array([[s1, 0.0, t1[0]], [0.0, s1, t1[1]], [0.0, 0.0, 1.0]])


def unexplained(flow: np.ndarray, motion: np.ndarray, pixels: float) -> np.ndarray:
    """How far ``flow`` ``(H, W, 2)`` is from the camera's ``motion`` (:func:`fit_motion` of
    it: ``p -> s p + t``), as a weight ``(H, W)`` float32 in ``[0, 1]``: the end-point
    distance between the two over ``pixels``, clipped at 1. 0 where the camera explains the
    motion, 1 where something moves on its own."""
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    dx = flow[..., 0] - ((motion[0, 0] - 1.0) * xs + motion[0, 2])
    dy = flow[..., 1] - ((motion[1, 1] - 1.0) * ys + motion[1, 2])
    return np.minimum(np.sqrt(dx * dx + dy * dy) / pixels, 1.0).astype(np.float32)


def warp_affine_tensor(image: Tensor, a: np.ndarray, size: tuple[int, int],
                       mode: str = "lanczos") -> Tensor:
    """``out(p) = image(a p)`` for the pixels ``p`` of an ``size`` ``(h, w)`` image: ``image``
    ``(N, C, H, W)`` (any device and float dtype), ``a`` a ``2 x 3`` (or ``3 x 3``) affine map
    of pixel coordinates, borders replicated; ``mode`` ``"bilinear"``, ``"bicubic"`` or
    ``"lanczos"`` (OpenCV's on a CPU; elsewhere ``grid_sample``'s, bicubic for lanczos)."""
    a = np.asarray(a, dtype=np.float64)[:2]
    h, w = size
    if image.device.type == "cpu" and image.dtype == torch.float32 and image.shape[1] <= 4:
        cv2 = _cv2()
        flags = cv2_interp(mode) | cv2.WARP_INVERSE_MAP
        return per_image(image, lambda im: cv2.warpAffine(
            im, a, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE))
    sh, sw = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    qx = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
    qy = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
    grid = torch.stack((qx * (2.0 / max(sw - 1, 1)) - 1.0, qy * (2.0 / max(sh - 1, 1)) - 1.0),
                       dim=-1)[None].to(image.device, image.dtype)
    return F.grid_sample(image, grid.expand(image.shape[0], -1, -1, -1),
                         mode=grid_mode(mode), padding_mode="border", align_corners=True)


class Anchor:
    """The running transform ``M_t`` from the current frame to the anchor frame's pixel
    coordinates (see the module), and the canvas it gives."""

    def __init__(self, grid: int = GRID) -> None:
        self.grid = grid
        self.m: np.ndarray | None = None
        #: How many times the anchor started again after the first frame (tests, benchmarks).
        self.restarts = 0

    def reset(self) -> None:
        """A new video: the next frame is the anchor."""
        self.m = None

    def update(self, motion: np.ndarray | None) -> None:
        """Chain the next frame's ``motion`` (:func:`fit_motion` from it to the previous
        frame; None: no fit, or no previous frame)."""
        if motion is None or self.m is None:
            self.restarts += self.m is not None
            self.m = np.eye(3)
            return
        m = self.m @ motion
        scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
        if not (1.0 / MAX_SCALE <= scale <= MAX_SCALE):
            self.restarts += 1
            m = np.eye(3)
        self.m = m

    def canvas(self, hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """``(C, (ch, cw))`` for a frame of ``hw``: ``C`` (``3 x 3``) maps the frame's pixels
        onto the canvas, the frame's footprint in anchor coordinates with its corner on a
        multiple of :attr:`grid` and its sides multiples of it."""
        assert self.m is not None, "update() first"
        h, w = hw
        corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]],
                           dtype=np.float64) @ self.m.T
        g = self.grid
        x0 = math.floor(corners[:, 0].min() / g) * g
        y0 = math.floor(corners[:, 1].min() / g) * g
        cw = math.ceil((corners[:, 0].max() + 1 - x0) / g) * g
        ch = math.ceil((corners[:, 1].max() + 1 - y0) / g) * g
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        return shift @ self.m, (ch, cw)

    def plan(self, hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The current frame's canvas (:meth:`canvas`) for a frame of ``hw``, or None where
        it is the frame itself (the anchor frame, with its sides on the grid)."""
        c, size = self.canvas(hw)
        return None if np.allclose(c, np.eye(3)) and size == hw else (c, size)

    @staticmethod
    def to_canvas(x: Tensor, plan: tuple[np.ndarray, tuple[int, int]] | None) -> Tensor:
        """``x`` ``(N, 3, H, W)`` resampled onto the canvas of ``plan`` (:meth:`plan`),
        bilinear: the input's kernel changed nothing measurable."""
        if plan is None:
            return x
        c, size = plan
        return warp_affine_tensor(x, np.linalg.inv(c), size, "bilinear").clamp_(0.0, 1.0)

    @staticmethod
    def from_canvas(y: Tensor, plan: tuple[np.ndarray, tuple[int, int]] | None,
                    hw: tuple[int, int]) -> Tensor:
        """The network's output on the canvas, resampled back onto the frame (``hw``) with
        Lanczos' 8 x 8 kernel on a CPU (bicubic elsewhere). This resampling is what softens
        the strokes: on benchmarks/video.py's pan clip the preset 3 network's style loss rose
        20% with a bicubic one, 4% with Lanczos."""
        if plan is None:
            return y
        return warp_affine_tensor(y.float(), plan[0], hw, "lanczos").to(y.dtype)


def stylize_planned(transform: Callable[[Tensor], Tensor], frames: Tensor,
                    plans: list[tuple[np.ndarray, tuple[int, int]] | None]) -> Tensor:
    """``frames`` ``(N, 3, H, W)`` through their canvases (``plans``, one per frame, from
    :meth:`Anchor.plan`), consecutive canvases of one size in one call of ``transform`` (a
    network runs a batch faster than its frames one by one: 30 against 38 ms a frame for the
    instant network at 256 px on one core)."""
    hw = (int(frames.shape[-2]), int(frames.shape[-1]))
    outs: list[Tensor] = []
    for _, run in itertools.groupby(range(len(plans)),
                                    key=lambda k: hw if plans[k] is None else plans[k][1]):
        ks = list(run)
        ys = transform(torch.cat([Anchor.to_canvas(frames[k:k + 1], plans[k]) for k in ks]))
        outs.extend(Anchor.from_canvas(y[None], plans[k], hw) for k, y in zip(ks, ys))
    return torch.cat(outs)
