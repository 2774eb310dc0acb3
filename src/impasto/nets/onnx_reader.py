"""Weights out of ONNX files, read with the ``onnx`` package alone (no ``onnxruntime``).

:class:`OnnxGraph` holds one file's graph and answers what a loader needs to find a network's
layers by the graph's structure rather than by names:

* :meth:`OnnxGraph.value`: an initializer or ``Constant`` as a float32 array, or the output of
  a ``DequantizeLinear`` of initializers, dequantised as ONNX defines it:
  ``(q - zero_point) * scale``, per tensor (scalar scale) or per axis (1-D scale along
  ``axis``, default 1);
* :meth:`OnnxGraph.source`: the float tensor behind a name, looking through the
  ``QuantizeLinear`` -> ``DequantizeLinear`` pairs with which a quantised graph fake-quantises
  its activations (and through ``Reshape``, which tf2onnx puts between them);
* :meth:`OnnxGraph.quant`: the ``(scale, zero_point)`` of the ``QuantizeLinear`` applied to a
  float tensor, if any;
* :meth:`OnnxGraph.users`: the nodes of one type that read a float tensor.

Every initializer a loader looks at is recorded in :attr:`OnnxGraph.read`, so a test can check
that a mapping left none unread.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from impasto.errors import InputError, escape_line

__all__ = ["OnnxGraph", "OnnxStructureError", "dequantize"]

#: Ops that carry a float tensor on unchanged up to quantisation (looked through by source).
_PASS = ("QuantizeLinear", "DequantizeLinear", "Reshape")


class OnnxStructureError(InputError):
    """An ONNX graph is not the network a loader expects (one line naming the difference)."""


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
               axis: int = 1) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(q - zero_point) * scale`` as float32; a 1-D ``scale``
    (and ``zero_point``) of more than one value runs along ``axis`` of ``q``."""
    x = q.astype(np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    zp = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point, np.float64)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x - zp) * scale).astype(np.float32)


class OnnxGraph:
    """One ONNX file's graph, indexed for loaders (see the module doc). Raises
    :class:`~impasto.errors.InputError` (one line) when the ``onnx`` package is missing or the
    file is not a readable ONNX model."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            raise InputError("reading ONNX weight files needs the 'onnx' package "
                             "(pip install onnx)") from None
        self._to_array = numpy_helper.to_array
        self.path = str(path)
        try:
            model = onnx.load(self.path)
        except Exception as e:  # noqa: BLE001  (protobuf decode errors have no common base)
            raise InputError(escape_line(f"{path}: not a readable ONNX model "
                                         f"({type(e).__name__})")) from None
        graph = model.graph
        #: The nodes in the file's (topological) order.
        self.nodes: list[Any] = list(graph.node)
        #: Names of the graph's inputs that are not initializers, in order.
        self.inputs: list[str] = [i.name for i in graph.input]
        #: Names of the graph's outputs.
        self.outputs: list[str] = [o.name for o in graph.output]
        self.initializers: dict[str, Any] = {t.name: t for t in graph.initializer}
        self.inputs = [n for n in self.inputs if n not in self.initializers]
        self._constants: dict[str, Any] = {}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
            if node.op_type == "Constant":
                self._constants[node.output[0]] = node.attribute[0].t
        #: Initializers a loader has looked at.
        self.read: set[str] = set()
        #: Float tensors whose fake quantisation a loader has taken over.
        self.qmapped: set[str] = set()
        self._cache: dict[str, np.ndarray] = {}

    # -- values

    def is_constant(self, name: str) -> bool:
        """Whether ``name`` is an initializer, a ``Constant`` or a ``DequantizeLinear`` of
        them (a weight)."""
        if name in self.initializers or name in self._constants:
            return True
        node = self.producer.get(name)
        return (node is not None and node.op_type == "DequantizeLinear"
                and all(self.is_constant(i) for i in node.input if i))

    def array(self, name: str) -> np.ndarray:
        """The raw array of an initializer or ``Constant`` (marked read)."""
        if name in self.initializers:
            self.read.add(name)
            return self._to_array(self.initializers[name])
        if name in self._constants:
            return self._to_array(self._constants[name])
        raise self.error(f"'{name}' is not a constant")

    def value(self, name: str) -> np.ndarray:
        """A constant as float32: an initializer, a ``Constant``, or a ``DequantizeLinear`` of
        them, dequantised (see :func:`dequantize`)."""
        if name in self._cache:
            return self._cache[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            q, scale = self.array(node.input[0]), self.array(node.input[1])
            zp = self.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            out = dequantize(q, scale, zp, self.attr(node, "axis", 1))
        else:
            out = self.array(name).astype(np.float32)
        self._cache[name] = out
        return out

    def weight_name(self, name: str) -> str:
        """The initializer holding the data of a weight (through its ``DequantizeLinear``)."""
        node = self.producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            return node.input[0]
        return name

    # -- structure

    def source(self, name: str) -> str:
        """The float tensor ``name`` carries: looks back through quantise/dequantise pairs and
        ``Reshape`` (whose shape constant it marks read)."""
        while True:
            node = self.producer.get(name)
            if node is None or node.op_type not in _PASS or self.is_constant(name):
                return name
            if node.op_type == "Reshape":
                self.array(node.input[1])
            name = node.input[0]

    def quant(self, name: str) -> tuple[float, int] | None:
        """``(scale, zero_point)`` of the ``QuantizeLinear`` that fake-quantises the float
        tensor ``name`` (per tensor, int8), or None."""
        for node in self.consumers.get(name, ()):
            if node.op_type == "QuantizeLinear":
                scale = self.array(node.input[1])
                zp = self.array(node.input[2]) if len(node.input) > 2 else np.zeros((), np.int8)
                if scale.size != 1 or zp.dtype != np.int8:
                    raise self.error(f"activation quantisation of '{name}' is not per-tensor int8")
                return float(scale.reshape(())), int(zp.reshape(()))
        return None

    def users(self, name: str, op_type: str) -> list[Any]:
        """The ``op_type`` nodes that read the float tensor ``name`` (looking through
        quantise/dequantise pairs and ``Reshape``)."""
        found: list[Any] = []
        seen: set[str] = set()
        todo = [name]
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            for node in self.consumers.get(t, ()):
                if node.op_type == op_type and node not in found:
                    found.append(node)
                if node.op_type in _PASS:
                    todo.append(node.output[0])
        return found

    def user(self, name: str, op_type: str, *, other: str | None = None) -> Any:
        """The one ``op_type`` node reading ``name`` (and, if given, also ``other``)."""
        nodes = [n for n in self.users(name, op_type)
                 if other is None or other in {self.source(i) for i in n.input}]
        if len(nodes) != 1:
            raise self.error(f"expected one {op_type} reading '{name}', found {len(nodes)}")
        return nodes[0]

    def of_type(self, op_type: str) -> list[Any]:
        """The nodes of one type, in the file's order."""
        return [n for n in self.nodes if n.op_type == op_type]

    @staticmethod
    def attr(node: Any, name: str, default: Any = None) -> Any:
        """A node attribute as a Python value (``default`` when absent)."""
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def error(self, problem: str) -> OnnxStructureError:
        """An :class:`OnnxStructureError` naming this file."""
        return OnnxStructureError(escape_line(f"{self.path}: {problem}"))

    def unread(self) -> list[str]:
        """Initializers no loader looked at."""
        return sorted(set(self.initializers) - self.read)

    def mark_read(self, names: Iterable[str]) -> None:
        """Marks initializers as looked at (for ones a loader checks by other means)."""
        self.read.update(n for n in names if n in self.initializers)
