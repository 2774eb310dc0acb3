"""What the two GAN training loops share (:mod:`impasto.gan.training` and
:mod:`impasto.gan.progressive`): the numbers of their random streams, the networks' placement
and weight average, the three loss objects of a step under DDP, the fixed sample grid, the
tracked metric, the check that a checkpoint to resume fits the run's networks, and the model
file written at the end.

The stream numbers are part of the checkpoint format: a run resumed by a later release draws
the same numbers only while they stay as they are.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn

from impasto.device import nhwc_trainable
from impasto.data import make_loader, open_dataset
from impasto.errors import InputError
from impasto.gan.config import EMA_RAMPUP_RATIO, resolved_ema
from impasto.gan.model import export_model
from impasto.nets.gan import sample_latents
from impasto.train import EMA, DistInfo, EpochSampler, derive_seed, loader_workers, wrap_ddp
from impasto.train.run import Run

__all__ = [
    "CHECKPOINT_PREFIX",
    "STREAM_AUGMENT",
    "STREAM_DATA",
    "STREAM_LATENTS",
    "STREAM_METRIC",
    "STREAM_SAMPLES",
    "STREAM_TORCH",
    "MetricTracker",
    "check_resume_fits",
    "checkpoint_kind",
    "log_sample_grid",
    "write_model_file",
    "loss_phases",
    "metric_reference",
    "place_networks",
    "refuse_output_folder",
    "random_streams",
    "sample_grid_inputs",
    "tracked_metric",
    "training_data",
]

#: Checkpoints are ``<run>/ckpt-<step>.pt``.
CHECKPOINT_PREFIX = "ckpt"

#: Independent random streams derived from the seed (and the rank): latents, DiffAugment, the
#: global torch RNG (the penalties' draws), the data order, the sample grid, the metric.
STREAM_LATENTS, STREAM_AUGMENT, STREAM_TORCH, STREAM_DATA, STREAM_SAMPLES = 1, 2, 3, 4, 5
STREAM_METRIC = 6

L = TypeVar("L")


def checkpoint_kind(arch: str) -> str:
    """The ``kind`` of a GAN checkpoint: ``"gan/<arch>"``."""
    return f"gan/{arch}"


class _NetConfig(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def check_resume_fits(
    ckpt: Mapping[str, Any], net: _NetConfig, *, what: str = "GAN", needs: tuple[str, ...] = ()
) -> None:
    """Raise :class:`InputError` unless the checkpoint's network config (``extra["net"]``, and
    the ``needs`` entries of ``extra``) equals ``net``'s: one line naming the first setting
    that differs."""
    src = ckpt.get("path", "checkpoint")
    extra = ckpt.get("extra") or {}
    saved = extra.get("net")
    if not isinstance(saved, Mapping) or not all(isinstance(extra.get(k), Mapping) for k in needs):
        raise InputError(f"{src}: not a {what} training checkpoint (no network config)")
    for key, value in net.to_dict().items():
        have = saved.get(key)
        if isinstance(have, tuple):
            have = list(have)
        if have == value:
            continue
        if key == "num_classes":
            raise InputError(
                f"{src} was trained with {have} classes, but this run has {value} "
                "(check the data and --conditional)"
            )
        raise InputError(
            f"{src} was trained with {key.replace('_', ' ')} {have!r}, not {value!r}; "
            "resume with the same network settings"
        )


def refuse_output_folder(config: Any) -> None:
    """:class:`InputError` when the model file to write at the end (``config.output``) is an
    existing folder: before anything is written."""
    if config.output and Path(config.output).is_dir():
        raise InputError(f"{config.output}: is a folder; give a file name for the model file")


def write_model_file(run: Run[Any], config: Any) -> Path | None:
    """At the end of a run, on rank 0: the model file ``config.output`` (if any) from the
    run's last checkpoint (:func:`~impasto.gan.export_model`); its path, else None."""
    if not config.output or not run.info.is_main:
        return None
    return export_model(run.dir, config.output)


class _DataSettings(Protocol):
    data: str
    resolution: int
    channels: int
    hflip: bool
    seed: int
    num_workers: int
    deterministic: bool


def training_data(
    config: _DataSettings, info: DistInfo
) -> tuple[Any, EpochSampler, Callable[[int], Any]]:
    """The run's dataset (read at ``config.resolution``), this process's
    :class:`~impasto.train.EpochSampler` (its shard of every epoch, the order a function of
    the seed and the epoch) and ``loader(batch_size)``, which makes a loader over it."""
    dataset = open_dataset(config.data, resolution=config.resolution, channels=config.channels,
                           hflip=config.hflip, seed=config.seed)
    num_workers = loader_workers(config.num_workers, config.deterministic)
    sampler = EpochSampler(dataset, world_size=info.world_size, rank=info.rank,
                           seed=derive_seed(config.seed, STREAM_DATA))

    def loader(batch_size: int) -> Any:
        return make_loader(dataset, batch_size, seed=config.seed, num_workers=num_workers,
                           sampler=sampler, pin_memory=info.device.type == "cuda")

    return dataset, sampler, loader


def random_streams(
    seed: int, rank: int, device: torch.device, streams: Mapping[str, int]
) -> tuple[dict[str, torch.Generator], Callable[[int], None]]:
    """This process's named generators on ``device`` (``{name: stream number}``), seeded from
    ``seed`` and ``rank``, with the global torch RNG (the penalties' draws) seeded as
    :data:`STREAM_TORCH`; and ``reseed(step)``, which seeds them all afresh from the step (for
    a run resumed with another number of processes)."""
    gens = {name: torch.Generator(device=device) for name in streams}

    def reseed(*step: int) -> None:
        for name, stream in streams.items():
            gens[name].manual_seed(derive_seed(seed, stream, rank, *step))
        torch.manual_seed(derive_seed(seed, STREAM_TORCH, rank, *step))

    reseed()
    return gens, reseed


class _Placement(Protocol):
    channels_last: bool
    ema_beta: float | None
    ema_kimg: float | None
    ema_rampup: float | None


def place_networks(
    G: nn.Module, D: nn.Module, config: _Placement, device: torch.device
) -> tuple[torch.memory_format, EMA]:
    """Move G and D to ``device`` (NHWC when ``config.channels_last``) in training mode; the
    memory format of their inputs and the :class:`~impasto.train.EMA` of G's weights: a
    half-life of ``ema_kimg`` thousand images ramped up over the first
    :data:`~impasto.gan.config.EMA_RAMPUP_RATIO` of the run, or a fixed ``ema_beta`` with
    ``ema_rampup`` kimg of linear ramp-up (see :func:`~impasto.gan.config.resolved_ema`).
    Update it with ``ema.update(G, images_seen=..., images=...)``."""
    nhwc = config.channels_last and nhwc_trainable(device, G, D)
    memory_format = torch.channels_last if nhwc else torch.preserve_format
    for net in (G, D):
        net.to(device=device, memory_format=memory_format)
        net.train()
    ema = resolved_ema(config)
    if ema["ema_kimg"] is not None:
        return memory_format, EMA(G, half_life_images=ema["ema_kimg"] * 1000,
                                  rampup_ratio=EMA_RAMPUP_RATIO)
    rampup = None if not config.ema_rampup else max(1, round(config.ema_rampup * 1000))
    assert ema["ema_beta"] is not None
    return memory_format, EMA(G, beta=ema["ema_beta"], rampup_images=rampup)


def loss_phases(
    G: nn.Module,
    D: nn.Module,
    info: DistInfo,
    device: torch.device,
    make: Callable[[nn.Module, nn.Module], L],
) -> tuple[L, L, L]:
    """The loss objects ``make(G, D)`` of one step's three phases, wired for DDP (see
    :mod:`impasto.gan.training`): D's main phase through ``DDP(D)``, the penalty on the plain
    D, G's phase through ``DDP(G)`` and the plain, frozen D. In one process all three use the
    plain networks."""
    G_train, D_train = G, D
    if info.is_distributed:
        G_train, D_train = wrap_ddp(G, device), wrap_ddp(D, device)
    return make(G, D_train), make(G, D), make(G_train, D)


class _GridSettings(Protocol):
    seed: int
    z_dim: int
    n_samples: int


def sample_grid_inputs(
    config: _GridSettings, num_classes: int = 0
) -> tuple[Tensor, Tensor | None]:
    """The fixed latents ``(n_samples, z_dim)`` (CPU) and labels (every class in turn, or None)
    of a run's sample grids: the same at every step and after a resume."""
    g = torch.Generator().manual_seed(derive_seed(config.seed, STREAM_SAMPLES))
    z = sample_latents(config.n_samples, config.z_dim, g)
    y = torch.arange(config.n_samples) % num_classes if num_classes else None
    return z, y


#: The tag of the sample grids of G_ema (the weight average): TensorBoard's, and the file names
#: ``images/samples-ema-<step>.png``, which say which generator drew them.
SAMPLES_TAG = "samples-ema"


def log_sample_grid(run: Run[Any], images: Tensor) -> None:
    """Write ``images`` ``(N, C, H, W)`` in ``[-1, 1]``, drawn by G_ema, as the step's square
    sample grid (``images/samples-ema-<step>.png`` and TensorBoard's ``samples-ema``; rank 0
    only)."""
    if run.logger is None:
        return
    nrow = max(1, math.ceil(math.sqrt(images.shape[0])))
    run.logger.images(run.step, SAMPLES_TAG, images, nrow=nrow, value_range=(-1.0, 1.0),
                      save_png=True)


# --------------------------------------------------------------------------------------------
# the tracked metric


def metric_reference(dataset: Any, n: int, seed: int) -> Tensor:
    """``n`` real images (uint8 ``(n, C, R, R)``), a seeded choice, the same on every resume."""
    g = torch.Generator().manual_seed(derive_seed(seed, STREAM_METRIC))
    order = torch.randperm(len(dataset), generator=g)[: min(n, len(dataset))]
    return torch.stack([dataset.image_u8(int(i)) for i in order])


class MetricSettings(Protocol):
    """What :func:`tracked_metric` reads of a run's config (GAN or progressive GAN)."""

    seed: int
    z_dim: int
    metric: str


@torch.no_grad()
def tracked_metric(
    G: nn.Module,
    real_u8: Tensor,
    config: MetricSettings,
    num_classes: int,
    device: torch.device,
    amp: Callable[[], Any] | None,
) -> float:
    """The run's tracked metric (lower is better) of ``G`` against the fixed real images.

    Latents come from their own seeded generator, so measuring draws nothing from the
    training's random streams (a measured run and a resumed one stay identical)."""
    from impasto.metrics.swd import swd

    n = real_u8.shape[0]
    g = torch.Generator(device=device).manual_seed(derive_seed(config.seed, STREAM_METRIC, 1))
    fakes = []
    was_training = G.training
    G.eval()
    try:
        for start in range(0, n, 64):
            k = min(64, n - start)
            z = sample_latents(k, config.z_dim, g, device=device)
            y = None
            if num_classes:
                y = torch.arange(start, start + k, device=device) % num_classes
            with amp() if amp else contextlib.nullcontext():
                x = G(z, y) if y is not None else G(z)
            fakes.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    finally:
        G.train(was_training)
    fake_u8 = torch.cat(fakes)
    if config.metric == "swd":
        return float(swd(real_u8, fake_u8, seed=config.seed)["avg"])
    raise ValueError(f"unknown tracked metric {config.metric!r}")


class _MetricRun(MetricSettings, Protocol):
    metric_samples: int


class MetricTracker:
    """The run's tracked metric, measured on rank 0: :func:`tracked_metric` of a generator
    against :func:`metric_reference`'s real images (read at the first measurement), logged as
    ``metric/<name>`` in the step's row."""

    def __init__(self, run: Run[Any], dataset: Any, config: _MetricRun, num_classes: int,
                 amp: Callable[[], Any] | None) -> None:
        self.run, self.dataset, self.config = run, dataset, config
        self.num_classes, self.amp = num_classes, amp
        self.real: Tensor | None = None

    def __call__(self, G: nn.Module) -> float | None:
        """The value for ``G`` (None on other ranks and with no metric)."""
        config = self.config
        if not config.metric or not self.run.info.is_main:
            return None
        if self.real is None:
            self.real = metric_reference(self.dataset, config.metric_samples, config.seed)
        value = tracked_metric(G, self.real, config, self.num_classes, self.run.device,
                               self.amp)
        self.run.log({f"metric/{config.metric}": value})
        return value
