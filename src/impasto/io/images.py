"""Reading, converting, resizing and writing images: the only place in impasto that touches PIL.

Everything that comes in is turned into a fully decoded 8-bit ``"RGB"`` :class:`PIL.Image.Image`
(EXIF orientation applied, transparency composited on white); everything the networks use is a
float32 tensor of shape ``(1, 3, H, W)`` with values in ``[0, 1]``. A bad input file raises
:class:`~impasto.errors.InputError` with a one-line message that names the file.

The code lives in one module per concept, re-exported here: :mod:`~impasto.io.loading`
(``load_image``, ``image_size``), :mod:`~impasto.io.convert` (colour modes, ``to_tensor``,
``to_pil``), :mod:`~impasto.io.resizing` (``resize``, ``resize_shorter``, ``resize_tensor``,
``scaled_size``) and :mod:`~impasto.io.saving` (``save_image``, ``check_output_path``,
``read_png_metadata``).
"""

from __future__ import annotations

from impasto.io.convert import to_pil, to_tensor
from impasto.io.loading import DEFAULT_MAX_PIXELS, image_size, load_image
from impasto.io.resizing import (
    LANCZOS,
    resize,
    resize_shorter,
    resize_tensor,
    scaled_size,
)
from impasto.io.saving import (
    SAVE_FORMATS,
    check_output_path,
    read_png_metadata,
    save_image,
)

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
