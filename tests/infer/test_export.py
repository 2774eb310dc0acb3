"""Export to TorchScript and ONNX (impasto.infer.export): the exported models match eager."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from conftest import tiny_transformer

from impasto.cli import main
from impasto.errors import InputError
from impasto.infer.export import export_model, pad_multiple

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),  # deprecated, still supported
]


def eager(net, x):
    with torch.no_grad():
        return net(x)


def test_torchscript_matches_eager_at_any_size(tmp_path):
    net = tiny_transformer()
    report = export_model(net, tmp_path / "net.pt", "torchscript", size=(40, 36))
    assert report.max_abs_diff < 1e-5
    assert [s for s, _ in report.checks] == [(1, 3, 40, 36), (2, 3, 23, 23)]
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    x = torch.rand(3, 3, 29, 51)
    with torch.no_grad():
        assert (loaded(x) - eager(net, x)).abs().max() < 1e-5
    assert pad_multiple(net) == 4


def test_cli_exports_a_model_to_onnx_and_prints_the_difference(tmp_path, capsys):
    import onnxruntime as ort

    from impasto.style.fast import save_fast_style

    net = tiny_transformer(seed=1)
    model = save_fast_style(net, tmp_path / "fast.pt", {})
    out = tmp_path / "fast.onnx"
    rc = main(["stylize", "--model", str(model), "--export", "onnx", "-o", str(out),
               "--device", "cpu"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    m = re.search(r"max abs difference to the eager model (\S+)", stdout)
    assert m and float(m.group(1)) < 1e-4
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 45, 31)
    y = sess.run(None, {"image": x.numpy()})[0]
    assert np.abs(y - eager(net, x).numpy()).max() < 1e-4


@pytest.mark.parametrize("name, fmt", [("net.pt", "onnx"), ("net.onnx", "torchscript"),
                                       ("net.pt", "tflite")])
def test_bad_format_or_suffix(tmp_path, name, fmt):
    with pytest.raises(InputError):
        export_model(tiny_transformer(), tmp_path / name, fmt)
    assert os.listdir(tmp_path) == []


def test_cli_export_needs_an_output_and_a_network(tmp_path, capsys):
    from impasto.style.fast import save_fast_style

    model = save_fast_style(tiny_transformer(), tmp_path / "fast.pt", {})
    for argv, word in (
        (["stylize", "--model", str(model), "--export", "onnx"], "-o"),
        (["stylize", "--model", str(model), "--export", "onnx", "-o", "x.pt"], ".onnx"),
        (["stylize", "c.png", "-s", "s.png", "--export", "torchscript", "-o", "x.pt"],
         "needs a network"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err and "Traceback" not in err
