"""Flow-guided temporal consistency for feed-forward stylisation of video.

With ``stabilize`` (the default) each frame is first stylised in the coordinates of an anchor
frame that follows the camera (:mod:`impasto.temporal.stabilize`), so that the network paints
the same strokes where only the camera moved; then the blend below settles the rest. With
``residual`` it settles only the rest: its weight is scaled by how far the flow is from the
camera's fitted motion (:func:`~impasto.temporal.stabilize.unexplained`), since blending
strokes that already line up only softens them (not the default: see
:data:`DEFAULT_RESIDUAL`).

Each new stylised frame ``y_t`` is blended with the previous *output* warped onto it by the
optical flow of the *input* frames, inside the pixels where that flow passes the
forward-backward check (:func:`~impasto.temporal.flow.consistency_mask`)::

    o_t = y_t + strength * M_t * (warp(o_{t-1}, F_{t->t-1}) - y_t)

an exponential moving average along motion trajectories: strokes that a network paints
differently on every frame settle, while what the flow cannot follow (occlusions, motion
boundaries, new content at the borders) is the network's own frame. The warp is Lanczos'
(:data:`WARP`): each warp softens the previous output a little, and the softening
accumulates along the average.

Averaging two stroke patterns that do not line up lowers their contrast (two uncorrelated
textures mixed with weights ``1-w`` and ``w`` keep ``sqrt((1-w)^2 + w^2)`` of their standard
deviation, 0.71 at ``w = 0.5``), which is what softens the style. With ``detail`` (the default
when the camera is not followed), the blend's fine detail (what a ``DETAIL_CELL``-pixel low-pass leaves) is rescaled to the local
contrast of the network's frame, by at most that factor's inverse (the idea of the
variance-preserving blending of Heitz and Neyret 2018, measured per neighbourhood)::

    b = y_t + w (warp(o_{t-1}) - y_t),   w = strength * M_t
    o_t = L(b) + g (b - L(b)),   g = clamp(sqrt(L((y_t - L(y_t))^2) / L((b - L(b))^2)),
                                        1, 1 / sqrt((1-w)^2 + w^2))

Where ``w = 0`` it is the network's frame, and where ``w = 1`` the warped previous output.
Following the camera, the strokes to blend mostly line up, and the plain average did as well
or better (benchmarks/video.py, strength 0.3: the style-loss rise of the preset 3 network
+7.3% / +10.1% on the two clips against +8.4% / +16.6% keeping the detail, of the painting
network +14.2% / +5.8% against +13.6% / +5.3%), for 5 ms a frame less at 256 px, so
``detail`` is then off unless asked for.
With ``feed`` the warped previous output is also mixed into the network's input, ``x_t +
feed * M_t * (warp(o_{t-1}) - x_t)`` (the idea of Gupta et al. 2017 and Ruder et al. 2016's initialisation
for networks that take only an RGB frame); it needs frames one at a time.

:class:`TemporalConfig` holds the settings; :class:`TemporalStylizer` wraps a batch transform
``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` and stylises a video's frames in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.errors import InputError
from impasto.temporal.flow import (
    FLOW_METHODS,
    consistency_mask,
    optical_flow,
    require_opencv,
    to_gray8,
    warp_tensor,
)
from impasto.temporal.stabilize import Anchor, fit_motion, stylize_planned, unexplained

__all__ = ["DEFAULT_RESIDUAL", "DEFAULT_STRENGTH", "WARP", "TemporalConfig", "TemporalStylizer",
           "keep_detail", "temporal_config"]

#: The blend strength ``--temporal`` uses when given no value. With ``stabilize`` (the
#: default) the blend only has to settle what the camera's motion does not explain: on
#: benchmarks/video.py's 8 rows 0.3 cut the warping error 4-15x, where the blend alone needed
#: 0.5 for 3.5x and raised the style loss 4-10 times as much (docs/video.md). With the
#: Lanczos warp (:data:`WARP`) 0.35 cut it 4.4-16.1x for a style-loss rise of +0.5% to +8.6%,
#: against 4.0-15.1x and +0.9% to +9.9% at 0.3 (on the preset's object clip 0.25 gave +11.5%).
DEFAULT_STRENGTH = 0.35
#: ``residual``'s default: off (the blend's weight is the same wherever the flow passes its
#: check). 1 pixel kept the style better on benchmarks/video.py's noise-free clips (style-loss
#: rise +0.9% to +6.7% on 7 of 8 rows at strength 0.5, against up to +13.2%, both with the
#: bicubic warp; with the Lanczos warp, :data:`WARP`, the default keeps all 8 within 10%),
#: but leaves flicker that is not motion alone: a transform that adds fresh noise to every
#: frame of a pan (a network amplifying a real camera's sensor noise) kept 98% of its warping
#: error, against 41% with the blend everywhere at 0.3 (tests/temporal/test_temporal_blend.py).
DEFAULT_RESIDUAL = 0.0

#: How the previous output is warped onto the new frame (:func:`~impasto.temporal.flow.warp`;
#: bicubic off a CPU). Lanczos' 8 x 8 kernel softens the strokes least: on
#: benchmarks/video.py's 8 rows (the defaults otherwise) the style-loss rise against frame by
#: frame was +0.9% to +9.9% against +2.1% to +13.2% with the bicubic warp (the trained
#: network's pan +6.0% against +13.2%, the preset's +0.9% against +4.9%), for the same
#: flicker cut within 4% (docs/video.md), for 3 ms a frame more at 256 px on one core (4.4
#: against 1.4 ms: benchmarks/video_costs.py).
WARP = "lanczos"

#: The low-pass of ``keep_detail``: the mean over cells of this many pixels, upsampled
#: bilinearly (cheap on any device; 4 measured better than 8 and than a Gaussian of sigma 3).
DETAIL_CELL = 4


def _pool(x: Tensor, cell: int = DETAIL_CELL) -> Tensor:
    """``x`` ``(N, C, H, W)`` averaged over ``cell`` x ``cell`` blocks (edges replicated to a
    whole number of cells)."""
    h, w = x.shape[-2:]
    if h % cell or w % cell:
        x = F.pad(x, (0, (-w) % cell, 0, (-h) % cell), mode="replicate")
    return F.avg_pool2d(x, cell)


def _up(x: Tensor, hw: tuple[int, int], cell: int = DETAIL_CELL) -> Tensor:
    """Cell values back at full resolution ``hw`` (bilinear; the channels as a batch of
    single-channel images, which PyTorch's CPU kernel upsamples about 3x faster)."""
    n, c, h, w = x.shape
    up = F.interpolate(x.reshape(n * c, 1, h, w), scale_factor=cell, mode="bilinear",
                       align_corners=False).reshape(n, c, h * cell, w * cell)
    return up[..., : hw[0], : hw[1]]


def _low_pass(x: Tensor, cell: int = DETAIL_CELL) -> Tensor:
    """The blend's low-pass: ``x`` averaged over ``cell`` x ``cell`` blocks and upsampled
    back bilinearly."""
    return _up(_pool(x, cell), x.shape[-2:], cell)


def keep_detail(blend: Tensor, frame: Tensor, weight: Tensor) -> Tensor:
    """``blend`` (``frame`` mixed with another image by ``weight``, ``(N, 1, H, W)`` in
    ``[0, 1]``) with its fine detail rescaled to ``frame``'s local contrast, by a gain between
    1 and ``1 / sqrt((1-w)^2 + w^2)`` (see the module). The local energies and their ratio
    are found per cell and the gain upsampled: a few passes over the image."""
    hw = blend.shape[-2:]
    low = _low_pass(blend)
    detail = blend - low
    fine = frame - _low_pass(frame)
    gain = (_pool(fine.square_()) / _pool(detail.square()).add_(1e-6)).sqrt_()
    most = ((1.0 - weight).square() + weight.square()).rsqrt_()
    gain = torch.minimum(_up(gain, hw).clamp_(min=1.0), most)
    return low.addcmul_(detail, gain)


@dataclass(frozen=True)
class TemporalConfig:
    """``strength`` in ``[0, 1]``: weight of the warped previous output in each output frame
    (0: frame by frame; 1: keep whatever the flow can carry); ``detail``: keep the network's
    local contrast in the blend (:func:`keep_detail`; False: the plain average; None, the
    default: only where the camera is not followed, see the module);
    ``residual`` (pixels; with ``stabilize``, not ``feed``): blend only where something moves,
    with the weight scaled by the flow's distance from the camera's fitted motion over this
    many pixels, clipped at 1 (0: the same weight everywhere; frames where the anchor starts
    again blend everywhere, to soften the repainting);
    ``feed`` in ``[0, 1]``: weight of the warped previous output mixed into the network's input
    (0: off; measured worse than the blend alone); ``flow``: a method of
    :func:`~impasto.temporal.flow.optical_flow` (DIS's fast preset: two flows per frame cost a
    few ms at 256 px); ``stabilize``: stylise each frame in the coordinates of an anchor frame,
    following the camera (:mod:`impasto.temporal.stabilize`; frames then go through the
    network one at a time)."""

    strength: float = DEFAULT_STRENGTH
    feed: float = 0.0
    flow: str = "dis-fast"
    detail: bool | None = None
    residual: float = DEFAULT_RESIDUAL
    stabilize: bool = True

    def validate(self) -> TemporalConfig:
        for name in ("strength", "feed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise InputError(f"temporal {name} must lie in [0, 1], not {v}")
        r = self.residual
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0.0):
            raise InputError(f"temporal residual must be a number of pixels >= 0, not {r}")
        if self.flow not in FLOW_METHODS:
            raise InputError(f"unknown flow method {self.flow!r}: {', '.join(FLOW_METHODS)}")
        require_opencv()
        return self


def temporal_config(value: float | TemporalConfig | None | bool) -> TemporalConfig | None:
    """What ``apply_video(temporal=...)`` takes: None/False (off), True (the defaults), a
    strength, or a :class:`TemporalConfig`; returns a checked config or None."""
    if value is None or value is False:
        return None
    if value is True:
        return TemporalConfig().validate()
    if isinstance(value, TemporalConfig):
        return value.validate()
    if isinstance(value, (int, float)):
        return TemporalConfig(strength=float(value)).validate()
    raise InputError(f"temporal must be a strength in [0, 1] or a TemporalConfig, not {value!r}")


class TemporalStylizer:
    """Stylises the frames of one video in order with ``transform``, blending each with the
    previous output warped by the input's flow (see the module). Call it with consecutive
    batches ``(N, 3, H, W)`` in ``[0, 1]``; it returns the output frames of the batch. One
    instance per video (it keeps the previous frame)."""

    def __init__(self, transform: Callable[[Tensor], Tensor], config: TemporalConfig) -> None:
        self.transform = transform
        self.config = config.validate()
        self._prev_gray: np.ndarray | None = None
        self._prev_out: Tensor | None = None
        #: The camera's motion since the anchor frame (with ``stabilize``).
        self.anchor = Anchor()
        self._detail = self.config.detail if self.config.detail is not None \
            else not self.config.stabilize

    def reset(self) -> None:
        """Forget the previous frame (a new video, or a cut)."""
        self._prev_gray = self._prev_out = None
        self.anchor.reset()

    def _carry(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(flow t -> t-1 (H, W, 2), consistent-pixel mask (H, W) bool)`` from the previous
        input frame to the one whose luminance is ``gray``; None for the first frame. Input
        frames only: the flows of a whole batch are found before the network runs."""
        if self._prev_gray is None or self._prev_gray.shape != gray.shape:
            return None
        back = optical_flow(gray, self._prev_gray, self.config.flow)  # t -> t-1
        fwd = optical_flow(self._prev_gray, gray, self.config.flow)  # t-1 -> t
        return back, consistency_mask(back, fwd)

    def _warped(self, carried: tuple[np.ndarray, np.ndarray], like: Tensor
                ) -> tuple[Tensor, Tensor] | None:
        """The previous output warped onto the new frame ``(1, 3, H, W)`` and the mask ``(1, 1,
        H, W)``, on ``like``'s device and dtype; None if there is none or the sizes differ."""
        flow, mask = carried
        if self._prev_out is None or self._prev_out.shape[-2:] != like.shape[-2:] \
                or flow.shape[:2] != like.shape[-2:]:
            return None
        warped = warp_tensor(self._prev_out.to(like.device, like.dtype), flow, mode=WARP)
        m = torch.from_numpy(mask).to(device=like.device, dtype=like.dtype)[None, None]
        return warped, m

    def _follow(self, carried: list, hw: tuple[int, int]) -> tuple[list, list]:
        """The camera's fits and the canvases (:meth:`Anchor.plan`) of a batch, from its
        input's flows alone: ``(fits, plans)``, a fit None where there is none or where the
        anchor starts again (a new anchor repaints everything: no residual weighting there)."""
        fits, plans = [], []
        for c in carried:
            before = self.anchor.restarts
            fit = None if c is None else fit_motion(*c)
            self.anchor.update(fit)
            fits.append(None if self.anchor.restarts != before else fit)
            plans.append(self.anchor.plan(hw))
        return fits, plans

    def __call__(self, frames: Tensor) -> Tensor:
        carried = []
        for f in frames:  # the input's flows: they need no output
            gray = to_gray8(f)
            carried.append(self._carry(gray))
            self._prev_gray = gray
        hw = (int(frames.shape[-2]), int(frames.shape[-1]))
        fits, plans = self._follow(carried, hw) if self.config.stabilize \
            else ([None] * len(carried), None)
        feed = self.config.feed > 0.0
        residual = 0.0 if feed else self.config.residual  # (not with feed: see the config)
        if feed:  # each frame's input needs the previous output
            ys = None
        elif plans is not None:
            ys = stylize_planned(self.transform, frames, plans)
        else:
            ys = self.transform(frames)  # the network keeps its batches
        outs = []
        for i, carry in enumerate(carried):
            w = None  # the previous output warped onto this frame, and the mask
            if ys is None:
                x = frames[i : i + 1]
                w = self._warped(carry, x) if carry is not None else None
                xin = x if w is None else x + (self.config.feed * w[1]) * (w[0] - x)
                y = self.transform(xin) if plans is None else \
                    stylize_planned(self.transform, xin, plans[i : i + 1])
            else:
                y = ys[i : i + 1]
            if carry is None or self.config.strength <= 0.0:
                w = None  # no warp when not blending
            elif w is None:
                w = self._warped(carry, y)
            else:  # the feed's warp serves the blend: the same output, flow and size
                w = (w[0].to(y), w[1].to(y))
            if w is not None:
                weight = self.config.strength * w[1]
                if residual > 0 and fits[i] is not None:
                    r = unexplained(carry[0], fits[i], residual)
                    weight = weight * torch.from_numpy(r).to(weight)[None, None]
                blend = y + weight * (w[0] - y)
                y = keep_detail(blend, y, weight) if self._detail else blend
            o = y.clamp(0.0, 1.0)
            self._prev_out = o.detach()
            outs.append(o)
        return torch.cat(outs)
