"""What the studio finds under ``--runs``: per-style model files, AdaIN decoders and GANs (model
files, checkpoints and run folders), and the one way a page's choice becomes a path there.

The page only ever offers entries of the catalog, by their path relative to ``--runs``;
:func:`resolve_under` turns such a name back into a path and refuses anything that leads outside
``--runs`` (``..``, an absolute path, a symbolic link that points out).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import InputError

__all__ = ["Catalog", "Entry", "resolve_under", "scan"]

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".pt", ".safetensors")
MAX_DEPTH = 4  # folders below --runs that are looked into
MAX_FILES = 500  # model files read at most (a huge folder does not stall the start)


@dataclass(frozen=True)
class Entry:
    """One model: ``name`` is its path relative to the runs folder (what the page shows and
    sends back), ``kind`` its model kind (``"fast-style/transformer"``, ``"adain/decoder"``,
    ``"gan/dcgan"``, ...), ``label`` a short description, ``thumbnail`` a style picture (uint8
    ``(3, h, w)`` tensor) or None."""

    name: str
    kind: str
    label: str
    thumbnail: Any = None

    @property
    def family(self) -> str:
        return self.kind.split("/", 1)[0]


@dataclass
class Catalog:
    root: Path | None
    entries: list[Entry] = field(default_factory=list)

    def of(self, family: str) -> list[Entry]:
        return [e for e in self.entries if e.family == family]

    def get(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise InputError(f"{name!r} is not a model under the runs folder")

    def path(self, name: str) -> Path:
        """The file or run folder of the catalog entry ``name`` (checked to lie under root)."""
        self.get(name)
        if self.root is None:
            raise InputError("no runs folder was given (impasto serve --runs DIR)")
        return resolve_under(self.root, name)


def resolve_under(root: str | os.PathLike[str], name: str) -> Path:
    """``root / name`` with every link resolved; :class:`InputError` when that leaves
    ``root`` (path traversal) or does not exist."""
    base = Path(root).resolve()
    if not name or os.path.isabs(name) or "\0" in name:
        raise InputError(f"{name!r}: not a path inside the runs folder")
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise InputError(f"{name!r}: outside the runs folder")
    if not target.exists():
        raise InputError(f"{name!r}: no such file or folder in the runs folder")
    return target


def _describe(path: Path, root: Path) -> Entry | None:
    """The catalog entry of one model file or checkpoint, or None when it holds no model."""
    from impasto.train.modelfile import load_model

    try:
        model = load_model(path)
    except InputError as e:
        log.debug("not a model: %s", e)
        return None
    name = path.relative_to(root).as_posix()
    extra = model.extra or {}
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    label = name
    thumb = None
    if model.family == "fast-style":
        style = meta.get("style") if isinstance(meta, dict) else None
        if isinstance(style, dict) and style.get("name"):
            label = f"{style['name']} ({name})"
        thumb = extra.get("thumbnail")
    return Entry(name, model.kind, label, thumb)


def _is_run_folder(folder: Path) -> bool:
    return (folder / "latest.json").is_file() or any(folder.glob("ckpt-*.pt"))


def scan(root: str | os.PathLike[str] | None) -> Catalog:
    """The models under ``root`` (None: an empty catalog). A run folder is one entry (its
    latest checkpoint); its checkpoints are not listed one by one. Unreadable files are
    skipped."""
    if root is None:
        return Catalog(None)
    base = Path(root).resolve()
    if not base.is_dir():
        raise InputError(f"{root}: the runs folder does not exist or is not a folder")
    entries: list[Entry] = []
    seen = 0
    for folder, dirs, files in os.walk(base, followlinks=False):
        here = Path(folder)
        depth = len(here.relative_to(base).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        if here != base and _is_run_folder(here):
            from impasto.train.manager import resolve_checkpoint

            try:
                latest = resolve_checkpoint(here)
            except InputError:
                continue
            entry = _describe(latest, base)
            if entry is not None:
                rel = here.relative_to(base).as_posix()
                entries.append(Entry(rel, entry.kind, f"{rel}/ (run folder)", entry.thumbnail))
            dirs[:] = [d for d in dirs if d not in ("images", "checkpoints", "tb", "logs")]
            continue
        for f in sorted(files):
            if not f.endswith(MODEL_SUFFIXES) or f.startswith("."):
                continue
            seen += 1
            if seen > MAX_FILES:
                log.warning("more than %d model files under %s: the rest are not listed",
                            MAX_FILES, base)
                return Catalog(base, entries)
            try:  # a link that leads out of the runs folder is not followed
                path = resolve_under(base, (here / f).relative_to(base).as_posix())
            except InputError:
                continue
            entry = _describe(path, base) if path == here / f else None
            if entry is not None:
                entries.append(entry)
    return Catalog(base, entries)
