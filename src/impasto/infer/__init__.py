"""Inference with feed-forward image-to-image networks: the runner, its precision and compile
decisions, tiling for large images, and export to ONNX/TorchScript.

* :mod:`impasto.infer.runner`: :class:`InferenceRunner`;
* :mod:`impasto.infer.precision`: :func:`decide_precision`, the one place that decides the
  precision (``auto|fp32|bf16|int8``) of a pipeline;
* :mod:`impasto.infer.compile_policy`: when ``torch.compile`` pays (:class:`CompilePolicy`);
* :mod:`impasto.infer.tiling`: overlapping tiles with bounded memory;
* :mod:`impasto.infer.export`: :func:`~impasto.infer.export.export_model`.

This layer sits on ``nets``, ``io`` and ``device``; it never imports ``style``, ``gan`` or the
command line.
"""

from impasto.infer.compile_policy import COMPILE_MODES, CompilePolicy
from impasto.infer.precision import (
    INFERENCE_PRECISIONS,
    InferencePrecision,
    decide_precision,
)
from impasto.infer.runner import InferenceRunner

__all__ = [
    "COMPILE_MODES",
    "INFERENCE_PRECISIONS",
    "CompilePolicy",
    "InferencePrecision",
    "InferenceRunner",
    "decide_precision",
]
