"""The inference layer sits on nets, io and device: nothing under impasto/infer imports style,
gan or the command line, and impasto/io imports nothing of ours but the leaf modules."""

from __future__ import annotations

import ast
from pathlib import Path

import impasto

SRC = Path(impasto.__file__).parent


def our_imports(folder: str) -> dict[str, set[str]]:
    """``{file: {impasto modules it imports}}`` for the files under ``folder`` (lazy imports
    inside functions included)."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        found[str(path.relative_to(SRC))] = {n for n in names if n.startswith("impasto")}
    return found


def test_infer_imports_only_lower_layers():
    imports = our_imports("infer")
    assert "infer/runner.py" in imports and "infer/precision.py" in imports
    allowed = ("impasto.infer", "impasto.nets", "impasto.io", "impasto.device",
               "impasto.errors", "impasto._fileutil")
    bad = {f: sorted(n for n in names if not n.startswith(allowed))
           for f, names in imports.items()}
    assert not {f: b for f, b in bad.items() if b}


def test_io_imports_only_leaf_modules():
    imports = our_imports("io")
    assert "io/video.py" in imports
    allowed = ("impasto.io", "impasto.errors", "impasto._fileutil")
    bad = {f: sorted(n for n in names if not n.startswith(allowed))
           for f, names in imports.items()}
    assert not {f: b for f, b in bad.items() if b}
