"""Reading, converting, resizing and writing images: the only place in impasto that touches PIL.

Everything that comes in is turned into a fully decoded 8-bit ``"RGB"`` :class:`PIL.Image.Image`
(EXIF orientation applied, transparency composited on white); everything the networks use is a
float32 tensor of shape ``(1, 3, H, W)`` with values in ``[0, 1]``. A bad input file raises
:class:`~impasto.errors.InputError` with a one-line message that names the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from impasto._fileutil import _umask
from impasto._fileutil import fsync_dir as _fsync_dir
from impasto.errors import InputError
from impasto._fileutil import reason as _reason
from impasto.errors import input_error as _error

if TYPE_CHECKING:  # torch is imported lazily: reading and writing files must not need it
    import torch

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LANCZOS",
    "SAVE_FORMATS",
    "check_output_path",
    "image_size",
    "load_image",
    "read_png_metadata",
    "resize",
    "resize_shorter",
    "resize_tensor",
    "save_image",
    "scaled_size",
    "to_pil",
    "to_tensor",
]

#: Largest image (width * height) that :func:`load_image` decodes by default: about 90 megapixels,
#: i.e. about 270 MB as 8-bit RGB. Larger files are rejected from their header, before decoding.
DEFAULT_MAX_PIXELS = 90_000_000

#: File suffixes :func:`save_image` writes (lower case) and the PIL format used for each.
SAVE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

LANCZOS = Image.Resampling.LANCZOS
_WHITE = (255, 255, 255)
_ORIENTATION_TAG = 0x0112  # EXIF "Orientation"

# PIL's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS) is a process-wide global. We check
# our own ``max_pixels`` from the header instead; when PIL's check would fire for an image that our
# limit allows, the global is lifted for that one decode, under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# errors








# --------------------------------------------------------------------------------------------
# loading


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
# colour conversion


def _to_rgb(img: Image.Image, label: str = "<image>") -> Image.Image:
    """Convert a decoded image of any PIL mode to 8-bit RGB (alpha composited on white)."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scaled_grey(img).convert("RGB")
    if mode == "La":  # premultiplied grey + alpha: on white, out = L*a/255 + 255 - a = La + 255 - a
        la = np.asarray(img).astype(np.int16)
        grey = np.clip(la[..., 0] + 255 - la[..., 1], 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "LAB":  # PIL's plain convert() would copy channels; this needs a colour transform
        return _lab_to_rgb(img, label)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        # palette or grey/RGB with a transparent index/colour (tRNS) becomes RGBA first
        return _composite_on_white(img if mode == "RGBA" else img.convert("RGBA"))
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")  # 1, L, P, CMYK (incl. Adobe-inverted JPEG), YCbCr, RGBX, HSV
    except Exception as exc:  # noqa: BLE001 - e.g. LAB, which needs a colour profile
        raise _error(label, f"unsupported colour mode {mode!r} ({_reason(exc)})") from None


def _lab_to_rgb(img: Image.Image, label: str) -> Image.Image:
    try:
        from PIL import ImageCms

        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(img, transform)
    except Exception as exc:  # noqa: BLE001 - Pillow built without littlecms
        raise _error(label, f"cannot convert a CIELab image to RGB ({_reason(exc)})") from None


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, mask=rgba)  # out = rgb * a + white * (1 - a)
    return out


def _scaled_grey(img: Image.Image) -> Image.Image:
    """Mode ``I;16*`` / ``I`` (read as 0..65535) or ``F`` image -> 8-bit ``L``, scaled not clipped."""
    arr = np.asarray(img)
    if img.mode == "F":
        a = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if a.size and float(a.max()) <= 1.0 else 1.0
        return Image.fromarray(_float_to_u8(a * scale / 255.0))
    return Image.fromarray(_u16_to_u8(np.clip(arr, 0, 65535)))


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded to nearest (65535 -> 255, 32768 -> 128)."""
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_u8(a: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats (clipped) -> 0..255, rounded to nearest."""
    out = np.clip(a, 0.0, 1.0) * 255.0
    return np.rint(out, out=out).astype(np.uint8)


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


# --------------------------------------------------------------------------------------------
# resizing


def scaled_size(
    width: int, height: int, *, longest: int | None = None, pixels: int | None = None
) -> tuple[int, int]:
    """The ``(width, height)`` :func:`resize` produces, aspect ratio kept, each side >= 1.

    Exactly one of ``longest`` (the longer side becomes this) or ``pixels`` (width * height
    becomes about this) must be given, a positive int; otherwise :class:`InputError`. If a very
    thin image would need a side under one pixel, that side is 1 and the other keeps to ``pixels``.
    """
    if (longest is None) == (pixels is None):
        raise InputError("give exactly one of longest= or pixels= to resize")
    option, value = ("longest", longest) if longest is not None else ("pixels", pixels)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{option} must be a positive whole number, not {value!r}")
    if width <= 0 or height <= 0:
        raise InputError(f"cannot resize an image of {width}x{height} pixels")
    if longest is not None:
        scale = longest / max(width, height)
    else:
        scale = math.sqrt(pixels / (width * height))
    new_w = max(1, math.floor(width * scale + 0.5))
    new_h = max(1, math.floor(height * scale + 0.5))
    if longest is not None:  # no rounding drift on the side that was asked for
        if width >= height:
            new_w = longest
        else:
            new_h = longest
    elif min(width, height) * scale < 0.5:  # a side floored at 1 pixel: then the budget wins
        new_w, new_h = (min(new_w, pixels), 1) if new_h == 1 else (1, min(new_h, pixels))
    return new_w, new_h


def resize(
    img: Image.Image,
    *,
    longest: int | None = None,
    pixels: int | None = None,
    resample: Image.Resampling = LANCZOS,
) -> Image.Image:
    """Resize a PIL image, aspect kept, antialiased: to a longest side or to a pixel count.

    See :func:`scaled_size` for the arithmetic. Returns a new image (a copy if the size is
    unchanged). Raises :class:`InputError` unless exactly one positive ``longest``/``pixels``.
    """
    size = scaled_size(img.width, img.height, longest=longest, pixels=pixels)
    if size == img.size:
        return img.copy()
    # PIL's filters widen their support when shrinking, so this is antialiased; reducing_gap
    # first box-reduces very large shrinks by an integer factor, which is faster and as good.
    return img.resize(size, resample=resample, reducing_gap=3.0)


def resize_shorter(img: Image.Image, side: int, *, resample: str = "lanczos") -> Image.Image:
    """Resize a PIL image so that its shorter side is ``side``, aspect kept (the training crops
    of the style networks). ``"lanczos"``: antialiased, the longer side rounded up (so neither
    side is below ``side``); ``"bilinear"``: PIL's bilinear, both sides rounded to the nearest
    pixel (as AdaIN's reference code prepares its data)."""
    w, h = img.size
    if resample == "lanczos":
        return resize(img, longest=math.ceil(max(w, h) * side / min(w, h)))
    if resample != "bilinear":
        raise ValueError(f"resample must be 'lanczos' or 'bilinear', not {resample!r}")
    scale = side / min(w, h)
    return img.resize((max(side, round(w * scale)), max(side, round(h * scale))),
                      Image.Resampling.BILINEAR, reducing_gap=3.0)


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an image batch ``(N, C, H, W)`` to ``size = (new_H, new_W)`` (torch order).

    Bicubic, ``align_corners=False``, antialiased when shrinking either side. A batch whose
    values lie in ``[0, 1]`` is clamped back to ``[0, 1]`` (bicubic overshoots at edges).
    Differentiable; half-precision inputs are computed in float32 and cast back.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4:
        raise ValueError(f"resize_tensor expects (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"resize_tensor expects a float tensor, got {x.dtype}")
    new_h, new_w = (int(s) for s in size)
    if new_h <= 0 or new_w <= 0:
        raise ValueError(f"resize_tensor: size must be positive, got {tuple(size)}")
    h, w = x.shape[-2:]
    if (new_h, new_w) == (h, w):
        return x
    y = x if x.dtype in (torch.float32, torch.float64) else x.float()
    in_unit_range = bool(((y >= 0) & (y <= 1)).all())
    shrinking = new_h < h or new_w < w
    y = F.interpolate(y, size=(new_h, new_w), mode="bicubic", align_corners=False,
                      antialias=shrinking)
    if in_unit_range:
        y = y.clamp(0.0, 1.0)
    return y.to(x.dtype)


# --------------------------------------------------------------------------------------------
# tensors


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float32 tensor ``(1, 3, H, W)`` in ``[0, 1]`` (value / 255).

    A non-RGB image is converted as by :func:`load_image` (alpha composited on white).
    """
    import torch

    if img.mode != "RGB":
        img = _to_rgb(img)
    arr = np.array(img, dtype=np.uint8)  # a writable copy, owned by the tensor
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def to_pil(t: torch.Tensor) -> Image.Image:
    """Tensor ``(3, H, W)`` or ``(1, 3, H, W)`` in ``[0, 1]`` -> 8-bit RGB PIL image.

    Any float dtype (bf16 and f16 included; computed in float32) and device. Values are clamped to
    ``[0, 1]`` and rounded to the nearest 8-bit level (NaN becomes 0).
    """
    import torch

    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"to_pil expects (3, H, W) or (1, 3, H, W), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"to_pil expects a float tensor in [0, 1], got {t.dtype}")
    with torch.no_grad():
        f = t.detach().to(device="cpu", dtype=torch.float32)
        f = torch.nan_to_num(f, nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
        arr = f.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr)


# --------------------------------------------------------------------------------------------
# saving


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
