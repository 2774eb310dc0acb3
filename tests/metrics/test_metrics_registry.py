"""The metrics package: its registry and its place in the layering."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import impasto.metrics as metrics

ALLOWED = (
    "impasto.errors", "impasto._fileutil", "impasto.registry", "impasto.device", "impasto.io",
    "impasto.nets", "impasto.losses", "impasto.metrics",
    # optical flow for the flicker metric (a low layer: tests/test_layering.py)
    "impasto.temporal",
)
# The front end (opening sets, the extractors, the command) also reaches the layers whose
# objects it reads or measures, but only inside functions: `import impasto.metrics` stays light
# and a layer above (GAN training computing FID) may import the metrics without a cycle.
FRONT_END = {
    "sources.py": ("impasto.data", "impasto.gan"),
    "extractors.py": ("impasto.classify",),
    "evaluation.py": ("impasto",),
    "artfid.py": ("impasto.data",),
}


def test_registry_entries_are_usable():
    assert set(metrics.METRICS) == {"fid", "kid", "is", "pr", "swd"}
    for name, info in metrics.METRICS.items():
        assert callable(info.func) and info.description and info.input in {
            "features",
            "probs",
            "images",
        }, name
    x = np.random.default_rng(0).normal(size=(20, 3))
    assert metrics.METRICS["fid"].func(x, x) < 1e-9
    assert metrics.METRICS["pr"].func(x, x) == {"precision": 1.0, "recall": 1.0}


def test_metrics_import_only_lower_layers():
    folder = Path(metrics.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "impasto" or name.startswith("impasto."):
                    front = FRONT_END.get(path.name, ())
                    lazy = id(node) not in top_level and any(
                        name == p or name.startswith(p + ".") for p in front
                    )
                    assert name.startswith(ALLOWED) or lazy, f"{path.name} imports {name}"
