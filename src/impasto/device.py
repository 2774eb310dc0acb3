"""Device and precision choice, shared by style transfer, GAN training and inference.

``precision="auto"`` means bf16 autocast where the hardware computes bf16 fast (a CPU with
AVX512-BF16 or AMX, a CUDA GPU that supports bf16), else fp32. Losses are always accumulated
in fp32 by the callers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path

import torch

from impasto.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")

log = logging.getLogger(__name__)


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
        if device.type == "cpu" and not cpu_has_fast_bf16():
            _warn_slow_bf16()
        return torch.bfloat16
    return torch.bfloat16 if fast_bf16(device) else torch.float32


@functools.lru_cache(maxsize=1)
def _warn_slow_bf16() -> None:
    """Once per process: bf16 asked for on a CPU without native bf16 arithmetic, where
    PyTorch's bf16 convolutions take a reference path (the instant network at 1024 x 768:
    5.5 s against 0.58 s in fp32 on an AVX2 Zen 3 core)."""
    log.warning("precision bf16 on this CPU (no AVX512-BF16 or AMX) runs about 10x slower "
                "than fp32; precision auto picks fp32 here")


def nhwc_trainable(device: torch.device, *nets: torch.nn.Module) -> bool:
    """Whether ``nets`` may train in NHWC (channels_last) on ``device``: not on a CPU when one
    of them has a 1 x 1 convolution of stride above 1 on fewer than 8 input channels (a tiny
    ResNet's shortcut), whose backward pass in NHWC corrupts the heap in PyTorch 2.14's oneDNN
    on AVX2 CPUs (a Zen 3: the process aborts in ``free()``). Such thin layers gain nothing
    from NHWC, so training falls back to NCHW there."""
    if device.type != "cpu":
        return True
    for net in nets:
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) \
                    and max(m.stride) > 1 and m.in_channels < 8:
                log.info("channels_last off: %s has a 1x1 convolution of stride %s on %d "
                         "channels (NHWC backward is unsafe there on a CPU)",
                         type(net).__name__, m.stride, m.in_channels)
                return False
    return True


def precision_name(dtype: torch.dtype) -> str:
    """``"bf16"`` or ``"fp32"``: the name :func:`resolve_precision` takes for ``dtype``."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device, dtype: torch.dtype):
    """A bf16 autocast context on ``device``, or a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
