"""Image input/output: load any image as 8-bit RGB, resize, convert to/from tensors, save atomically.

The only part of impasto that touches PIL and image files. Tensors are float32 ``(1, 3, H, W)``
in ``[0, 1]``; bad input files raise :class:`impasto.errors.InputError` with one line naming them.
"""

from impasto.io.images import (
    DEFAULT_MAX_PIXELS,
    LANCZOS,
    SAVE_FORMATS,
    check_output_path,
    image_size,
    load_image,
    read_png_metadata,
    resize,
    resize_tensor,
    save_image,
    scaled_size,
    to_pil,
    to_tensor,
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
    "resize_tensor",
    "save_image",
    "scaled_size",
    "to_pil",
    "to_tensor",
]
