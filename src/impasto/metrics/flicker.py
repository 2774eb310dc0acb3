"""Flicker of a stylised video: the warping error of Lai et al. 2018 ("Learning Blind Video
Temporal Consistency", eq. 8), measured against the input video it was made from.

For each pair of consecutive frames ``t, t+1``: the optical flow of the *input* frames
(:func:`~impasto.temporal.flow.optical_flow`, DIS) both ways, the occlusion mask ``M_t`` from
their forward-backward consistency (:func:`~impasto.temporal.flow.consistency_mask`: round
trip, leaving the frame, motion boundaries), and

    E_t = mean over the pixels of M_t and the 3 channels of (O_t - warp(O_{t+1}, F_{t->t+1}))^2

with ``O`` the stylised frames in ``[0, 1]`` RGB. The warping error is the mean of ``E_t``
over the pairs (a pair without consistent pixels, a cut, is left out and counted). The same
figure for the input video itself is the floor: what flow errors, resampling, lighting and
compression leave when nothing flickers. Lower is better; the ratio to the floor says how
much flicker stylisation added.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from impasto.errors import InputError

__all__ = ["FLICKER_NAME", "FlickerReport", "flicker", "warping_error"]

#: The name of the figure, as in reports and JSON.
FLICKER_NAME = "warping-error-dis-v1"


@dataclass
class FlickerReport:
    """The warping error of the stylised frames (``stylised``) and of the input's own
    (``floor``), both mean squared differences in ``[0, 1]``; ``pairs`` frame pairs scored,
    ``skipped`` pairs without consistent pixels, ``consistent`` the mean fraction of pixels in
    the masks, ``size`` ``(width, height)`` scored at, ``per_pair`` the stylised ``E_t``."""

    stylised: float
    floor: float
    frames: int
    pairs: int
    skipped: int
    consistent: float
    size: tuple[int, int]
    per_pair: list[float]

    @property
    def ratio(self) -> float:
        """``stylised / floor`` (inf when the floor is 0)."""
        return self.stylised / self.floor if self.floor > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": FLICKER_NAME, **asdict(self), "ratio": self.ratio}


def _hwc(frame: Tensor | np.ndarray) -> np.ndarray:
    """A frame ``(1, 3, H, W)`` / ``(3, H, W)`` tensor in ``[0, 1]`` or ``(H, W, 3)`` array
    (uint8 or ``[0, 1]`` float) as float32 ``(H, W, 3)`` in ``[0, 1]``."""
    if isinstance(frame, Tensor):
        t = frame.detach().float().cpu()
        return (t[0] if t.dim() == 4 else t).permute(1, 2, 0).numpy()
    a = np.asarray(frame)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def _masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(((a - b) ** 2)[mask].mean())


def warping_error(inputs: Iterable[Tensor | np.ndarray], outputs: Iterable[Tensor | np.ndarray],
                  *, flow: str = "dis", on_pair: Callable[[int], None] | None = None,
                  count_rest: Callable[[Iterator[Any]], int] | None = None) -> FlickerReport:
    """The warping error of the frames ``outputs`` guided by ``inputs`` (same count and size;
    see :func:`_hwc` for the layouts taken), and of ``inputs`` itself. :class:`InputError` for
    unequal counts (``count_rest`` counts what is left of the longer one for the message),
    fewer than two frames, or frames of another size."""
    from impasto.temporal.flow import consistency_mask, optical_flow, to_gray8, warp

    it_in, it_out = iter(inputs), iter(outputs)
    sty: list[float] = []
    inp: list[float] = []
    fractions: list[float] = []
    skipped = frames = 0
    prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    size = (0, 0)
    while True:
        a = next(it_in, None)
        b = next(it_out, None)
        if a is None or b is None:
            if a is not None or b is not None:
                more = 1 + (count_rest(it_in if a is not None else it_out) if count_rest else 0)
                n_in, n_out = (frames + more, frames) if a is not None else (frames, frames + more)
                raise InputError(f"the videos differ in length: the input has {n_in} frames, "
                                 f"the stylised video {n_out}")
            break
        x, y = _hwc(a), _hwc(b)
        if x.shape != y.shape:
            raise InputError(f"frame {frames}: the stylised frame is {y.shape[1]}x{y.shape[0]}, "
                             f"the input's {x.shape[1]}x{x.shape[0]}")
        size = (x.shape[1], x.shape[0])
        gray = to_gray8(x)
        if prev is not None:
            px, py, pg = prev
            fwd = optical_flow(pg, gray, flow)  # t -> t+1
            bwd = optical_flow(gray, pg, flow)
            mask = consistency_mask(fwd, bwd)
            fractions.append(float(mask.mean()))
            if mask.any():
                sty.append(_masked_mse(py, warp(y, fwd), mask))
                inp.append(_masked_mse(px, warp(x, fwd), mask))
            else:
                skipped += 1
            if on_pair is not None:
                on_pair(frames)
        prev = (x, y, gray)
        frames += 1
    if frames < 2:
        raise InputError(f"flicker needs at least 2 frames, the videos have {frames}")
    if not sty:
        raise InputError(f"no frame pair of the {frames} frames has pixels the flow can follow")
    return FlickerReport(stylised=float(np.mean(sty)), floor=float(np.mean(inp)), frames=frames,
                         pairs=len(sty), skipped=skipped, consistent=float(np.mean(fractions)),
                         size=size, per_pair=sty)


def flicker(input_video: str | os.PathLike[str], stylised_video: str | os.PathLike[str], *,
            progress: bool = False) -> tuple[FlickerReport, tuple[int, int] | None]:
    """:func:`warping_error` of the video file ``stylised_video`` against ``input_video``; the
    stylised frames are resized to the input's size where they differ (bicubic,
    :func:`~impasto.io.resizing.resize_tensor`). Returns the
    report and the stylised video's own ``(width, height)`` where it was resized (else None).
    :class:`InputError` (one line naming the file) for a video that cannot be read."""
    from impasto.io.video import probe_video, read_frames
    from impasto.temporal.flow import require_opencv

    require_opencv()
    src, sty = Path(input_video), Path(stylised_video)
    info_in, info_out = probe_video(src), probe_video(sty)
    size = info_in.size
    resized = info_out.size if info_out.size != size else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(info_in.frames - 1, 0) or None, unit="pair", dynamic_ncols=True)
    try:
        report = warping_error(
            read_frames(src), read_frames(sty, size), on_pair=(lambda _: bar.update(1))
            if bar is not None else None, count_rest=lambda it: sum(1 for _ in it))
    finally:
        if bar is not None:
            bar.close()
    return report, resized
