"""Stylise files: an image, a folder of images or a video, through a feed-forward network.

:func:`apply_image`, :func:`apply_folder` (batches of same-size images, one output per input
under the same relative name) and :func:`apply_video` (:mod:`impasto.io.video`: the frame
rate is kept, and the audio track is copied where there is one) take a ``transform``: any
callable from a batch tensor ``(N, 3, H, W)`` in ``[0, 1]`` to a batch tensor, usually an
:class:`~impasto.infer.runner.InferenceRunner`. Before they start, folders and videos tell a
transform with an ``expect`` method (a runner) which batch shapes are coming, and how many
(:meth:`~impasto.infer.runner.InferenceRunner.expect`).

Outputs are written atomically (a temporary file in the target folder, then a rename).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from impasto.errors import InputError
from impasto.infer.compile_policy import Work, batch_work
from impasto.io import (
    DEFAULT_MAX_PIXELS,
    SAVE_FORMATS,
    load_image,
    resize,
    save_image,
    to_pil,
    to_tensor,
)
from impasto.io.video import (
    OUTPUT_CODECS,
    VIDEO_SUFFIXES,
    VideoWriter,
    frame_size,
    probe_video,
    read_frames,
)
from impasto.temporal.blend import TemporalConfig, TemporalStylizer, temporal_config

__all__ = ["apply_folder", "apply_image", "apply_video", "input_kind"]

log = logging.getLogger(__name__)

Transform = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# inputs


def input_kind(path: str | os.PathLike[str]) -> str:
    """``"folder"``, ``"video"`` (by suffix) or ``"image"``."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "image"


def _output_name(rel: str) -> str:
    """A relative output name for the input ``rel``: the same, with ``.png`` for suffixes that
    cannot be written (``photo.bmp`` -> ``photo.png``)."""
    p = Path(rel)
    return rel if p.suffix.lower() in SAVE_FORMATS else str(p.with_suffix(".png"))


def apply_image(
    transform: Transform,
    source: Any,
    output: str | os.PathLike[str],
    *,
    size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Stylise one image file (or any image :func:`~impasto.io.load_image` reads) into
    ``output``; ``size`` resizes it to that longest side first."""
    img = load_image(source, max_pixels=max_pixels)
    if size:
        img = resize(img, longest=size)
    y = transform(to_tensor(img))
    return save_image(to_pil(y), output, metadata=metadata)


def apply_folder(
    transform: Transform,
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    batch_size: int = 4,
    size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[Path]:
    """Stylise every image under ``folder`` (recursively) into ``output``, keeping the
    relative names (suffixes that cannot be written become ``.png``). Images of the same size
    go through the network together, ``batch_size`` at a time. An unreadable file is skipped
    with a warning; a folder without images is an :class:`InputError`. Returns the paths
    written, in input order."""
    from impasto.data.sources import list_folder

    src, dst = Path(folder), Path(output)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    names = list_folder(src)
    if not names:
        raise InputError(f"{src}: no images in the folder")
    if dst.resolve() == src.resolve():
        raise InputError(f"{dst}: the output folder must differ from the input folder")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst}: is a file; give an output folder for a folder of images")
    # Names that can be written keep theirs; converted ones (photo.bmp -> photo.png) yield to
    # them (photo.bmp -> photo.bmp.png when photo.png exists too).
    keep = {n for n in names if _output_name(n) == n}
    taken = {n.lower() for n in keep}
    outputs: dict[str, Path] = {}
    for n in names:
        out_name = _output_name(n)
        if n not in keep:
            if out_name.lower() in taken:
                out_name = f"{n}.png"
            taken.add(out_name.lower())
        outputs[n] = dst / out_name
    _announce(transform, lambda: batch_work(_folder_sizes(src, names, size, max_pixels),
                                            batch_size))
    bar = _bar(progress, len(names), "img")
    written: dict[str, Path] = {}
    pending: list[tuple[str, Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.cat([t for _, t in pending])
        out = transform(batch)
        for (name, _), y in zip(pending, out):
            written[name] = save_image(to_pil(y), outputs[name], metadata=metadata)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        for name in names:
            try:
                img = load_image(src / name, max_pixels=max_pixels)
            except InputError as e:
                log.warning("skipped: %s", e)
                if bar is not None:
                    bar.update(1)
                continue
            if size:
                img = resize(img, longest=size)
            t = to_tensor(img)
            if pending and (pending[0][1].shape != t.shape or len(pending) >= batch_size):
                flush()
            pending.append((name, t))
        flush()
    finally:
        if bar is not None:
            bar.close()
    if not written:
        raise InputError(f"{src}: none of the {len(names)} image files could be read")
    return [written[n] for n in names if n in written]


def _announce(transform: Transform, work: Callable[[], Work]) -> None:
    """Tells ``transform`` the work ahead if it takes it (``transform.expect``)."""
    expect = getattr(transform, "expect", None)
    if callable(expect):
        expect(work())


def _folder_sizes(src: Path, names: list[str], size: int | None,
                  max_pixels: int | None) -> Iterator[tuple[int, int]]:
    """``(height, width)`` of each readable image as :func:`apply_folder` will feed it, from
    the file headers."""
    from impasto.io import image_size, scaled_size

    for name in names:
        try:
            w, h = image_size(src / name)
        except InputError:
            continue
        if max_pixels is not None and w * h > max_pixels:
            continue
        if size:
            w, h = scaled_size(w, h, longest=size)
        yield h, w


def _bar(enabled: bool, total: int | None, unit: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True)


def apply_video(
    transform: Transform,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    batch_size: int = 4,
    size: int | None = None,
    quality: float = 8.0,
    progress: bool = False,
    audio: bool = True,
    temporal: float | TemporalConfig | None = None,
) -> Path:
    """Stylise every frame of the video ``source`` into the video ``output`` (container by
    suffix; H.264 for .mp4), at the source's frame rate, with its audio track (re-encoded;
    when ``audio`` and there is one). ``size`` resizes the frames to that longest side. The
    output is written to a temporary file beside it and renamed when complete. ``temporal``
    (a strength in ``[0, 1]``, True for the default, or a
    :class:`~impasto.temporal.blend.TemporalConfig`) blends each frame with the previous
    output warped by the input's optical flow (:mod:`impasto.temporal.blend`), against
    flicker. Raises :class:`InputError` for a video that cannot be decoded."""
    src, dst = Path(source), Path(output)
    if dst.suffix.lower() not in OUTPUT_CODECS:
        raise InputError(f"{dst}: a video input needs a video output "
                         f"({', '.join(OUTPUT_CODECS)})")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    config = temporal_config(temporal)
    info = probe_video(src)
    w, h = frame_size(info.size, size)
    if w < 2 or h < 2:
        raise InputError(f"{src}: frames of {info.size[0]}x{info.size[1]} are too small")
    with VideoWriter(dst, (w, h), info.fps, quality=quality,
                     audio_from=src if audio and info.has_audio else None) as writer:
        # An unknown length (0) announces nothing: compile="auto" stays eager.
        full, rest = divmod(info.frames, batch_size)
        _announce(transform, lambda: {k: v for k, v in (((batch_size, 3, h, w), full),
                                                         ((rest, 3, h, w), 1 if rest else 0))
                                      if v})
        bar = _bar(progress, info.frames or None, "frame")
        batch: list[Tensor] = []
        run = transform if config is None else TemporalStylizer(transform, config)

        def flush() -> None:
            if batch:
                writer.write(run(torch.cat(batch)))
                if bar is not None:
                    bar.update(len(batch))
                batch.clear()

        try:
            for frame in read_frames(src, (w, h)):
                batch.append(frame)
                if len(batch) >= batch_size:
                    flush()
            flush()
        finally:
            if bar is not None:
                bar.close()
    return dst
