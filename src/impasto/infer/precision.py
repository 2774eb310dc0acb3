"""The precision an inference pipeline runs in, decided in one place.

A request (``auto|fp32|bf16|int8``), the device and the kind of network go in; one
:class:`InferencePrecision` comes out, made once per pipeline and handed to everything that
needs it (the runner, the float work beside the network, the int8 calibration):

* ``int8`` (:mod:`impasto.nets.int8`) for a per-style network
  (:class:`~impasto.nets.transformer.TransformerNet`) or AdaIN
  (:class:`~impasto.nets.adain.AdaINStylizer`) on a CPU where
  :func:`~impasto.nets.int8.int8_supported` (VNNI): when asked, or under ``auto`` unless the
  network is to be compiled (``compile="on"``: int8 is never compiled). Asked for where it
  cannot run, it is an :class:`~impasto.errors.InputError`. The instant styles
  (:class:`~impasto.nets.magenta.FixedCondition`, :mod:`impasto.nets.int8_magenta`) run
  int8 only when asked (:func:`int8_by_default`).
* otherwise bf16 or fp32 as :func:`impasto.device.resolve_precision` gives them (``auto``:
  bf16 where the hardware computes it fast).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from impasto.device import PRECISIONS, precision_name, resolve_precision
from impasto.errors import InputError
from impasto.infer.compile_policy import compile_mode

__all__ = [
    "INFERENCE_PRECISIONS",
    "InferencePrecision",
    "decide_precision",
    "int8_by_default",
    "int8_capable",
]

#: ``precision`` requests of inference pipelines (and ``impasto stylize --precision``).
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")


@dataclass(frozen=True)
class InferencePrecision:
    """A resolved precision (:func:`decide_precision`).

    Attributes:
        request: what was asked: ``auto|fp32|bf16|int8``.
        name: what the network runs in: ``"int8"``, ``"bf16"`` or ``"fp32"``.
        dtype: the dtype of the float network's weights and inputs (float32 for int8: the
            int8 network quantises its float32 input itself).
        work_dtype: the autocast dtype of the float work beside the network (AdaIN's style
            statistics, int8 calibration runs): ``dtype`` for bf16 and fp32; for int8 what
            ``auto`` picks among bf16 and fp32.
    """

    request: str
    name: str
    dtype: torch.dtype
    work_dtype: torch.dtype

    @property
    def int8(self) -> bool:
        """Whether the network runs in int8."""
        return self.name == "int8"


def int8_capable(kind: type[nn.Module] | None) -> bool:
    """Whether :mod:`impasto.nets.int8` (or :mod:`impasto.nets.int8_magenta`, for the instant
    styles) has an int8 version of networks of class ``kind``."""
    from impasto.nets.adain import AdaINStylizer
    from impasto.nets.magenta import CINTransformer, FixedCondition
    from impasto.nets.transformer import TransformerNet

    return kind is not None and issubclass(
        kind, (TransformerNet, AdaINStylizer, CINTransformer, FixedCondition))


def int8_by_default(kind: type[nn.Module] | None) -> bool:
    """Whether ``auto`` picks int8 for networks of class ``kind`` (where it can run): the
    per-style networks and AdaIN (31-40 dB PSNR to fp32), not the instant styles, whose int8
    results differ from fp32 by 21-35 dB (they run int8 when asked; ``docs/instant.md``)."""
    from impasto.nets.adain import AdaINStylizer
    from impasto.nets.transformer import TransformerNet

    return kind is not None and issubclass(kind, (TransformerNet, AdaINStylizer))


def decide_precision(request: str, device: torch.device, kind: type[nn.Module] | None, *,
                     compile: bool | str = "auto") -> InferencePrecision:
    """The precision a ``kind`` network runs in on ``device`` for ``request``, given the
    runner's ``compile`` setting (``auto|on|off``). :class:`InputError` for an unknown
    request, int8 for a network without an int8 version or on a device without VNNI, and bf16
    on MPS."""
    from impasto.nets.int8 import int8_supported

    mode = compile_mode(compile)
    if request not in INFERENCE_PRECISIONS:
        raise InputError(f"unknown precision '{request}'; choose from "
                         f"{', '.join(INFERENCE_PRECISIONS)}")
    if request == "int8":
        if not int8_capable(kind):
            raise InputError("precision int8 is for per-style networks, AdaIN and the "
                             "instant styles only; use auto, bf16 or fp32")
        if not int8_supported(device):
            raise InputError("precision int8 needs a CPU with VNNI (AVX512-VNNI, AVX-VNNI or "
                             "AMX) and PyTorch's quantised engine; use auto, bf16 or fp32")
        int8 = True
    else:
        int8 = (request == "auto" and mode != "on" and int8_by_default(kind)
                and int8_supported(device))
    work = resolve_precision("auto" if request == "int8" else request, device)
    if int8:
        return InferencePrecision(request, "int8", torch.float32, work)
    return InferencePrecision(request, precision_name(work), work, work)

