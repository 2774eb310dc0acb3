"""The mask files of ``impasto stylize``: the note when they are resized, and ``--keep-mask``
checked before any work (:mod:`impasto.style.masks` holds what they mean)."""

from __future__ import annotations

import argparse
import sys
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
    from impasto.style.masks import check_keep_mask, keep_style_masks, load_masks

    if config.tileable != "none":
        raise InputError("--keep-mask cannot be honoured with --tileable: the photo kept there "
                         "does not wrap around")
    keep = check_keep_mask(load_masks([args.keep_mask], max_pixels)[0])
    if keep is None:
        if not args.quiet:
            print("impasto: note: the keep mask is black everywhere: it keeps nothing (a plain "
                  "run)", file=sys.stderr)
        return None
    keep_style_masks(keep, masks, len(args.style))
    if not args.quiet:
        note_mask_size(args.keep_mask, photo, config.size, max_pixels, "the keep mask")
    return keep


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
    from impasto.style.masks import check_keep_mask, load_masks

    keep = check_keep_mask(load_masks([args.keep_mask], max_pixels)[0])
    if not args.quiet:
        if keep is None:
            print("impasto: note: the keep mask is black everywhere: it keeps nothing",
                  file=sys.stderr)
        else:
            note_mask_size(args.keep_mask, photo, args.size, max_pixels, "the keep mask")
    return keep
