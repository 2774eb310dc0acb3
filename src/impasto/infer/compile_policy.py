"""When :class:`~impasto.infer.runner.InferenceRunner` compiles its network with
``torch.compile``: the ``compile`` settings, the policy of ``compile="auto"``, and the work
announcements (input shape -> number of calls) it decides from."""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from impasto.errors import InputError

__all__ = [
    "COMPILE_MODES",
    "DEFAULT_COMPILE_POLICY",
    "NEVER_COMPILE",
    "CompilePolicy",
    "Work",
    "batch_work",
    "compile_mode",
    "default_compile_policy",
]

#: ``compile`` settings of :class:`~impasto.infer.runner.InferenceRunner` (and
#: ``impasto stylize --compile``).
COMPILE_MODES = ("auto", "on", "off")

#: An input shape ``(N, C, H, W)`` -> how many calls of that shape are coming.
Work = dict[tuple[int, ...], int]


@dataclass(frozen=True)
class CompilePolicy:
    """When ``compile="auto"`` compiles: for an input shape ``(N, C, H, W)`` that the network
    will see at least ``min_calls`` times, carrying at least ``min_megapixels`` in all
    (calls x N x H x W).

    ``torch.compile`` (inductor, frozen weights) compiles once per input shape and then saves
    a roughly fixed time per megapixel. Measured on a CPU with AVX512-BF16 (one thread, bf16,
    the default per-style network, a fresh inductor cache): 23-32 s of compiling at 256 and
    512 px, then 0.33-0.36 s saved per megapixel (1.2x bf16 eager; 0.5-0.6 s with a warm
    cache): it pays back after 65-100 megapixels of one shape. Hence the default: 100
    megapixels (a 512x512 video or folder from about 380 frames, 1080p from about 50) and
    at least 8 calls (a few huge images, which tiling cuts up anyway, stay eager); a single
    image never compiles. See :func:`default_compile_policy` for networks that never gain.
    """

    min_calls: int = 8
    min_megapixels: float = 100.0

    def compiles(self, shape: tuple[int, ...], calls: int) -> bool:
        """Whether ``calls`` calls with inputs of ``shape`` pay for a compile."""
        pixels = shape[0] * shape[-2] * shape[-1]
        return calls >= self.min_calls and calls * pixels >= self.min_megapixels * 1e6


#: The policy of runners created without one (per-style networks; any network on a GPU).
DEFAULT_COMPILE_POLICY = CompilePolicy()

#: Compiling never pays (see :func:`default_compile_policy`).
NEVER_COMPILE = CompilePolicy(min_calls=2**62, min_megapixels=math.inf)


def default_compile_policy(net: nn.Module, device: torch.device) -> CompilePolicy:
    """The policy for ``net`` on ``device`` when none is given: :data:`DEFAULT_COMPILE_POLICY`,
    except on a CPU for networks without instance normalisation (AdaIN's VGG encoder and
    decoder), whose time is all in convolutions that inductor runs with the same oneDNN
    kernels as eager: compiling them saved nothing measurable (+3% at 256 px, -1% at 512 px,
    after 21-23 s of compiling), so ``"auto"`` leaves them eager there."""
    if device.type == "cpu" and not any(isinstance(m, nn.InstanceNorm2d) for m in net.modules()):
        return NEVER_COMPILE
    return DEFAULT_COMPILE_POLICY


def batch_work(sizes: Iterable[tuple[int, int]], batch_size: int, channels: int = 3) -> Work:
    """The calls that batching images of ``sizes`` (``(height, width)``, in order) makes,
    ``batch_size`` at a time, a batch ending where the size changes (as the folder and video
    loops of :mod:`impasto.style.apply` do): input shape ``(N, C, H, W)`` -> number of calls."""
    work: Counter[tuple[int, ...]] = Counter()
    run: tuple[int, int] | None = None
    n = 0
    for hw in sizes:
        if n and (hw != run or n >= batch_size):
            work[(n, channels, *run)] += 1
            n = 0
        run = hw
        n += 1
    if n and run is not None:
        work[(n, channels, *run)] += 1
    return dict(work)


def compile_mode(value: bool | str) -> str:
    """``"auto"``, ``"on"`` or ``"off"`` from a compile setting (``True``/``False`` too)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in COMPILE_MODES:
        return str(value)
    raise InputError(f"compile must be one of {', '.join(COMPILE_MODES)}, not {value!r}")


@contextlib.contextmanager
def compiling() -> Iterator[None]:
    """Inductor settings for the compiled calls: frozen weights (constant-folded into the
    kernels; inference only). Silences torch's "No CUDA runtime is found" warning, which
    compiling for a CPU prints on machines without CUDA."""
    import torch._inductor.config as inductor_config

    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with inductor_config.patch(freezing=True):
            yield
    finally:
        quiet.setLevel(level)
