"""The malicious-pickle drill (#13): every command that loads a file (checkpoint, model file,
weight file, dataset cache, numpy array) is fed files whose pickle would create a marker file
if any of its code ran: a torch.save archive (the format of checkpoints and model files) and a
bare pickle (torch's format before 1.6), or an object array for the numpy readers. Each must
end with exit status 2 and one line, and the marker must not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import drillkit
import numpy as np
import pytest
from drillkit import (
    CLS_TINY,
    GAN_TINY,
    SHALLOW,
    Trap,
    checkpoint_keys,
    cli,
    one_line,
    trap_pickle,
    trap_zip,
)

drill_world = drillkit.drill_world  # a fixture
pytestmark = pytest.mark.usefixtures("one_thread")

Argv = Callable[[SimpleNamespace, Path, Path], list[Any]]

#: command -> (the file's name, the checkpoint kind its archive pretends to be, the command
#: line given the world ``w``, the file ``f`` and a scratch folder ``t``).
LOADERS: dict[str, tuple[str, str | None, Argv]] = {
    "gan-sample": ("ckpt-000000001.pt", "gan/dcgan",
                   lambda w, f, t: ["gan", "sample", f, "--grid", t / "g.png", "-n", "4"]),
    "gan-interpolate": ("ckpt.pt", "gan/dcgan",
                        lambda w, f, t: ["gan", "interpolate", f, "--seeds", "1,2", "--frames",
                                         "3", "-o", t / "a.gif"]),
    "gan-train-resume": ("ckpt.pt", "gan/dcgan",
                         lambda w, f, t: ["gan", "train", "--resume", f, *GAN_TINY]),
    "gan-train-cache": ("cache.pt", None,
                        lambda w, f, t: ["gan", "train", f, "--run", t / "r", "--steps", "1",
                                         *GAN_TINY]),
    "classify-train-resume": ("ckpt.pt", "classify/lenet",
                              lambda w, f, t: ["classify", "train", "--resume", f, *CLS_TINY]),
    "classify-train-cache": ("cache.pt", None,
                             lambda w, f, t: ["classify", "train", f, "--run", t / "r",
                                              "--steps", "1", *CLS_TINY]),
    "classify-eval": ("model.pt", "classify/lenet",
                      lambda w, f, t: ["classify", "eval", f, w.digits]),
    "classify-predict": ("model.pt", "classify/lenet",
                         lambda w, f, t: ["classify", "predict", f, w.photo]),
    "fast-style-train-resume": ("ckpt.pt", "fast-style/transformer",
                                lambda w, f, t: ["fast-style", "train", "--resume", f, "-q"]),
    "fast-style-train-vgg": ("vgg.pth", None,
                             lambda w, f, t: ["fast-style", "train", w.images, "-s", w.photo,
                                              "-o", t / "m.pt", "--steps", "1",
                                              "--vgg-weights", f, "-q"]),
    "fast-style-info": ("model.pt", "fast-style/transformer",
                        lambda w, f, t: ["fast-style", "info", f]),
    "stylize-model": ("model.pt", "fast-style/transformer",
                      lambda w, f, t: ["stylize", w.photo, "--model", f, "-o", t / "o.png",
                                       "-q"]),
    "stylize-decoder": ("decoder.pt", "adain/decoder",
                        lambda w, f, t: ["stylize", w.photo, "--method", "adain", "--decoder", f,
                                         "-s", w.photo, "-o", t / "o.png", "-q"]),
    "stylize-vgg": ("vgg.pth", None,
                    lambda w, f, t: ["stylize", w.photo, "-s", w.photo, "-o", t / "o.png",
                                     "--vgg-weights", f, *SHALLOW]),
    "adain-train-resume": ("ckpt.pt", "adain/decoder",
                           lambda w, f, t: ["adain", "train", "--resume", f, "-q"]),
    "adain-train-vgg": ("vgg.pth", None,
                        lambda w, f, t: ["adain", "train", "--content", w.images, "--styles",
                                         w.images, "-o", t / "d.pt", "--steps", "1",
                                         "--vgg-weights", f, "-q"]),
    "metrics-generator": ("ckpt-000000001.pt", "gan/dcgan",
                          lambda w, f, t: ["metrics", "swd", w.images, f, "-n", "8"]),
    "metrics-inception-weights": ("inception.pth", None,
                                  lambda w, f, t: ["metrics", "fid", w.images, w.images,
                                                   "--weights", f, "--device", "cpu"]),
    "metrics-vgg-weights": ("vgg.pth", None,
                            lambda w, f, t: ["metrics", "fid", w.images, w.images, "--extractor",
                                             "vgg19", "--weights", f, "--device", "cpu"]),
    "metrics-classifier": ("model.pt", "classify/lenet",
                           lambda w, f, t: ["metrics", "fid", w.images, w.images, "--extractor",
                                            f"classifier:{f}", "--device", "cpu"]),
}

#: The numpy readers: a statistics file, an image array.
NUMPY_LOADERS: dict[str, tuple[str, Argv]] = {
    "metrics-stats-npz": ("stats.npz", lambda w, f, t: ["metrics", "fid", f, w.images,
                                                        "--device", "cpu"]),
    "gan-train-npy": ("images.npy", lambda w, f, t: ["gan", "train", f, "--run", t / "r",
                                                     "--steps", "1", *GAN_TINY]),
}

CASES = ([pytest.param(name, variant, id=f"{name}-{variant}")
          for name in LOADERS for variant in ("zip", "pickle")]
         + [pytest.param(name, variant, id=f"{name}-{variant}")
            for name in NUMPY_LOADERS for variant in ("object-array", "pickle")])

#: What each refusal says: the file holds pickled objects (a torch.save archive or pickle
#: that the safe reader refused), or the file is not what the command reads at all.
SAFETY = "not loaded for safety"


def test_the_drill_covers_the_issue():
    assert len(CASES) >= 42


def _trap(name: str, variant: str, t: Path, marker: Path) -> Path:
    if name in NUMPY_LOADERS:
        f = t / NUMPY_LOADERS[name][0]
        if variant == "object-array":
            with open(f, "wb") as fh:  # np.save would add .npy to an .npz name
                np.save(fh, np.array([Trap(marker)], dtype=object), allow_pickle=True)
        else:
            trap_pickle(f, marker)
        return f
    fname, kind, _ = LOADERS[name]
    f = t / fname
    if variant == "zip":
        return trap_zip(f, marker, checkpoint_keys(kind) if kind else None)
    return trap_pickle(f, marker)


@pytest.mark.parametrize("name, variant", CASES)
def test_a_malicious_pickle_runs_nothing(name, variant, drill_world, tmp_path):
    marker = tmp_path / "PWNED"
    f = _trap(name, variant, tmp_path, marker)
    argv = (NUMPY_LOADERS[name][1] if name in NUMPY_LOADERS else LOADERS[name][2])(
        drill_world, f, tmp_path)
    rc, out, err = cli(argv)
    assert not marker.exists(), f"{name}: the pickle ran"
    assert rc == 2, err
    line = one_line(err)
    assert line.startswith("impasto") and f.name in line, line
    assert SAFETY in line or "not a" in line, line
