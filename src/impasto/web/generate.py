"""The Generate tab's work, without the page: a grid of samples from a GAN under ``--runs``
through :class:`~impasto.gan.GanGenerator` (the pipeline of ``impasto gan sample``), written
with the same grid and metadata; and an interpolation video between seeds through
:meth:`GanGenerator.interpolate <impasto.gan.GanGenerator.interpolate>` (that of ``impasto gan
interpolate``: slerp between the seeds' latents), as an MP4."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.web.catalog import Catalog

__all__ = ["Sampler", "check_interpolation"]

MAX_GRID = 8  # images a side
MAX_FRAMES = 600  # frames of an interpolation video
VIDEO_SIDE = 256  # an interpolation video's frames are enlarged (nearest) to at least this


class Sampler:
    """Loads GANs of the catalog (the last one kept) and samples grids from them."""

    def __init__(self, catalog: Catalog, *, device: str = "auto") -> None:
        self.catalog = catalog
        self.device = device
        self._lock = threading.Lock()
        self._loaded: tuple[str, Any] | None = None

    def generator(self, name: str) -> Any:
        from impasto.gan.pipeline import GanGenerator

        with self._lock:
            if self._loaded is None or self._loaded[0] != name:
                if self.catalog.get(name).family != "gan":
                    raise InputError(f"{name!r} is not a GAN")
                self._loaded = None  # the previous one goes before the next loads
                self._loaded = (name, GanGenerator.from_file(self.catalog.path(name),
                                                             self.device))
            return self._loaded[1]

    def classes(self, name: str) -> list[str]:
        """A conditional GAN's class names (empty for an unconditional one)."""
        return list(self.generator(name).classes)

    def grid(self, name: str, *, seed: int, truncation: float | None, side: int,
             class_: str | None, out: Path) -> Path:
        """``side`` x ``side`` samples of the GAN ``name`` drawn from ``seed`` as one PNG at
        ``out`` (with its metadata); ``truncation``: None or in (0, 4]; ``class_``: a class
        name of a conditional model (None: the classes in turn)."""
        from impasto.gan.pipeline import image_grid, sample_metadata
        from impasto.io import save_image

        if not 1 <= side <= MAX_GRID:
            raise InputError(f"the grid has 1 to {MAX_GRID} images a side, not {side}")
        if truncation is not None and not 0 < truncation <= 4:
            raise InputError(f"truncation must lie in (0, 4], not {truncation}")
        if not 0 <= seed < 2**63:
            raise InputError(f"seed must be a whole number from 0, not {seed}")
        gen = self.generator(name)
        n = side * side
        images = gen(n, seed=seed, truncation=truncation, class_=class_ or None)
        meta = sample_metadata(Path(name).name, seed, n, truncation, class_ or None)
        return save_image(image_grid(images, side), out, metadata=meta)

    def interpolation(self, job: Any, name: str, *, seeds: list[int], frames: int, fps: float,
                      truncation: float | None, class_: str | None, loop: bool,
                      out: Path) -> Path | None:
        """An MP4 at ``out`` of ``frames`` frames at ``fps`` along the slerp path through the
        latents of ``seeds`` (:meth:`GanGenerator.interpolate`, the frames of ``impasto gan
        interpolate``; back to the first seed with ``loop``), each frame enlarged by a whole
        factor (nearest neighbour) to at least :data:`VIDEO_SIDE` px. Reports frames done and
        the latest frame to ``job`` and stops when it is cancelled (then returns None and
        leaves nothing behind)."""
        import math

        import torch

        from impasto.io import to_pil
        from impasto.io.video import VideoWriter

        check_interpolation(seeds, frames, fps, truncation)
        gen = self.generator(name)
        scale = max(1, math.ceil(VIDEO_SIDE / max(gen.resolution, 1)))
        side = gen.resolution * scale
        writer = VideoWriter(out, (side, side), fps)

        def write(done: int, total: int, images: torch.Tensor) -> None:
            if job.cancelled():
                raise _Cancelled
            if not bool(torch.isfinite(images).all()):
                raise InputError(f"{name}: the generator's outputs are NaN or infinite (the "
                                 "training had diverged); use an earlier checkpoint")
            x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
            x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
            writer.write(x)
            job.report(done, total, preview=to_pil(x[-1]), message=f"frame {done} of {total}")

        try:
            gen.interpolate(seeds, frames, truncation=truncation, class_=class_ or None,
                            loop=loop, progress=write, batch_size=8)
        except _Cancelled:
            writer.abort()
            return None
        except BaseException:
            writer.abort()
            raise
        return writer.close()


def check_interpolation(seeds: list[int], frames: int, fps: float,
                        truncation: float | None) -> None:
    """:class:`InputError` for settings an interpolation video does not take."""
    if len(seeds) < 2:
        raise InputError(f"an interpolation needs at least two seeds, got {len(seeds)}")
    if not all(0 <= s < 2**63 for s in seeds):
        raise InputError("seeds must be whole numbers from 0")
    if not 2 <= frames <= MAX_FRAMES:
        raise InputError(f"frames must be from 2 to {MAX_FRAMES}, not {frames}")
    if not 1 <= fps <= 60:
        raise InputError(f"frames per second must be from 1 to 60, not {fps:g}")
    if truncation is not None and not 0 < truncation <= 4:
        raise InputError(f"truncation must lie in (0, 4], not {truncation:g}")


class _Cancelled(Exception):
    """An interpolation was cancelled between two batches of frames."""
