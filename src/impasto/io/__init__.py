"""Image input/output: load any image as 8-bit RGB, resize, convert to/from tensors, save atomically.

The only part of impasto that touches PIL and image files. Tensors are float32 ``(1, 3, H, W)``
in ``[0, 1]``; bad input files raise :class:`impasto.errors.InputError` with one line naming them.
Video files (ffmpeg): :mod:`impasto.io.video`.
"""

from impasto.io import images as _images
from impasto.io.images import *  # noqa: F403  (the public API, listed in images.__all__)

__all__ = list(_images.__all__)
