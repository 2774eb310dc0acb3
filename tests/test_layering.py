"""The package's layers (docs/design.md): lower layers never import higher ones, lazy imports
inside functions included; the library never imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import impasto

SRC = Path(impasto.__file__).parent

#: Each layer and the impasto packages it must never import (the layers above it).
FAMILIES = ("impasto.style", "impasto.gan", "impasto.classify")
ABOVE = ("impasto.cli", "impasto.families", "impasto.web", "impasto.demo")
#: impasto.temporal (optical flow, warping; OpenCV) sits above io and below metrics and the
#: families, which use it for video.
LOW = ("impasto.temporal",)
RULES = {
    "io": (*LOW, "impasto.nets", "impasto.data", "impasto.train", "impasto.infer",
           "impasto.metrics", *FAMILIES, *ABOVE),
    "nets": (*LOW, "impasto.data", "impasto.train", "impasto.infer", "impasto.metrics",
             *FAMILIES, *ABOVE),
    "losses": (*LOW, "impasto.nets", "impasto.data", "impasto.train", "impasto.infer",
               "impasto.metrics", *FAMILIES, *ABOVE),
    "data": ("impasto.train", "impasto.infer", "impasto.metrics", *FAMILIES, *ABOVE),
    "train": ("impasto.infer", "impasto.metrics", *FAMILIES, *ABOVE),
    "infer": ("impasto.data", "impasto.train", "impasto.metrics", *FAMILIES, *ABOVE),
    "temporal": ("impasto.nets", "impasto.losses", "impasto.data", "impasto.train",
                 "impasto.infer", "impasto.metrics", *FAMILIES, *ABOVE),
    "style": ("impasto.gan", "impasto.classify", *ABOVE),
    "gan": ("impasto.style", "impasto.classify", *ABOVE),
    "classify": ("impasto.style", "impasto.gan", *ABOVE),
    "metrics": ABOVE,
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("impasto")}


@pytest.mark.parametrize("layer", list(RULES))
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files, layer
    bad = {str(f.relative_to(SRC)): sorted(n for n in imports_of(f)
                                           if n.startswith(RULES[layer]))
           for f in files}
    assert not {f: b for f, b in bad.items() if b}


def test_the_library_never_imports_the_command_line() -> None:
    bad = [str(f.relative_to(SRC)) for f in sorted(SRC.rglob("*.py"))
           if f.parts[len(SRC.parts)] not in ("cli", "__main__.py")
           and any(n.startswith("impasto.cli") for n in imports_of(f))]
    assert not bad
