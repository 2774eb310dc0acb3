"""Dense optical flow between video frames, backward warping and occlusion masks.

* :func:`optical_flow` -- OpenCV's DIS flow (Kroeger et al. 2016, "Fast Optical Flow using
  Dense Inverse Search"), ``(H, W, 2)`` float32 pixels, such that ``a(x) ~ b(x + flow(x))``;
* :func:`warp` / :func:`warp_tensor` -- backward warping of ``b`` onto ``a``'s grid by that
  flow (``cv2.remap`` for numpy, ``grid_sample`` for tensors on any device);
* :func:`consistency_mask` -- the forward-backward check of Sundaram et al. 2010 as used by
  Ruder et al. 2016 ("Artistic style transfer for videos"), with their motion-boundary test,
  and pixels that leave the frame: ``True`` where the flow can be trusted.

Why DIS and not Farneback (both ship with ``opencv-python-headless``, neither needs weights):
on a 256 x 256 photo moved by a known shift and 2% zoom (``benchmarks/video.py``,
``flow_choice``), DIS (medium preset) finds the motion to 0.087 px (mean end-point error)
against Farneback's 0.38 px, keeps 95% of the pixels through the consistency check against
86%, and takes about 7 ms against 12 ms on one CPU thread; its warping error (8.4e-4) is that
of the true motion (8.5e-4, bilinear resampling's own), Farneback's 8.9e-4. DIS's fast preset
(0.16 px, 1.3 ms) serves the per-frame blend of :mod:`impasto.temporal.blend`. docs/video.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from impasto.errors import InputError

__all__ = ["FLOW_METHODS", "consistency_mask", "flow_grid", "optical_flow", "require_opencv",
           "to_gray8", "warp",
           "warp_tensor"]

#: Flow methods :func:`optical_flow` knows; ``dis`` is the default.
FLOW_METHODS = ("dis", "dis-fast", "farneback")


def require_opencv() -> None:
    """:class:`InputError` (one line: how to install it) if OpenCV is missing."""
    _cv2()


def _cv2():
    try:
        import cv2
    except ImportError:
        raise InputError("optical flow needs OpenCV: pip install 'impasto[video]' "
                         "(opencv-python-headless)") from None
    cv2.setNumThreads(1)  # frames are small; threads cost more than they gain here
    return cv2


def to_gray8(frame: np.ndarray | Tensor) -> np.ndarray:
    """An RGB frame as uint8 luminance ``(H, W)``: ``(H, W, 3)`` uint8 in ``[0, 255]`` or float
    in ``[0, 1]``, or a tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in ``[0, 1]``."""
    if isinstance(frame, Tensor):
        t = frame.detach().float().cpu()
        if t.dim() == 4:
            t = t[0]
        frame = t.permute(1, 2, 0).numpy()
    a = np.asarray(frame)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 3:
        a = _cv2().cvtColor(np.ascontiguousarray(a[..., :3]), _cv2().COLOR_RGB2GRAY)
    return a


def optical_flow(a: np.ndarray | Tensor, b: np.ndarray | Tensor, method: str = "dis"
                 ) -> np.ndarray:
    """Dense flow from frame ``a`` to frame ``b`` (same size; see :func:`to_gray8` for the
    layouts taken): ``(H, W, 2)`` float32, ``(dx, dy)`` in pixels, with ``a(x) ~ b(x + flow)``.
    ``method``: ``"dis"`` (default, medium preset), ``"dis-fast"`` (DIS's fast preset: about
    5x quicker, twice the end-point error) or ``"farneback"``."""
    cv2 = _cv2()
    ga, gb = to_gray8(a), to_gray8(b)
    if ga.shape != gb.shape:
        raise InputError(f"optical flow needs frames of one size, not {ga.shape} and {gb.shape}")
    if method in ("dis", "dis-fast"):
        preset = cv2.DISOpticalFlow_PRESET_MEDIUM if method == "dis" else \
            cv2.DISOpticalFlow_PRESET_FAST
        flow = cv2.DISOpticalFlow_create(preset).calc(ga, gb, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, pyr_scale=0.5, levels=4, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    else:
        raise InputError(f"unknown flow method {method!r}: {', '.join(FLOW_METHODS)}")
    return np.ascontiguousarray(flow, dtype=np.float32)


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def cv2_interp(mode: str) -> int:
    """OpenCV's interpolation flag for ``mode``: ``"bicubic"``, ``"lanczos"`` (8 x 8), else
    bilinear."""
    cv2 = _cv2()
    return {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}.get(mode,
                                                                          cv2.INTER_LINEAR)


def grid_mode(mode: str) -> str:
    """``grid_sample``'s mode for ``mode``: it has no Lanczos, so bicubic for that."""
    return "bicubic" if mode == "lanczos" else mode


def _remap(image: np.ndarray, mx: np.ndarray, my: np.ndarray, mode: str) -> np.ndarray:
    """``out(x) = image(mx(x), my(x))`` (OpenCV's remap), borders replicated."""
    return _cv2().remap(np.ascontiguousarray(image), mx, my, interpolation=cv2_interp(mode),
                        borderMode=_cv2().BORDER_REPLICATE)


def warp(image: np.ndarray, flow: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """Backward warp: ``out(x) = image(x + flow(x))``, borders replicated; ``mode``
    ``"bilinear"``, ``"bicubic"`` (OpenCV's, the same as ``grid_sample``'s, a = -0.75) or
    ``"lanczos"`` (OpenCV's 8 x 8 Lanczos kernel: the least blur).
    ``image``: ``(H, W)`` or ``(H, W, C)`` (C <= 4) numpy, any float or uint8 dtype (kept);
    ``flow``: ``(H, W, 2)`` as :func:`optical_flow` gives from the frame warped *to*."""
    return _remap(image, *_maps(flow), mode)


def per_image(image: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """``fn`` (an OpenCV operation) on each image of ``image`` ``(N, C, H, W)`` (float32 on
    the CPU) as an ``(H, W, C)`` array; the results as ``(N, C, H', W')``."""
    out = np.stack([fn(np.ascontiguousarray(im.permute(1, 2, 0).numpy()))
                    for im in image.detach()])
    if out.ndim == 3:  # OpenCV returns one channel as (H, W)
        out = out[..., None]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def flow_grid(flow: np.ndarray | Tensor, device: torch.device | str | None = None) -> Tensor:
    """The ``grid_sample`` grid ``(1, H, W, 2)`` in ``[-1, 1]`` (``align_corners=True``) that
    samples at ``x + flow(x)``."""
    f = torch.as_tensor(np.asarray(flow) if not isinstance(flow, Tensor) else flow,
                        dtype=torch.float32, device=device)
    h, w = f.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=f.device),
                            torch.arange(w, dtype=torch.float32, device=f.device), indexing="ij")
    gx = (xs + f[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + f[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)[None]


def warp_tensor(image: Tensor, flow: np.ndarray | Tensor, mode: str = "bilinear") -> Tensor:
    """:func:`warp` for tensors: ``image`` ``(N, C, H, W)`` (any device and float dtype),
    ``flow`` ``(H, W, 2)`` (numpy or tensor), borders replicated; ``mode``: ``"bilinear"``,
    ``"bicubic"`` (sharper; may overshoot the input's range) or ``"lanczos"`` (OpenCV's on a
    CPU; ``grid_sample``'s bicubic elsewhere, which has no Lanczos)."""
    if image.device.type == "cpu" and image.dtype == torch.float32 and image.shape[1] <= 4 \
            and not (image.requires_grad and torch.is_grad_enabled()):
        # :func:`warp` (OpenCV's remap): the same sampling, 2-3x faster on a CPU
        f = flow.detach().cpu().numpy() if isinstance(flow, Tensor) else np.asarray(flow)
        return per_image(image, lambda im: warp(im, f, mode))
    grid = flow_grid(flow, image.device).to(image.dtype).expand(image.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(image, grid, mode=grid_mode(mode),
                                           padding_mode="border", align_corners=True)


def consistency_mask(forward: np.ndarray, backward: np.ndarray, *, motion_boundaries: bool = True,
                     ) -> np.ndarray:
    """Where the flow ``forward`` (frame t to t', ``(H, W, 2)``) can be trusted, given
    ``backward`` (t' to t): ``(H, W)`` bool, ``True`` for consistent pixels.

    A pixel fails (Sundaram et al. 2010; Ruder et al. 2016, eq. 4-5) where the round trip does
    not come back, ``|w + w^|^2 > 0.01 (|w|^2 + |w^|^2) + 0.5`` with ``w = forward(x)`` and
    ``w^ = backward(x + w)``; where it lands outside frame t'; and, with ``motion_boundaries``,
    where the flow changes sharply, ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002``."""
    h, w = forward.shape[:2]
    mx, my = _maps(forward)  # once, for the warp and the bounds (3.0 -> 2.7 ms at 256 px)
    back = _remap(backward, mx, my, "bilinear")
    s = forward + back
    sq = lambda v: v[..., 0] ** 2 + v[..., 1] ** 2
    fwd2 = sq(forward)
    ok = sq(s) <= 0.01 * (fwd2 + sq(back)) + 0.5
    ok &= (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    if motion_boundaries:
        gy_u, gx_u = np.gradient(forward[..., 0])
        gy_v, gx_v = np.gradient(forward[..., 1])
        grad = gx_u ** 2 + gy_u ** 2 + gx_v ** 2 + gy_v ** 2
        ok &= grad <= 0.01 * fwd2 + 0.002
    return ok
