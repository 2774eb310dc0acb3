"""Reading images: any file, bytes, PIL image, array or tensor becomes a decoded 8-bit RGB image.

The EXIF orientation is applied and transparency composited on white (:mod:`impasto.io.convert`);
the size limit ``max_pixels`` is checked from the header, before any decoding. A bad input raises
:class:`~impasto.errors.InputError` with one line naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from impasto._fileutil import reason as _reason
from impasto.errors import input_error as _error
from impasto.io.convert import _float_to_u8, _to_rgb, _u16_to_u8

if TYPE_CHECKING:  # torch is imported lazily: reading files must not need it
    import torch

__all__ = ["DEFAULT_MAX_PIXELS", "image_size", "load_image"]

#: Largest image (width * height) that :func:`load_image` decodes by default: about 90 megapixels,
#: i.e. about 270 MB as 8-bit RGB. Larger files are rejected from their header, before decoding.
DEFAULT_MAX_PIXELS = 90_000_000

_ORIENTATION_TAG = 0x0112  # EXIF "Orientation"

# PIL's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS) is a process-wide global. We check
# our own ``max_pixels`` from the header instead; when PIL's check would fire for an image that our
# limit allows, the global is lifted for that one decode, under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


def load_image(
    source: Any,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Read an image from a file, bytes, a PIL image, a numpy array or a tensor, as 8-bit RGB.

    ``source`` is one of:

    * a path (``str`` or ``os.PathLike``) to any image file PIL can read;
    * the bytes of such a file (``bytes``, ``bytearray`` or ``memoryview``);
    * a :class:`PIL.Image.Image` (not modified; a new image is returned);
    * a numpy array of shape ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1, 3, 4 and dtype
      ``uint8`` (0..255), ``uint16`` (0..65535), ``bool``, or float (``[0, 1]``, clipped);
    * a torch tensor of shape ``(3, H, W)``, ``(1, 3, H, W)``, ``(1, H, W)`` (grey) or
      ``(4, H, W)`` (RGBA), float in ``[0, 1]`` (clipped) or ``uint8``.

    The result is a fully decoded image of mode ``"RGB"``: the EXIF orientation is applied;
    grey, bilevel, palette, CMYK and 16-bit or float images are converted (16-bit values are
    scaled from 0..65535, not clipped; mode ``"I"`` is read as 16-bit, mode ``"F"`` as ``[0, 1]``
    if all its values lie there and as 0..255 otherwise); **transparency is composited on white**,
    so fully transparent pixels become white (255, 255, 255).

    ``max_pixels`` limits width * height; it is checked from the file header, so an oversized
    file (a decompression bomb) is never decoded. ``None`` disables the limit. PIL's own global
    limit (``Image.MAX_IMAGE_PIXELS``) does not apply: ``max_pixels`` decides.

    ``name`` is used in error messages instead of the path (default: the path, or ``"<bytes>"``,
    ``"<image>"``, ``"<array>"``, ``"<tensor>"``).

    Raises :class:`~impasto.errors.InputError` (one line naming the file) for a missing,
    unreadable, empty, non-image, truncated, corrupt or oversized file, or a bad array.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)):
        raise TypeError(f"max_pixels must be an int or None, not {type(max_pixels).__name__}")

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        label = name if name is not None else path
        with _open_file(path, label) as fp:
            return _decode(fp, label, max_pixels)

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        data = source.tobytes() if isinstance(source, memoryview) else bytes(source)
        if not data:
            raise _error(label, "empty data (0 bytes), not an image")
        return _decode(io.BytesIO(data), label, max_pixels)

    if isinstance(source, Image.Image):
        label = name if name is not None else "<image>"
        _check_pixels(source.size, label, max_pixels)
        with _pil_limit(source.size):
            _force_load(source, label)
            img = _exif_transpose(source, in_place=False)
        return _to_rgb(img, label)

    if isinstance(source, np.ndarray):
        label = name if name is not None else "<array>"
        return _from_array(source, label, max_pixels)

    torch_mod = sys.modules.get("torch")  # a tensor can only exist if torch is imported
    if torch_mod is not None and isinstance(source, torch_mod.Tensor):
        label = name if name is not None else "<tensor>"
        return _from_array(_tensor_to_hwc(source, label), label, max_pixels)

    label = name if name is not None else f"<{type(source).__name__}>"
    raise _error(
        label,
        f"cannot read an image from a {type(source).__name__}; expected a path, bytes, "
        "a PIL image, a numpy array or a torch tensor",
    )


def image_size(source: Any, *, name: str | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`load_image` would return it, without decoding.

    Reads only the header of a file or bytes (EXIF orientation taken into account, so a portrait
    photo stored sideways reports its upright size). Raises :class:`~impasto.errors.InputError`
    like :func:`load_image` for a missing, unreadable or non-image file.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        label = name if name is not None else path
        with _open_file(path, label) as fp:
            return _header_size(fp, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        if not len(source):
            raise _error(label, "empty data (0 bytes), not an image")
        return _header_size(io.BytesIO(bytes(source)), label)
    if isinstance(source, Image.Image):
        return _oriented_size(source)
    return load_image(source, max_pixels=None, name=name).size


@contextlib.contextmanager
def _open_file(path: str, label: str) -> Iterator[io.BufferedReader]:
    """Open ``path`` for reading, turning every reason it cannot be an image into InputError."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise _error(label, "no such file") from None
    except PermissionError:
        raise _error(label, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL byte
        raise _error(label, f"cannot read: {_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _error(label, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise _error(label, "is not a regular file")
    if st.st_size == 0:
        raise _error(label, "empty file (0 bytes), not an image")
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below
    except PermissionError:
        raise _error(label, "permission denied (cannot read the file)") from None
    except OSError as exc:
        raise _error(label, f"cannot read: {_reason(exc)}") from None
    with fp:
        yield fp


def _decode(fp: Any, label: str, max_pixels: int | None) -> Image.Image:
    """Open, size-check, fully decode, orient and convert to RGB the image in ``fp``."""
    with warnings.catch_warnings():
        # Our max_pixels check replaces PIL's; its warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError:
            # PIL's global limit fired while reading the header: read it again without that
            # limit, so that max_pixels (checked before any decoding) decides.
            fp.seek(0)
            with _pil_limit(None):
                img = _open(fp, label)
        except Exception as exc:  # noqa: BLE001
            img = _open_failed(exc, label)
        _check_pixels(img.size, label, max_pixels)
        with _pil_limit(img.size):
            _force_load(img, label)
        _exif_transpose(img, in_place=True)
        return _to_rgb(img, label)


def _open(fp: Any, label: str) -> ImageFile.ImageFile:
    try:
        return Image.open(fp)
    except Exception as exc:  # noqa: BLE001
        return _open_failed(exc, label)


def _open_failed(exc: Exception, label: str) -> Any:
    if isinstance(exc, UnidentifiedImageError):
        raise _error(label, "not an image file (or a format PIL cannot read)") from None
    if isinstance(exc, MemoryError):
        raise exc
    raise _error(label, f"cannot read the image header: {_reason(exc)}") from None


def _force_load(img: Image.Image, label: str) -> None:
    """Decode all pixels now, so that truncated or corrupt data is reported here.

    Relies on PIL's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (never changed here):
    a truncated file then fails to load instead of being padded with grey.
    """
    try:
        img.load()
    except MemoryError:
        raise
    except Image.DecompressionBombError:  # only if PIL's global was changed meanwhile
        raise _error(label, "image too large (PIL decompression bomb limit)") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError...
        raise _error(label, f"truncated or corrupt image data ({_reason(exc)})") from None


def _check_pixels(size: tuple[int, int], label: str, max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise _error(label, f"image has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise _error(
            label,
            f"image is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels} pixels "
            "(max_pixels)",
        )


@contextlib.contextmanager
def _pil_limit(size: tuple[int, int] | None) -> Iterator[None]:
    """Suspend PIL's global decompression-bomb limit if it would reject ``size`` (None: always).

    The global is restored on exit; the lock keeps concurrent impasto calls from racing on it.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or (size is not None and size[0] * size[1] <= limit):
        yield
        return
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF: treat as upright
        return 1


def _exif_transpose(img: Image.Image, *, in_place: bool) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored."""
    if _orientation(img) == 1:
        return img if in_place else img.copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if in_place:
                ImageOps.exif_transpose(img, in_place=True)
                return img
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001
        return img if in_place else img.copy()


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    return (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)


def _header_size(fp: Any, label: str) -> tuple[int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _pil_limit(None):
            img = _open(fp, label)
    return _oriented_size(img)


# --------------------------------------------------------------------------------------------
# arrays and tensors


def _from_array(arr: np.ndarray, label: str, max_pixels: int | None) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise _error(label, f"array of shape {tuple(arr.shape)}; expected (H, W) or (H, W, 1|3|4)")
    _check_pixels((arr.shape[1], arr.shape[0]), label, max_pixels)
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        u8 = _u16_to_u8(arr)
    elif kind == "b":
        u8 = arr.astype(np.uint8) * 255
    elif kind == "f":
        if not np.isfinite(arr).all():
            raise _error(label, "array contains NaN or infinite values")
        u8 = _float_to_u8(arr.astype(np.float32))
    else:
        raise _error(
            label, f"array of dtype {arr.dtype}; expected uint8, uint16, bool or float in [0, 1]"
        )
    img = Image.fromarray(np.ascontiguousarray(u8))
    return _to_rgb(img, label)


def _tensor_to_hwc(t: torch.Tensor, label: str) -> np.ndarray:
    shape = tuple(t.shape)
    if t.ndim == 4 and shape[0] == 1:
        t = t[0]
    if not (t.ndim == 3 and t.shape[0] in (1, 3, 4)):
        raise _error(label, f"tensor of shape {shape}; expected (3, H, W), (1, 3, H, W) or (1, H, W)")
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.float()
    elif t.dtype != sys.modules["torch"].uint8:
        raise _error(label, f"tensor of dtype {t.dtype}; expected float in [0, 1] or uint8")
    return t.permute(1, 2, 0).numpy()
