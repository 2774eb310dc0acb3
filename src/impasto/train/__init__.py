"""What every training loop shares (GANs, progressive GANs, classifiers, feed-forward style nets).

- :mod:`~impasto.train.config`: typed configs (dataclasses) as JSON beside the weights.
- :mod:`~impasto.train.checkpoint`: atomic, ``weights_only``-loadable checkpoints with the full
  RNG state (:mod:`~impasto.train.rng`); :mod:`~impasto.train.manager`: a
  :class:`CheckpointManager` for run folders, and ``--resume`` resolution.
- :mod:`~impasto.train.modelfile`: one model-file format for every family (``save_model``,
  ``load_model``; ``.pt`` or safetensors; the previous release's files read too).
- :mod:`~impasto.train.ema`: exponential moving average of weights.
- :mod:`~impasto.train.runlog`: ``stats.jsonl`` and TensorBoard logging.
- :mod:`~impasto.train.guard`: stop on a NaN/inf loss with a clear message.
- :mod:`~impasto.train.distributed`: ``torchrun`` helpers that are no-ops in a single process.
- :mod:`~impasto.train.loop`: the pieces every loop repeats: seeds, deterministic mode, the
  resumable data order, gradients, buffers and statistics across processes, per-rank RNG.

This layer may import :mod:`impasto.errors`, :mod:`impasto.io`, :mod:`impasto.nets` and
:mod:`impasto.data`, never the model families built on it.
"""

from __future__ import annotations

from impasto.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointManager,
    GeneratorDeviceError,
    capture_rng_state,
    load_checkpoint,
    resolve_checkpoint,
    restore,
    restore_rng_state,
    save_checkpoint,
)
from impasto.train.config import config_from_dict, config_to_dict, load_config, save_config
from impasto.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_object,
    cleanup,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main,
    unwrap_model,
)
from impasto.train.ema import EMA
from impasto.train.guard import NonFiniteLossError, check_finite
from impasto.train.loop import (
    Batches,
    EpochSampler,
    agree_across_ranks,
    all_reduce_grads,
    broadcast_buffers,
    derive_seed,
    gather_rng_states,
    grad_norm,
    loader_workers,
    restore_rng_for_rank,
    runtime_flags,
    training_session,
    wrap_ddp,
)
from impasto.train.modelfile import ModelFile, load_model, save_model
from impasto.train.runlog import RunLogger, read_stats

__all__ = [
    "EMA",
    "FORMAT_VERSION",
    "Batches",
    "CheckpointManager",
    "DistInfo",
    "EpochSampler",
    "GeneratorDeviceError",
    "ModelFile",
    "NonFiniteLossError",
    "RunLogger",
    "agree_across_ranks",
    "all_reduce_grads",
    "all_reduce_mean",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "capture_rng_state",
    "check_finite",
    "cleanup",
    "config_from_dict",
    "config_to_dict",
    "derive_seed",
    "gather_rng_states",
    "get_rank",
    "get_world_size",
    "grad_norm",
    "init_distributed",
    "is_distributed",
    "is_main",
    "load_checkpoint",
    "load_config",
    "load_model",
    "loader_workers",
    "read_stats",
    "resolve_checkpoint",
    "restore",
    "restore_rng_for_rank",
    "restore_rng_state",
    "runtime_flags",
    "save_checkpoint",
    "save_config",
    "save_model",
    "training_session",
    "unwrap_model",
    "wrap_ddp",
]
