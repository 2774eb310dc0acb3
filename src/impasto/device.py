"""Device and precision choice, shared by style transfer, GAN training and inference.

``precision="auto"`` means bf16 autocast where the hardware computes bf16 fast (a CPU with
AVX512-BF16 or AMX, a CUDA GPU that supports bf16), else fp32. Losses are always accumulated
in fp32 by the callers.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import torch

from impasto.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU. Asking for a missing device is an error."""
    if name not in DEVICES:
        raise InputError(f"unknown device '{name}'; choose from {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InputError("device 'mps' requested but MPS is not available")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    if sys.platform.startswith("linux"):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """``fp32`` -> float32; ``bf16`` -> bfloat16 (an error where unsupported); ``auto`` -> bf16
    where it is fast, else float32."""
    if name not in PRECISIONS:
        raise InputError(f"unknown precision '{name}'; choose from {', '.join(PRECISIONS)}")
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        if device.type == "mps":
            raise InputError("precision 'bf16' is not supported on MPS; use fp32")
        return torch.bfloat16
    return torch.bfloat16 if fast_bf16(device) else torch.float32


def precision_name(dtype: torch.dtype) -> str:
    """``"bf16"`` or ``"fp32"``: the name :func:`resolve_precision` takes for ``dtype``."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device, dtype: torch.dtype):
    """A bf16 autocast context on ``device``, or a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
