"""A trained progressive generator, set to render at any resolution it has reached."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from impasto.errors import InputError
from impasto.gan.common import checkpoint_kind
from impasto.gan.model import generator_weights
from impasto.nets.pggan import PgganGenerator, PgganNetConfig, build_pggan, pggan_resolutions
from impasto.train import restore

__all__ = [
    "CHECKPOINT_KIND", "generator_from_checkpoint", "pggan_generator", "reached_resolutions",
]

#: The ``kind`` of progressive GAN checkpoints and model files.
CHECKPOINT_KIND = checkpoint_kind("pggan")


def _start_resolution(ckpt: Mapping[str, Any]) -> int:
    return int(((ckpt.get("config") or {}).get("schedule") or {}).get("start_resolution", 4))


def reached_resolutions(ckpt: Mapping[str, Any]) -> tuple[int, ...]:
    """The resolutions a PGGAN checkpoint has trained at, from its start resolution to its
    current one (the last may be fading in)."""
    extra = ckpt.get("extra") or {}
    return pggan_resolutions(int(extra["stage"]["resolution"]), _start_resolution(ckpt))


def pggan_generator(
    net: Mapping[str, Any],
    state: Mapping[str, Any],
    stage: Mapping[str, Any],
    start_resolution: int = 4,
    *,
    resolution: int | None = None,
    source: str = "checkpoint",
) -> PgganGenerator:
    """The generator of network config ``net`` (:meth:`PgganNetConfig.to_dict`) with the
    weights ``state``, trained up to ``stage`` (a :class:`~impasto.gan.progressive.Stage` as a
    dict) from ``start_resolution``, set to render at ``resolution``.

    ``resolution=None``: the stage reached (its resolution, and its α if it was fading in).
    Otherwise any resolution reached: the current one (with its α when fading) or an earlier
    one, stable. An earlier resolution's image comes from its toRGB layer as it was when that
    resolution was faded out; the blocks below have trained on since, so it shows where the
    lower layers stand, not the snapshot of that time. :class:`InputError` (naming
    ``source``) for weights that do not fit and for a resolution not reached.
    """
    G, _ = build_pggan(PgganNetConfig.from_dict(dict(net)))
    restore({"path": source, "models": {"G": state}}, {"G": G}, rng=False)
    current = int(stage["resolution"])
    reached = pggan_resolutions(current, int(start_resolution))
    if resolution is None:
        resolution = current
    if resolution not in reached:
        listed = ", ".join(map(str, reached))
        raise InputError(
            f"{source} has not trained at resolution {resolution!r}; it has reached {listed}"
        )
    fading = stage.get("phase") == "fade" and resolution == current
    G.set_stage(resolution, float(stage["alpha"]) if fading else None)
    return G


def generator_from_checkpoint(
    ckpt: Mapping[str, Any], *, ema: bool = True, resolution: int | None = None
) -> PgganGenerator:
    """The generator of a loaded PGGAN checkpoint (:func:`~impasto.train.load_checkpoint`):
    the moving average's weights, or with ``ema=False`` the raw ones, set to render at
    ``resolution`` (see :func:`pggan_generator`). Raises :class:`InputError` for a checkpoint
    that is not a PGGAN's and for a resolution not reached."""
    src = ckpt.get("path", "checkpoint")
    if ckpt.get("kind") != CHECKPOINT_KIND:
        raise InputError(f"{src} is a '{ckpt.get('kind')}' checkpoint, not a progressive GAN's")
    extra = ckpt.get("extra") or {}
    if not isinstance(extra.get("net"), Mapping) or not isinstance(extra.get("stage"), Mapping):
        raise InputError(f"{src}: not a progressive GAN training checkpoint (no network config)")
    return pggan_generator(extra["net"], generator_weights(ckpt, ema=ema), extra["stage"],
                           _start_resolution(ckpt), resolution=resolution, source=src)
