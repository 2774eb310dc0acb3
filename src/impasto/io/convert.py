"""Colour modes and tensors: any PIL image to 8-bit RGB, and RGB images to and from tensors.

Tensors are float32 ``(1, 3, H, W)`` in ``[0, 1]``; transparency is composited on white.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from impasto._fileutil import reason as _reason
from impasto.errors import input_error as _error

if TYPE_CHECKING:  # torch is imported lazily: reading and writing files must not need it
    import torch

__all__ = ["to_pil", "to_tensor"]

_WHITE = (255, 255, 255)


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


# --------------------------------------------------------------------------------------------
# tensors


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float32 tensor ``(1, 3, H, W)`` in ``[0, 1]`` (value / 255).

    A non-RGB image is converted as by :func:`load_image` (alpha composited on white).
    """
    import torch

    if img.mode != "RGB":
        img = _to_rgb(img)
    arr = np.asarray(img, dtype=np.uint8)
    # planes in uint8 first, then one float pass (converting the interleaved pixels to float
    # and then reordering them was two float passes: 3.2 against 2.4 ms at 1024 x 768)
    planes = np.array(arr.transpose(2, 0, 1), order="C")  # a new array, owned by the tensor
    return torch.from_numpy(planes)[None].float().div_(255.0)


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
