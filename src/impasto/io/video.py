"""Video files in and out, through imageio-ffmpeg (``pip install 'impasto[video]'``).

* :func:`probe_video` reads a video's header (:class:`VideoInfo`: frame size, frame rate,
  estimated length, audio track);
* :func:`read_frames` decodes the frames one by one as float32 ``(1, 3, H, W)`` in ``[0, 1]``;
* :class:`VideoWriter` encodes batches of frames ``(N, 3, H, W)`` in ``[0, 1]`` into a
  temporary file beside the output, with the audio track of another file where asked, and
  renames it into place when complete (nothing is left behind when it fails).

A video that cannot be decoded is an :class:`~impasto.errors.InputError` whose one line names
the file and what ffmpeg found wrong.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from impasto._fileutil import reason
from impasto.errors import InputError
from impasto.io.resizing import resize_tensor, scaled_size

__all__ = [
    "OUTPUT_CODECS",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoWriter",
    "frame_size",
    "probe_video",
    "read_frames",
]

#: File suffixes read and written as video (lower case).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv"})

#: Containers written, with their video and audio codecs (None: imageio-ffmpeg's H.264).
OUTPUT_CODECS: dict[str, tuple[str | None, str]] = {
    ".mp4": (None, "aac"), ".m4v": (None, "aac"), ".mov": (None, "aac"), ".mkv": (None, "aac"),
    ".avi": (None, "libmp3lame"), ".webm": ("libvpx-vp9", "libopus"),
}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds: frame size ``(width, height)``, frames per second,
    an estimated frame count (0 when unknown) and whether there is an audio track."""

    size: tuple[int, int]
    fps: float
    frames: int
    has_audio: bool
    codec: str


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError(
            "video needs the imageio-ffmpeg package: pip install 'impasto[video]'"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's header with ffmpeg; :class:`InputError` (one line naming the file) if it
    is missing or cannot be decoded."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: video file not found" if not p.exists() else f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file, not a video")
    _ffmpeg()  # a clear message if imageio-ffmpeg is missing
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(p))
        meta = next(gen)
        gen.close()
    except Exception as e:  # noqa: BLE001  (ffmpeg's errors are RuntimeError/OSError/...)
        raise InputError(f"{p}: cannot decode the video ({_ffmpeg_reason(e)})") from None
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    w, h = meta.get("size") or (0, 0)
    if not w or not h:
        raise InputError(f"{p}: cannot decode the video (no video stream)")
    frames = int(round(fps * duration)) if fps and duration else 0
    return VideoInfo((int(w), int(h)), fps or 25.0, frames, _has_audio(p), str(meta.get("codec")))


def _ffmpeg_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for pattern in (r"Invalid data found when processing input", r"moov atom not found",
                    r"could not find codec parameters", r"No such file or directory"):
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            return m.group(0)
    return reason(exc)[:160]


def _has_audio(path: Path) -> bool:
    try:
        proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(re.search(r"Stream #\d+:\d+.*: Audio:", proc.stderr))


def frame_size(size: tuple[int, int], longest: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` frames of ``size`` are written at: scaled to ``longest`` side
    (None: kept), then each side rounded down to even (H.264's yuv420p needs even sides)."""
    w, h = size
    if longest:
        w, h = scaled_size(w, h, longest=longest)
    return w - w % 2, h - h % 2


def read_frames(path: str | os.PathLike[str],
                size: tuple[int, int] | None = None) -> Iterator[Tensor]:
    """The frames of a video as float32 ``(1, 3, H, W)`` in ``[0, 1]``, one at a time,
    resized to ``size`` ``(width, height)`` where given. :class:`InputError` for a video that
    cannot be decoded, part way through or with no frames at all."""
    _ffmpeg()
    import imageio_ffmpeg

    p = Path(path)
    gen = imageio_ffmpeg.read_frames(str(p))
    count = 0  # items read: the first is the metadata
    shape = (0, 0)
    try:
        while True:
            try:
                raw = next(gen)
            except StopIteration:
                break
            except (RuntimeError, OSError) as e:
                where = f" after {max(count - 1, 0)} frames" if count > 1 else ""
                raise InputError(
                    f"{p}: cannot decode the video{where} ({_ffmpeg_reason(e)})"
                ) from None
            if count == 0:
                w, h = raw.get("size") or (0, 0)
                shape = (int(h), int(w))
            else:
                frame = np.frombuffer(raw, dtype=np.uint8).reshape(*shape, 3)
                t = torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float().div_(255.0)
                if size is not None and t.shape[-2:] != (size[1], size[0]):
                    t = resize_tensor(t, (size[1], size[0]))
                yield t
            count += 1
    finally:
        gen.close()
    if count <= 1:
        raise InputError(f"{p}: cannot decode the video (no frames)")


class VideoWriter:
    """Encodes frames into the video ``path`` (container by suffix, :data:`OUTPUT_CODECS`;
    H.264 for .mp4) at ``fps``, ``size = (width, height)`` (even sides), with the audio track
    of ``audio_from`` (re-encoded) where given.

    The frames go to a temporary file beside ``path``; :meth:`close` renames it into place,
    :meth:`abort` removes it. Used as a context manager it closes on success and aborts on an
    exception."""

    def __init__(self, path: str | os.PathLike[str], size: tuple[int, int], fps: float, *,
                 quality: float = 8.0, audio_from: str | os.PathLike[str] | None = None) -> None:
        _ffmpeg()
        import imageio_ffmpeg

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_CODECS:
            raise InputError(f"{self.path}: not a video file name ({', '.join(OUTPUT_CODECS)})")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.path.parent}: cannot create the folder: {reason(e)}") from None
        self.size = size
        self.frames = 0
        self._tmp = self.path.with_name(
            f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
        video_codec, audio_codec = OUTPUT_CODECS[suffix]
        audio = None if audio_from is None else str(audio_from)
        rate: float | Fraction = Fraction(fps).limit_denominator(1001)
        self._writer: Any = imageio_ffmpeg.write_frames(
            str(self._tmp), size, fps=rate, quality=quality, macro_block_size=1,
            codec=video_codec, audio_path=audio, audio_codec=audio_codec if audio else None,
            ffmpeg_log_level="error",
        )
        self._open = True
        try:
            self._writer.send(None)  # starts ffmpeg
        except BaseException:
            self.abort()
            raise

    def write(self, frames: Tensor) -> None:
        """Appends frames ``(N, 3, H, W)`` in ``[0, 1]`` (any device; H, W: :attr:`size`)."""
        arr = (frames.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        for frame in arr.numpy():
            self._writer.send(np.ascontiguousarray(frame))
        self.frames += len(arr)

    def close(self) -> Path:
        """Finishes the file and renames it into place; returns its path."""
        try:
            self._writer.close()
            self._open = False
            self._tmp.replace(self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stops ffmpeg and removes the temporary file."""
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
