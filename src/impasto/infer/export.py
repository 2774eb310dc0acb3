"""Export a feed-forward style network to ONNX or TorchScript, checked against the eager model.

``export_model(net, "model.onnx", "onnx")`` writes a float32 model that maps RGB
``(N, 3, H, W)`` in ``[0, 1]`` to the same shape, for any batch size and image size (ONNX: the
input is named ``image``, the output ``stylized``; dynamic batch, height and width). The network
is wrapped so that the padding to its stride multiple (4 for a TransformerNet, 8 for AdaIN) and
the crop back are part of the exported graph.

After writing, the file is loaded again (``torch.jit.load``; for ONNX an onnxruntime
``InferenceSession``) and run on test inputs of two sizes; the largest absolute difference to
the eager model is returned in an :class:`ExportReport` (the CLI prints it). Files are written
atomically.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from impasto._fileutil import atomic_open, reason
from impasto.errors import InputError

__all__ = ["EXPORT_FORMATS", "ExportReport", "export_model", "pad_multiple"]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
_SUFFIX = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript", ".jit")}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how closely the exported model matches."""

    path: Path
    format: str
    max_abs_diff: float  # over all checks
    checks: tuple[tuple[tuple[int, ...], float], ...]  # (input shape, max abs diff)
    runtime: str  # what ran the exported model: "onnxruntime x.y" or "torch.jit"
    seconds: float

    def summary(self) -> str:
        sizes = ", ".join("x".join(map(str, s[-2:])) for s, _ in self.checks)
        return (f"wrote {self.path} ({self.format}); checked with {self.runtime} at {sizes}: "
                f"max abs difference to the eager model {self.max_abs_diff:.3g}")


def pad_multiple(net: nn.Module) -> int:
    """The side multiple a network pads its input to (1 when unknown)."""
    value = getattr(net, "pad_multiple", None)
    if isinstance(value, int) and value > 0:
        return value
    name = type(net).__name__
    if name == "AdaINStylizer":
        from impasto.nets.adain import STRIDE

        return STRIDE
    if name == "TransformerNet":
        from impasto.nets import transformer

        return int(getattr(transformer, "MULTIPLE", 4))
    return 1


class _PadCrop(nn.Module):
    """Pads ``(N, 3, H, W)`` by reflection to a multiple of ``multiple`` (as the network would)
    with shape arithmetic that export keeps symbolic, runs ``net`` and crops back."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: Tensor) -> Tensor:
        if self.multiple == 1:
            return self.net(x).clamp(0.0, 1.0)
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        ph = (m - h % m) % m
        pw = (m - w % m) % m
        y = self.net(F.pad(x, (0, pw, 0, ph), mode="reflect"))
        return y[..., :h, :w].clamp(0.0, 1.0)


def _check_suffix(path: Path, fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    if path.suffix.lower() not in _SUFFIX[fmt]:
        raise InputError(f"{path}: a {fmt} file should end in {' or '.join(_SUFFIX[fmt])}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")


def export_model(
    net: nn.Module,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    opset: int = 18,
    onnx_exporter: str = "dynamo",
) -> ExportReport:
    """Export ``net`` (eager, float32, CPU) to ``path`` as ``fmt`` (``"onnx"`` or
    ``"torchscript"``), then check it (module doc). ``size`` is the example input's
    ``(H, W)``; the check also runs a second, odd size. ``onnx_exporter``: ``"dynamo"``
    (``torch.export``-based, the supported one; tens of seconds for symbolic shapes) or
    ``"legacy"`` (PyTorch's older tracing exporter: well under a second, deprecated); the
    dynamo exporter falls back to the legacy one if it fails. Raises :class:`InputError` for a
    bad path or format and when the network cannot be exported."""
    if onnx_exporter not in ("dynamo", "legacy"):
        raise InputError(f"unknown ONNX exporter {onnx_exporter!r}; choose dynamo or legacy")
    t0 = time.perf_counter()
    target = Path(path)
    _check_suffix(target, fmt)
    net = net.eval().requires_grad_(False).to("cpu", torch.float32)
    net = net.to(memory_format=torch.contiguous_format)
    model = _PadCrop(net, pad_multiple(net)).eval()
    g = torch.Generator().manual_seed(seed)
    h, w = size
    example = torch.rand(1, 3, h, w, generator=g)
    checks_in = [example, torch.rand(2, 3, h // 2 + 3, w // 2 + 5, generator=g)]
    with torch.inference_mode():
        expected = [model(x) for x in checks_in]
    if fmt == "torchscript":
        runtime = "torch.jit"
        run = _export_torchscript(model, example, target)
    else:
        run, runtime = _export_onnx(model, example, target, opset, onnx_exporter)
    diffs = []
    for x, y in zip(checks_in, expected):
        got = run(x)
        if got.shape != y.shape:
            raise InputError(f"{target}: the exported model returned shape {tuple(got.shape)} "
                             f"for input {tuple(x.shape)}, not {tuple(y.shape)}")
        diffs.append((tuple(x.shape), float((got - y).abs().max())))
    return ExportReport(target, fmt, max(d for _, d in diffs), tuple(diffs), runtime,
                        time.perf_counter() - t0)


def _export_torchscript(model: nn.Module, example: Tensor, target: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic, deprecation
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as e:  # noqa: BLE001
            raise InputError(
                f"cannot export to TorchScript: {type(e).__name__}: {reason(e)}"
            ) from None
        buf = io.BytesIO()
        torch.jit.save(traced, buf)  # (deprecated in favour of torch.export, still supported)
        with atomic_open(target, "wb") as f:
            f.write(buf.getvalue())
        loaded = torch.jit.load(str(target), map_location="cpu")

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return loaded(x)

    return run


def _export_onnx(model: nn.Module, example: Tensor, target: Path, opset: int, exporter: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("ONNX export needs onnx, onnxscript and onnxruntime: "
                         "pip install 'impasto[export]'") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.onnx")
    names = dict(input_names=["image"], output_names=["stylized"])
    if exporter == "dynamo":
        dims = {
            0: torch.export.Dim("batch", min=1, max=1024),
            2: torch.export.Dim("height", min=16, max=1 << 15),
            3: torch.export.Dim("width", min=16, max=1 << 15),
        }
        options: dict = dict(dynamic_shapes=(dims,), opset_version=opset, dynamo=True,
                             external_data=False, **names)
    else:
        axes = {0: "batch", 2: "height", 3: "width"}
        options = dict(dynamo=False, dynamic_axes={"image": axes, "stylized": axes},
                       opset_version=min(opset, 17), **names)
    try:
        _run_exporter(model, example, tmp, options)
    except ImportError as e:
        _unlink(tmp)
        raise InputError(f"ONNX export needs onnx and onnxscript ({reason(e)}): "
                         "pip install 'impasto[export]'") from None
    except Exception as e:  # noqa: BLE001
        _unlink(tmp)
        if exporter != "dynamo":
            raise InputError(f"cannot export to ONNX: {type(e).__name__}: {reason(e)}") from None
        log.warning("the dynamo ONNX exporter failed (%s); trying the legacy exporter", reason(e))
        return _export_onnx(model, example, target, opset, "legacy")
    with atomic_open(target, "wb") as f:
        f.write(tmp.read_bytes())
    _unlink(tmp)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run, f"onnxruntime {ort.__version__} ({exporter} exporter)"


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _run_exporter(model: nn.Module, example: Tensor, path: Path, options: dict) -> None:
    """``torch.onnx.export`` with its progress prints and warnings silenced."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), verbose=False, **options)
    finally:
        quiet.setLevel(level)
