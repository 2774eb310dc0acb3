"""AdaIN decoder files: :func:`save_decoder`, :func:`load_decoder`, and :func:`export_model`,
the decoder file of a training run.

A decoder file is an impasto model file (:mod:`impasto.train.modelfile`) of kind
``"adain/decoder"``: the decoder's state dict; as ``config`` its architecture (``decoder``) and
the encoder it was trained with (``encoder``: ``{"weights": "caffe" | ... | None, "widths":
[...], "layer": "relu4_1"}``); in ``extra`` the training settings, style image names, step and
images seen. The decoder files of the release before (kind ``"adain-decoder"``) load too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.nets.adain import AdaINDecoder, AdaINDecoderConfig
from impasto.style.adain.config import CHECKPOINT_PREFIX
from impasto.train.checkpoint import resolve_checkpoint, restore
from impasto.train.modelfile import ModelFile, WrongKindError, load_model, save_model

__all__ = ["DECODER_FORMAT", "DECODER_KIND", "export_model", "load_decoder", "save_decoder"]

#: The kind of a decoder file (the release before wrote ``"adain-decoder"``).
DECODER_KIND = "adain/decoder"
#: Version of the decoder file's layout (:data:`impasto.train.modelfile.FORMAT_VERSION`).
DECODER_FORMAT = 1


def save_decoder(
    path: str | os.PathLike[str],
    decoder: AdaINDecoder,
    *,
    encoder: dict[str, Any],
    training: dict[str, Any] | None = None,
    step: int = 0,
    images_seen: int = 0,
    styles: Sequence[str] = (),
) -> Path:
    """Write a decoder file (see the module doc), atomically; ``.safetensors`` by the name,
    else ``.pt``. ``encoder``: ``{"weights": ..., "widths": [...], "layer": "relu4_1"}``."""
    from impasto.train import unwrap_model

    decoder = unwrap_model(decoder)
    return save_model(
        path, kind=DECODER_KIND,
        config={"decoder": decoder.config.to_dict(), "encoder": dict(encoder)},
        state_dict=decoder.state_dict(),
        extra={"training": dict(training or {}), "styles": list(styles), "step": int(step),
               "images_seen": int(images_seen)},
    )


def _read(p: Path, *, checkpoints: bool) -> tuple[AdaINDecoder, dict[str, Any]]:
    """The decoder of ``p`` and its metadata; a training checkpoint only with ``checkpoints``."""
    try:
        model: ModelFile = load_model(p, kind=DECODER_KIND)
    except WrongKindError as e:
        raise InputError(f"{p}: not an AdaIN decoder file (it is a '{e.legacy or e.kind}' "
                         "file)") from None
    if model.training_checkpoint and not checkpoints:
        raise InputError(f"{p}: a training checkpoint, not an AdaIN decoder file: use the "
                         "decoder file the run wrote at the end, or write one from the run "
                         "with impasto.style.adain.export_model")
    try:
        config = AdaINDecoderConfig.from_dict(model.config.get("decoder") or {})
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
    decoder = AdaINDecoder(config)
    restore({"path": str(p), "models": {"decoder": model.state_dict}}, {"decoder": decoder},
            rng=False)
    decoder.eval().requires_grad_(False)
    extra = model.extra
    info = {**model.config, "training": extra.get("training") or {}, "path": str(p),
            "step": extra.get("step", 0), "images_seen": extra.get("images_seen", 0),
            "styles": list(extra.get("styles") or [])}
    return decoder, info


def load_decoder(path: str | os.PathLike[str]) -> tuple[AdaINDecoder, dict[str, Any]]:
    """Rebuild the decoder of a decoder file (this format or the previous release's); returns
    it (eval mode, CPU) and the file's metadata (``decoder``, ``encoder``, ``training``,
    ``path``, ``step``, ``images_seen``, ``styles``). A file of another kind (a per-style
    model, a GAN checkpoint) or a training checkpoint raises :class:`InputError` naming it."""
    return _read(Path(path), checkpoints=False)


def export_model(run_or_checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the decoder file of a training run: the decoder of ``run_or_checkpoint`` (a run
    folder: its latest checkpoint; a checkpoint of this release or the one before; or a decoder
    file) to ``out`` (``.safetensors`` by the name, else ``.pt``), atomically, with the
    encoder, training settings, style names and step of the checkpoint. Returns the path.
    Raises :class:`InputError` for a file that holds no AdaIN decoder and for a folder as
    ``out``."""
    if Path(out).is_dir():
        raise InputError(f"{out}: is a folder; give a decoder file name such as decoder.pt")
    src = resolve_checkpoint(run_or_checkpoint, prefix=CHECKPOINT_PREFIX)
    decoder, info = _read(src, checkpoints=True)
    return save_decoder(out, decoder, encoder=info["encoder"], training=info["training"],
                        step=int(info["step"] or 0), images_seen=int(info["images_seen"] or 0),
                        styles=info["styles"])
