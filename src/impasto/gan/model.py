"""A trained GAN generator as a model file: reading one from a model file, a training
checkpoint or a run folder (:func:`read_generator`), building the network
(:func:`build_generator`) and writing the model file of a run (:func:`export_model`).

A GAN model file (:mod:`impasto.train.modelfile`, kind ``"gan/<arch>"``) holds the network
config (``config``), the weights of G's moving average (``state_dict``, what samples use) and
in ``extra`` the class names (``classes``), the training settings, step and images seen, and
for a progressive GAN the stage it reached (``stage``) and its ``start_resolution``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from impasto.errors import InputError
from impasto.nets.gan import GAN_ARCH_REGISTRY, GanNetConfig, build_gan
from impasto.train import load_checkpoint, resolve_checkpoint, restore
from impasto.train.modelfile import ModelFile, read_model, save_model

__all__ = ["build_generator", "export_model", "generator_weights", "read_generator"]


def generator_weights(ckpt: Mapping[str, Any], *, ema: bool = True) -> Mapping[str, Any]:
    """The state dict of a GAN training checkpoint's generator: the moving average's
    (``G_ema``) or, with ``ema=False``, the raw trained one (``G``); :class:`InputError`
    when it holds neither."""
    src = ckpt.get("path", "checkpoint")
    name = "G_ema" if ema else "G"
    saved = (ckpt.get("models") or {}).get(name)
    if saved is None:
        raise InputError(f"{src}: no '{name}' weights in the checkpoint")
    if not ema:
        return saved
    # The EMA's state holds the averaged model's state dict under "model".
    state = saved.get("model") if isinstance(saved, Mapping) else None
    if state is None:
        raise InputError(f"{src}: the 'G_ema' entry is not an EMA state")
    return state


def read_generator(path: str | os.PathLike[str], *, ema: bool = True) -> ModelFile:
    """The generator held by ``path`` as a :class:`~impasto.train.ModelFile` (kind
    ``"gan/<arch>"``, see the module doc): a GAN model file, a training checkpoint of this
    release or the one before, or a run folder (its latest checkpoint).

    ``ema=False``: the raw trained weights instead of their moving average (only checkpoints
    hold them). Raises :class:`InputError` (one line naming the file) for a missing, truncated
    or corrupt file and one that holds no GAN; whether the weights fit is checked by
    :func:`build_generator`.
    """
    file = resolve_checkpoint(path)
    model = read_model(file, "gan", "a GAN's")
    if not ema:
        if not model.training_checkpoint:
            raise InputError(f"{file}: a model file holds only the generator's moving average; "
                             "the raw weights are in the run's training checkpoints")
        raw = generator_weights(load_checkpoint(file), ema=False)
        model = dataclasses.replace(model, state_dict=dict(raw))
    return model


def build_generator(model: ModelFile, resolution: int | None = None) -> nn.Module:
    """The generator network of a GAN model (:func:`read_generator`) with its weights, in
    training mode on the CPU. ``resolution``: for a progressive GAN any resolution it has
    reached (default: the stage it reached; see
    :func:`~impasto.gan.progressive.pggan_generator`); other GANs render only at their own.
    Raises :class:`InputError` for a config that does not match the kind and weights that
    do not fit."""
    src = str(model.path) if model.path is not None else "<model>"
    what = "checkpoint" if model.training_checkpoint else "model file"
    kind = model.legacy or model.kind
    if GAN_ARCH_REGISTRY.get(model.arch).progressive:
        from impasto.gan.progressive import pggan_generator

        stage = model.extra.get("stage")
        if not isinstance(stage, Mapping):
            raise InputError(f"{src}: a '{kind}' {what} without the stage it reached")
        return pggan_generator(model.config, model.state_dict, stage,
                               int(model.extra.get("start_resolution", 4)),
                               resolution=resolution, source=src)
    try:
        config = GanNetConfig.from_dict(model.config)
    except InputError as e:
        raise InputError(f"{src}: {e}") from None
    if config.arch != model.arch:
        raise InputError(f"{src}: a '{kind}' {what} holding a {config.arch} network")
    if resolution is not None and resolution != config.resolution:
        raise InputError(
            f"{src}: a {config.arch} generator renders only at {config.resolution}x"
            f"{config.resolution}; --resolution applies to progressive GANs (pggan)"
        )
    G, _ = build_gan(config)
    restore({"path": src, "models": {"G": model.state_dict}}, {"G": G}, rng=False)
    return G


def export_model(run_or_checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the generator of a run folder (its latest checkpoint), a checkpoint or a model
    file to the model file ``out`` (kind ``"gan/<arch>"``, ``.safetensors`` by the name, else
    ``.pt``; see the module doc): G's moving average, its network config and classes (and a
    progressive GAN's stage). Returns the path written. Raises :class:`InputError` as
    :func:`read_generator` and :func:`build_generator` do, and for a file that cannot be
    written."""
    model = read_generator(run_or_checkpoint)
    build_generator(model)  # the weights fit the network
    return save_model(out, kind=model.kind, config=model.config, state_dict=model.state_dict,
                      extra=model.extra)
