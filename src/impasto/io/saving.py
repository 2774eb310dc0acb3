"""Writing images atomically (PNG, JPEG, WebP by the suffix) with metadata, and reading it back."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin

from impasto._fileutil import _umask
from impasto._fileutil import fsync_dir as _fsync_dir
from impasto._fileutil import reason as _reason
from impasto.errors import InputError
from impasto.errors import input_error as _error
from impasto.io.convert import _to_rgb, to_pil
from impasto.io.loading import (
    DEFAULT_MAX_PIXELS,
    _check_pixels,
    _open,
    _open_file,
    _pil_limit,
)

if TYPE_CHECKING:  # torch is imported lazily: writing files must not need it
    import torch

__all__ = ["SAVE_FORMATS", "check_output_path", "read_png_metadata", "save_image"]

#: File suffixes :func:`save_image` writes (lower case) and the PIL format used for each.
SAVE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _save_format(path: Path) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise _error(
            path,
            f"unsupported output format {path.suffix or '(no suffix)'!r}; "
            "use .png, .jpg, .jpeg or .webp",
        )
    return fmt


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Check early (before any long computation) that :func:`save_image` can write ``path``.

    The suffix must be .png, .jpg, .jpeg or .webp (any case); ``path`` must not be a directory;
    its nearest existing ancestor folder must be a writable directory (missing folders below it
    are created by :func:`save_image`). Returns ``Path(path)``; raises :class:`InputError`.
    """
    p = Path(path)
    _save_format(p)
    if p.is_dir():
        raise _error(p, "is a directory; give a file name such as out.png")
    ancestor = p.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _error(p, f"cannot create its folder: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _error(p, f"folder {ancestor} is not writable")
    return p


def save_image(
    image: Image.Image | torch.Tensor,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    quality: int = 95,
) -> Path:
    """Write an image atomically to ``path``: PNG, JPEG or WebP, chosen by the suffix.

    ``image`` is a PIL image (saved as RGB, or L if grey) or a tensor ``(3, H, W)`` /
    ``(1, 3, H, W)`` in ``[0, 1]`` (see :func:`to_pil`). ``metadata`` is stored as PNG text
    chunks (non-str values JSON-encoded; read back with :func:`read_png_metadata`) or, for JPEG,
    as one JSON object in the comment; WebP ignores it. ``quality`` (1..100) is for JPEG/WebP.

    The file is written to a hidden temporary file in the target folder, flushed to disk and
    renamed over ``path``: a failure leaves neither a partial file nor a temporary file behind,
    and an existing ``path`` unchanged. Missing parent folders are created. Returns the path.
    Raises :class:`InputError` for an unsupported suffix or a folder that cannot be written.
    """
    target = Path(path)
    fmt = _save_format(target)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"quality must be a whole number from 1 to 100, not {quality!r}")
    if not isinstance(image, Image.Image):
        image = to_pil(image)
    elif image.mode not in ("RGB", "L"):
        image = _to_rgb(image)

    params: dict[str, Any] = {}
    if metadata:
        metadata = _text_safe(metadata)
    if fmt == "PNG":
        if metadata:
            info = PngImagePlugin.PngInfo()
            for key, value in metadata.items():
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                info.add_text(str(key), text)
            params["pnginfo"] = info
    else:
        params["quality"] = quality
        if fmt == "JPEG" and metadata:
            params["comment"] = json.dumps(
                {str(k): v for k, v in metadata.items()}, default=str, ensure_ascii=False
            ).encode("utf-8")

    if target.is_dir():
        raise _error(target, "is a directory; give a file name such as out.png")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _error(folder, "cannot create the output folder: a file is in the way") from None
    except OSError as exc:
        raise _error(folder, f"cannot create the output folder: {_reason(exc)}") from None

    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _error(folder, f"cannot write in the output folder: {_reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=fmt, **params)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the usual 0666 & ~umask
                os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _error(target, f"cannot write: {_reason(exc)}") from exc
        raise
    _fsync_dir(folder)
    return target


def _text_safe(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8: a file name of another encoding
    (held by Python as lone surrogates) keeps its bytes as ``\\xNN`` escapes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, Mapping):
        return {_text_safe(str(k)): _text_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return _text_safe(os.fspath(value))
    return value


def read_png_metadata(
    path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file, as written by :func:`save_image`.

    Raises :class:`InputError` for a missing, unreadable, non-PNG, corrupt or oversized file
    (text after the image data needs the pixels decoded, hence ``max_pixels``).
    """
    p = os.fsdecode(os.fspath(path))
    with _open_file(p, p) as fp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pil_limit(None):
                img = _open(fp, p)
            if img.format != "PNG":
                raise _error(p, f"not a PNG file ({img.format or 'unknown'} image)")
            _check_pixels(img.size, p, max_pixels)
            with _pil_limit(img.size):
                try:
                    text = img.text
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise _error(p, f"truncated or corrupt PNG ({_reason(exc)})") from None
    return {str(k): str(v) for k, v in text.items()}
