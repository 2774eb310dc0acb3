"""The mask files of ``impasto stylize``: the note when they are resized, and ``--keep-mask``
checked before any work (:mod:`impasto.style.masks` holds what they mean)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from impasto.errors import InputError


def note_mask_size(mask: str, photo: Any, size: int | None, max_pixels: int,
                   what: str = "the masks") -> None:
    """One note line when the masks are resized to the output (they need not match it)."""
    from impasto.io import load_image, resize

    out = resize(photo, longest=size).size if size else photo.size
    got = load_image(mask, max_pixels=max_pixels).size
    if got != out:
        verb = "are" if what.endswith("s") else "is"
        print(f"impasto: note: {what} ({got[0]}x{got[1]}) {verb} resized to the output "
              f"({out[0]}x{out[1]})", file=sys.stderr)


def load_keep_mask(args: argparse.Namespace, photo: Any, config: Any, masks: Any,
                   max_pixels: int) -> Any:
    """``--keep-mask`` as float ``(H, W)`` in ``[0, 1]``, or None when not given or black
    everywhere (a note says it keeps nothing); refuses, before any work, what the run would:
    white everywhere, ``--tileable``, several styles without ``--mask``, a ``--mask`` inside
    it."""
    if not hasattr(args, "keep_mask"):
        return None
    from impasto.style.masks import keep_style_masks

    if config.tileable != "none":
        raise InputError("--keep-mask cannot be honoured with --tileable: the photo kept there "
                         "does not wrap around")
    return _read_keep_mask(args, photo, config.size, max_pixels, " (a plain run)",
                           check=lambda keep: keep_style_masks(keep, masks, len(args.style)))


def network_keep_mask(args: argparse.Namespace, kind: str, photo: Any, max_pixels: int) -> Any:
    """``--keep-mask`` for a feed-forward network (``kind``: ``"image"``, ``"folder"``,
    ``"video"`` or ``"export"``) as for :func:`load_keep_mask`: the network's output is then
    composited with the photo by it (:func:`~impasto.style.masks.keep_photo`); a still image
    only."""
    if getattr(args, "keep_mask", None) is None:
        return None
    if kind != "image":
        what = {"export": "--export", "folder": "a folder", "video": "a video"}[kind]
        raise InputError(f"--keep-mask is for one still image, not {what}")
    return _read_keep_mask(args, photo, args.size, max_pixels, "")


def _read_keep_mask(args: argparse.Namespace, photo: Any, size: int | None, max_pixels: int,
                    plain: str, check: Callable[[Any], object] | None = None) -> Any:
    """``args.keep_mask`` loaded and checked (``check``: more refusals), with its notes: black
    everywhere (it keeps nothing; ``plain`` ends that line), or resized to the output."""
    from impasto.style.masks import check_keep_mask, load_masks

    keep = check_keep_mask(load_masks([args.keep_mask], max_pixels)[0])
    if keep is None:
        if not args.quiet:
            print(f"impasto: note: the keep mask is black everywhere: it keeps nothing{plain}",
                  file=sys.stderr)
        return None
    if check is not None:
        check(keep)
    if not args.quiet:
        note_mask_size(args.keep_mask, photo, size, max_pixels, "the keep mask")
    return keep
