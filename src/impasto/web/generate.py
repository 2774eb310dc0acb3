"""The Generate tab's work, without the page: a grid of samples from a GAN under ``--runs``
through :class:`~impasto.gan.GanGenerator` (the pipeline of ``impasto gan sample``), written
with the same grid and metadata."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from impasto.errors import InputError
from impasto.web.catalog import Catalog

__all__ = ["Sampler"]

MAX_GRID = 8  # images a side


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
