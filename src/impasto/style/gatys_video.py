"""Gatys style transfer on video, after Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer
for videos"): each frame's optimisation starts from the previous stylised frame warped by the
optical flow of the input frames, and a temporal loss holds it to that warped frame wherever
the flow is reliable (not occluded), so strokes move with the scene instead of shimmering.

* :func:`temporal_loss` / :class:`TemporalLoss`: Ruder et al.'s short-term temporal term,
  ``1/D sum_k c_k (x_k - w_k)^2`` over the ``D = C*H*W`` values of the image ``x`` (0-255
  scale, as the content loss's caffe features), ``w`` the warped previous output, ``c`` the
  non-occlusion mask;
* :func:`stylize_frames`: the per-frame driver on tensors (any frame source, any alignment
  function, so tests and other front ends can drive it);
* :func:`stylize_video`: a video file in, a video file out (frame rate and audio kept,
  written atomically), with a frame-counting progress bar.

The first frame runs the still image's full coarse-to-fine schedule; every later frame only
``frame_iterations`` at full size, because it starts from an already stylised image.
Occluded pixels (where the forward-backward flow check fails) start from the warped previous
output too, not from the content frame: a short schedule started from raw photo pixels leaves
them visibly less stylised than the rest of the frame (a patch that then shimmers), while the
warped output there is stylised texture from the neighbourhood; the temporal loss leaves those
pixels free, so the content and style terms repaint them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from impasto.errors import InputError
from impasto.io import DEFAULT_MAX_PIXELS, load_image, resize_tensor, to_tensor
from impasto.style.color import luminance_image
from impasto.style.gatys import GatysConfig, GatysStyleTransfer, StepInfo, _fit_longest

__all__ = [
    "DEFAULT_FRAME_ITERATIONS",
    "DEFAULT_TEMPORAL_WEIGHT",
    "OCCLUDED_FILLS",
    "TemporalLoss",
    "flow_aligner",
    "stylize_frames",
    "stylize_video",
    "temporal_loss",
]

log = logging.getLogger(__name__)

#: Weight of the temporal term, on the scale of :class:`~impasto.style.GatysConfig`'s content
#: and style weights (Ruder et al.'s default, with the same content and style weights).
DEFAULT_TEMPORAL_WEIGHT = 1e3
#: L-BFGS iterations of every frame after the first, at full size only.
DEFAULT_FRAME_ITERATIONS = 40
#: Where occluded pixels of a later frame start from: the warped previous output, or the
#: current content frame.
OCCLUDED_FILLS = ("warped", "content")

#: ``align(previous_frame, frame, previous_output) -> (warped_output, mask)``: the previous
#: output ``(1, 3, H, W)`` warped into ``frame``'s geometry, and the non-occlusion mask
#: ``(H, W)`` in ``[0, 1]`` (1: the flow is reliable there); frames ``(1, 3, H, W)`` in
#: ``[0, 1]``, all at the output's size.
Aligner = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def temporal_loss(image: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Ruder et al. 2016, eq. 7: ``1/D sum c (x - w)^2`` over the ``D = C*H*W`` values of
    ``image`` ``(1, C, H, W)`` in ``[0, 1]`` (compared on a 0-255 scale), ``target`` the same
    shape, ``mask`` ``(H, W)`` in ``[0, 1]``. A float32 scalar."""
    diff = (image.float() - target.float()) * 255.0
    return (mask.float() * diff.pow(2)).sum() / diff.numel()


class TemporalLoss(nn.Module):
    """``weight * temporal_loss(image, target, mask)``; the target (the warped previous output)
    and mask are resized to the image where their sizes differ (a coarse scale)."""

    def __init__(self, weight: float, target: Tensor, mask: Tensor) -> None:
        super().__init__()
        self.weight = float(weight)
        self.target = target.detach().float()
        self.mask = mask.detach().float()

    def forward(self, image: Tensor) -> Tensor:
        hw = tuple(image.shape[-2:])
        target, mask = self.target.to(image.device), self.mask.to(image.device)
        if tuple(target.shape[-2:]) != hw:
            target = resize_tensor(target, hw)
            mask = resize_tensor(mask[None, None], hw)[0, 0].clamp(0, 1)
        return self.weight * temporal_loss(image, target, mask)


def flow_aligner() -> Aligner:
    """The default :data:`Aligner`: OpenCV DIS optical flow on the input frames
    (:mod:`impasto.temporal.flow`), backward warping of the previous output, and the
    forward-backward consistency mask."""
    from impasto.temporal.flow import consistency_mask, optical_flow, require_opencv, warp_tensor

    require_opencv()

    def align(previous: Tensor, frame: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
        to_prev = optical_flow(frame, previous)  # frame(x) ~ previous(x + to_prev(x))
        to_frame = optical_flow(previous, frame)
        warped = warp_tensor(output, to_prev)
        return warped, torch.from_numpy(consistency_mask(to_prev, to_frame)).float()

    return align


def stylize_frames(
    transfer: GatysStyleTransfer,
    frames: Iterable[Tensor],
    styles: Sequence[Tensor],
    *,
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
    frame_iterations: int = DEFAULT_FRAME_ITERATIONS,
    temporal: bool = True,
    align: Aligner | None = None,
    occluded: str = "warped",
    callback: Callable[[int, StepInfo], None] | None = None,
    abort: Callable[[], bool] | None = None,
    seed: int | None = None,
) -> Iterator[Tensor]:
    """Stylises ``frames`` (each RGB ``(1, 3, H, W)`` in ``[0, 1]``) one by one, yielding each
    result ``(1, 3, h, w)`` float32 on the CPU (longest side ``transfer.config.size``).

    With ``temporal`` (Ruder et al. 2016), the first frame runs ``transfer``'s full schedule
    and each later one ``frame_iterations`` at full size, started from the previous output
    warped by ``align`` (default :func:`flow_aligner`, on the frames at the output's size)
    with :class:`TemporalLoss` of ``temporal_weight`` (0: the warm start alone). Occluded
    pixels start from the warped output (``occluded="warped"``) or the content frame
    (``"content"``). Without ``temporal`` every frame is a still: the full schedule from
    ``transfer.config.init``. ``callback(frame_index, step)`` follows every iteration;
    ``abort`` stops after the current frame's current iteration (that frame is yielded).
    """
    if occluded not in OCCLUDED_FILLS:
        raise InputError(f"occluded must be one of {', '.join(OCCLUDED_FILLS)}, not {occluded!r}")
    if not (temporal_weight >= 0 and temporal_weight < float("inf")):
        raise InputError(f"temporal weight must be a non-negative number, not {temporal_weight}")
    if frame_iterations < 1:
        raise InputError(f"frame iterations must be at least 1, not {frame_iterations}")
    if temporal and align is None:
        align = flow_aligner()  # before any frame: one line if OpenCV is missing
    return _frames(transfer, frames, styles, temporal_weight, frame_iterations, temporal, align,
                   occluded, callback, abort, seed)


def _frames(transfer: GatysStyleTransfer, frames: Iterable[Tensor], styles: Sequence[Tensor],
            temporal_weight: float, frame_iterations: int, temporal: bool,
            align: Aligner | None, occluded: str,
            callback: Callable[[int, StepInfo], None] | None, abort: Callable[[], bool] | None,
            seed: int | None) -> Iterator[Tensor]:
    """:func:`stylize_frames` after its checks."""
    cfg = transfer.config
    later = GatysStyleTransfer(replace(cfg, scales=1, iterations=frame_iterations),
                               encoder=transfer.encoder)
    later.upsample = transfer.upsample
    luminance = cfg.preserve_color == "luminance"
    previous: Tensor | None = None
    output: Tensor | None = None
    for k, frame in enumerate(frames):
        frame = frame.detach().float().cpu()
        frame = resize_tensor(frame, _fit_longest(frame, cfg.size))

        def step(info: StepInfo, k: int = k) -> None:
            if callback is not None:
                callback(k, info)

        if not temporal or output is None:
            result = transfer.run(frame, styles, callback=step, abort=abort, seed=seed)
        else:
            assert previous is not None and align is not None
            warped, mask = align(previous, frame, output)
            warped, mask = warped.float().cpu().clamp(0, 1), mask.float().cpu().clamp(0, 1)
            init = warped if occluded == "warped" else mask * warped + (1 - mask) * frame
            target = luminance_image(warped) if luminance else warped
            extra = TemporalLoss(temporal_weight, target, mask) if temporal_weight else None
            result = later.run(frame, styles, init=init, extra_loss=extra, callback=step,
                               abort=abort, seed=seed)
        yield result
        previous, output = frame, result
        if abort is not None and abort():
            return


def stylize_video(
    source: str | os.PathLike[str],
    style: Any,
    output: str | os.PathLike[str],
    *,
    transfer: GatysStyleTransfer | None = None,
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
    frame_iterations: int = DEFAULT_FRAME_ITERATIONS,
    temporal: bool = True,
    align: Aligner | None = None,
    occluded: str = "warped",
    progress: bool = False,
    callback: Callable[[int, StepInfo], None] | None = None,
    abort: Callable[[], bool] | None = None,
    audio: bool = True,
    quality: float = 8.0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **options: Any,
) -> Path:
    """Paints every frame of the video ``source`` in the style of ``style`` (one image or a
    list to blend) into the video ``output`` (container by suffix, H.264 for .mp4), with
    :func:`stylize_frames` (Ruder et al. 2016). ``options`` are :class:`GatysConfig` fields
    (``size``: the frames' longest side, default 512; ``iterations``: the first frame's
    schedule), or pass a prebuilt ``transfer``. The frame rate is kept, and the audio track
    where ``audio`` and there is one. Written to a temporary file and renamed when complete;
    an aborted run keeps the frames done. :class:`InputError` for a video that cannot be
    decoded or has no frames (nothing is written). Returns ``output``::

        import impasto
        impasto.stylize_video("clip.mp4", "painting.jpg", "out.mp4", size=256)
    """
    from impasto.io.video import OUTPUT_CODECS, VideoWriter, frame_size, probe_video, read_frames

    src, dst = Path(source), Path(output)
    if dst.suffix.lower() not in OUTPUT_CODECS:
        raise InputError(f"{dst}: a video input needs a video output ({', '.join(OUTPUT_CODECS)})")
    if transfer is not None and options:
        raise ValueError("pass options or a prebuilt transfer, not both")
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    config = transfer.config if transfer is not None else GatysConfig(**options)
    config.validate(len(styles_in))
    info = probe_video(src)
    styles = [to_tensor(load_image(s, max_pixels=max_pixels)) for s in styles_in]
    w, h = frame_size(info.size, config.size)
    if w < 2 or h < 2:
        raise InputError(f"{src}: frames of {info.size[0]}x{info.size[1]} are too small")
    # The frames are read at the output's size (even sides, for H.264), so the optimisation
    # runs at exactly that size.
    sized = replace(config, size=max(w, h))
    base = GatysStyleTransfer(sized, encoder=transfer.encoder if transfer else None)
    if transfer is not None:
        base.instant, base.upsample = transfer.instant, transfer.upsample
    base.plan((h, w), [tuple(s.shape[-2:]) for s in styles])  # InputError before any output
    shown = {"bar": None, "frame": -1}

    def on_step(k: int, step: StepInfo) -> None:
        bar = shown["bar"]
        if bar is not None and (k != shown["frame"] or step.iteration % 5 == 0):
            shown["frame"] = k
            bar.set_postfix_str(f"it {step.step}/{step.total_steps} loss {step.loss:.4g}")
        if callback is not None:
            callback(k, step)

    results = stylize_frames(base, read_frames(src, (w, h)), styles,
                             temporal_weight=temporal_weight, frame_iterations=frame_iterations,
                             temporal=temporal, align=align, occluded=occluded,
                             callback=on_step, abort=abort)  # checks its options first
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = shown["bar"] = tqdm(total=info.frames or None, unit="frame", dynamic_ncols=True)
    try:
        with VideoWriter(dst, (w, h), info.fps, quality=quality,
                         audio_from=src if audio and info.has_audio else None) as writer:
            for out in results:
                writer.write(out)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return dst
