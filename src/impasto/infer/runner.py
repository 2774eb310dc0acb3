"""Run a feed-forward image-to-image network fast for inference.

Any image-to-image network works: a per-style :class:`~impasto.nets.transformer.TransformerNet`
(``FastStyle.net``) or an :class:`~impasto.nets.adain.AdaINStylizer` with its styles fixed.
:class:`InferenceRunner` runs it on batches ``(N, 3, H, W)`` in ``[0, 1]``:
``torch.inference_mode``; the precision :func:`~impasto.infer.precision.decide_precision`
picks (int8 for a per-style network or AdaIN on a CPU with VNNI, calibrated on the first
input; otherwise bf16 where the hardware does bf16 fast); channels_last on GPUs;
``torch.compile`` where the work ahead pays for the compile time
(:mod:`impasto.infer.compile_policy`), and tiles (:mod:`impasto.infer.tiling`) when an image
would not fit the memory budget or when asked to. Callers that batch many inputs (folders,
videos) announce the batch shapes coming with :meth:`InferenceRunner.expect`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from impasto._fileutil import one_line, reason
from impasto.device import resolve_device
from impasto.errors import InputError
from impasto.infer.compile_policy import (
    NEVER_COMPILE,
    CompilePolicy,
    Work,
    compile_mode,
    compiling,
    default_compile_policy,
)
from impasto.infer.precision import InferencePrecision, decide_precision
from impasto.infer.tiling import DEFAULT_OVERLAP, auto_tile, plan_tiles, run_tiled

__all__ = ["InferenceRunner"]

log = logging.getLogger(__name__)


class InferenceRunner:
    """Runs ``net`` (``(N, 3, H, W)`` in ``[0, 1]`` -> same shape) for inference.

    Args:
        device, precision: ``auto|fp32|bf16|int8``, or a precision already decided for this
            network (:class:`~impasto.infer.precision.InferencePrecision`, made with this
            ``compile`` setting). ``"auto"``: int8 for a per-style network
            (:class:`~impasto.nets.transformer.TransformerNet`) or AdaIN
            (:class:`~impasto.nets.adain.AdaINStylizer`) on a CPU where
            :func:`~impasto.nets.int8.int8_supported` (VNNI), else bf16 where the hardware
            computes bf16 fast, else fp32 (:func:`~impasto.infer.precision.decide_precision`).
            int8 (:mod:`impasto.nets.int8`) is calibrated on the first input the runner sees
            (:meth:`calibrate` chooses other images, ``calibrate_each=True`` calibrates every
            call on its own input) and is never compiled, so ``compile="on"`` makes ``"auto"``
            pick bf16/fp32. With bf16 the runner keeps a bf16 copy of the network and feeds it
            bf16 inputs: on a CPU this is 5-50% faster than autocast, which casts every weight
            again at every call (``benchmarks/fast_style.py``). The network's own float32
            statistics (AdaIN) stay float32.
        channels_last: NHWC memory format for the network and its inputs. ``None`` (default):
            on CUDA always; on a CPU only for networks without instance normalisation, whose
            CPU kernels have no fast NHWC path (measured: a TransformerNet runs about 15%
            slower in NHWC, the AdaIN network about 30% faster).
        compile: ``torch.compile`` the network (inductor with frozen weights; the first call of
            each input shape compiles). ``"auto"`` (default): only for the input shapes that
            :meth:`expect` announces in quantities that pay back the compile time
            (``compile_policy``; the folder and video loops of :mod:`impasto.style.apply`
            announce their batches), and for tiles when one call cuts an image into enough
            tiles of one size; a lone call is run eagerly. ``"on"`` / ``True``: always;
            ``"off"`` / ``False``: never. If compiling fails (no C++ compiler, an inductor
            error) the runner logs one warning and runs eagerly from then on.
        compile_policy: when ``"auto"`` compiles
            (:class:`~impasto.infer.compile_policy.CompilePolicy`; default:
            :func:`~impasto.infer.compile_policy.default_compile_policy`).
        tile: ``None``/``"auto"``: tile only when the activations of a whole image would exceed
            ``memory_budget`` (see :func:`impasto.infer.tiling.auto_tile`); ``0``: never tile;
            an int: always tile with this side (when the image is larger).
        tiled: replaces the generic tiling for networks that need more than one pass (AdaIN):
            ``tiled(runner, x, tile) -> y``. Such tiling runs ``runner.net`` eagerly.
        prepared: ``net`` already as this runner would prepare it (weights in the chosen
            dtype, the memory layout), made by the caller once and shared by its runners
            (the instant styles: copying a whole module tree costs tens of ms in Python); it
            is run as given, and ``net`` stays the source (tiling's memory probe, export). With
            ``prepared`` the caller keeps ``net``'s modules in eval mode without gradients (only
            ``net`` itself is switched to eval here: walking the module trees again took about
            3 ms a runner for the instant styles).

    Calling the runner takes a float tensor ``(N, 3, H, W)`` (any device) and returns float32
    on the same device, clamped to ``[0, 1]``. ``net`` itself is not modified (it is moved to
    ``device``).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str | InferencePrecision = "auto",
        channels_last: bool | None = None,
        compile: bool | str = "auto",
        compile_policy: CompilePolicy | None = None,
        tile: int | str | None = None,
        overlap: int = DEFAULT_OVERLAP,
        memory_budget: int | None = None,
        align: int = 8,
        tiled: Callable[[InferenceRunner, Tensor, int], Tensor] | None = None,
        calibrate_each: bool = False,
        prepared: nn.Module | None = None,
    ) -> None:
        self.compile_mode = compile_mode(compile)
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        # (off: no policy to find; finding one walks the whole module tree, ~0.5 ms a runner)
        self.compile_policy = compile_policy or (
            NEVER_COMPILE if self.compile_mode == "off"
            else default_compile_policy(net, self.device))
        if not isinstance(precision, InferencePrecision):
            precision = decide_precision(precision, self.device, type(net),
                                         compile=self.compile_mode)
        #: The precision decided for this network (:mod:`impasto.infer.precision`).
        self.choice = precision
        #: Whether the network runs in int8 (:mod:`impasto.nets.int8`).
        self.int8 = precision.int8
        self.calibrate_each = calibrate_each
        #: The int8 network once calibrated (None before the first call).
        self.quantized: nn.Module | None = None
        if self.int8:
            self.compile_mode = "off"
        #: The dtype of the float network's weights and inputs (float32 for int8).
        self.dtype = precision.dtype
        if isinstance(tile, str) and tile != "auto":
            raise InputError(f"tile must be 'auto', 0 or a size in pixels, not {tile!r}")
        if isinstance(tile, int) and not isinstance(tile, bool) and tile != 0 and tile < 32:
            raise InputError(f"tile size must be at least 32 pixels, not {tile}")
        self.tile = None if tile == "auto" else tile
        self.overlap = overlap
        self.memory_budget = memory_budget
        self.align = align
        if channels_last is None:
            channels_last = _prefers_channels_last(net, self.device)
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        first = next(net.parameters(), None)
        if prepared is None or (first is not None and first.device != self.device):
            net.eval().requires_grad_(False).to(self.device)
        else:  # (a prepared network's source is ready, and on the device: see ``prepared``)
            net.training = False
        self.source = net
        if self.int8:
            channels_last = False
            self.channels_last, self.memory_format = False, torch.contiguous_format
        if prepared is not None:  # the caller's copy of ``net`` in this dtype and layout
            net = prepared
        else:
            if self.dtype != torch.float32:
                net = _cast_parameters(copy.deepcopy(net), self.dtype)
            elif channels_last:
                # a copy: converting in place would change the caller's module, and whatever
                # else it computes (AdaIN's style statistics from the shared encoder) would
                # round differently after the first runner (its repeated calls not identical)
                net = copy.deepcopy(net)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.tiled = tiled
        self._compiled_fn: Callable[[Tensor], Tensor] | None = None
        #: Input shapes ``(N, C, H, W)`` that ``compile="auto"`` compiles.
        self.compile_shapes: set[tuple[int, ...]] = set()
        #: Why compiling failed (then the runner runs eagerly), else None.
        self.compile_error: str | None = None

    @property
    def precision(self) -> str:
        """The precision the network runs in: ``"int8"``, ``"bf16"`` or ``"fp32"``."""
        return self.choice.name

    # -- compiling

    @property
    def compiled(self) -> bool:
        """Whether the runner holds a working compiled network (made at the first call that
        compiles)."""
        return self._compiled_fn is not None and self.compile_error is None

    def expect(self, work: Work) -> set[tuple[int, ...]]:
        """Announces the calls coming (input shape ``(N, C, H, W)`` -> number of calls), so that
        ``compile="auto"`` compiles the shapes that pay for it (shapes that will be tiled count
        as their tiles). Returns the shapes compiled from now on."""
        if self.compile_mode != "auto" or self.compile_error is not None:
            return set(self.compile_shapes)
        seen: Counter[tuple[int, ...]] = Counter()
        for shape, calls in work.items():
            tile = self._tile_for_shape(shape)
            if tile is None:
                seen[tuple(shape)] += calls
            elif self.tiled is None:  # custom tiling (AdaIN) runs the network eagerly
                for t, n in self._tile_work(shape, tile).items():
                    seen[t] += n * calls
        for shape, calls in seen.items():
            if self.compile_policy.compiles(shape, calls) and shape not in self.compile_shapes:
                log.info("compile auto: compiling for %d calls of %s", calls,
                         "x".join(map(str, shape)))
                self.compile_shapes.add(shape)
        return set(self.compile_shapes)

    def _tile_work(self, shape: tuple[int, ...], tile: int) -> Work:
        n, c, h, w = shape
        tiles = plan_tiles(h, w, tile, self.overlap_for(tile), self.align)
        return dict(Counter((n, c, t.y1 - t.y0, t.x1 - t.x0) for t in tiles))

    def _fn_for(self, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor] | None:
        """The compiled network for inputs of ``shape``, or None (eager)."""
        if self.compile_mode == "off" or self.compile_error is not None:
            return None
        if self.compile_mode == "auto" and shape not in self.compile_shapes:
            return None
        if self._compiled_fn is None:
            try:
                # auto compiles only the shapes it has chosen, each for itself; "on" lets
                # torch generalise to dynamic shapes when a second shape comes.
                self._compiled_fn = torch.compile(
                    self.net, dynamic=False if self.compile_mode == "auto" else None)
            except Exception as e:  # noqa: BLE001  (any failure: run eagerly)
                self._compile_failed(e)
                return None
        return self._compiled_fn

    def _compile_failed(self, exc: BaseException) -> None:
        self.compile_error = f"{type(exc).__name__}: {reason(exc)}"
        self._compiled_fn = None
        log.warning("torch.compile failed (%s); running the network eagerly",
                    one_line(self.compile_error, 240))

    # -- running

    def context(self) -> contextlib.AbstractContextManager:
        """The inference context (``torch.inference_mode``)."""
        return torch.inference_mode()

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` on the runner's device, dtype and memory format."""
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format)

    def calibrate(self, images: Iterable[Tensor]) -> None:
        """(int8) Calibrates the int8 network on ``images`` (float ``(N, 3, H, W)`` in
        ``[0, 1]``); later calls use it. Without this, the first call calibrates on its own
        input. A no-op at other precisions."""
        if self.int8:
            from impasto.nets.int8 import Int8TransformerNet, quantize_adain
            from impasto.nets.int8_magenta import Int8CINTransformer
            from impasto.nets.magenta import FixedCondition
            from impasto.nets.transformer import TransformerNet

            images = [x.to(self.device) for x in images]
            dtype = self.choice.work_dtype
            if isinstance(self.source, TransformerNet):
                self.quantized = Int8TransformerNet.calibrate(self.source, images, dtype=dtype)
            elif isinstance(self.source, FixedCondition):
                self.quantized = Int8CINTransformer.calibrate(self.source, images, dtype=dtype)
            else:
                self.quantized = quantize_adain(self.source, images, dtype=dtype)

    def _int8_for(self, x: Tensor) -> nn.Module:
        """The int8 network for ``x``: calibrated on ``x`` at the first call (every call with
        ``calibrate_each``)."""
        if self.quantized is None or self.calibrate_each:
            self.calibrate([x])
        assert self.quantized is not None
        return self.quantized

    @property
    def model(self) -> nn.Module:
        """The module that runs: the int8 network once calibrated, else :attr:`net`."""
        return self.quantized if self.int8 and self.quantized is not None else self.net

    def forward(self, x: Tensor) -> Tensor:
        """The network on a prepared ``x``: int8 where chosen; compiled where the compile
        setting says so; eager otherwise (and after a failed compile)."""
        if self.int8:
            return self._int8_for(x)(x)
        fn = self._fn_for(tuple(x.shape))
        if fn is not None:
            try:
                with compiling():
                    return fn(x)
            except Exception as e:  # noqa: BLE001  (inductor/dynamo errors: run eagerly)
                self._compile_failed(e)
        return self.net(x)

    def run_whole(self, x: Tensor) -> Tensor:
        """The network on ``x`` in one piece (no tiling); float32 on ``x``'s device."""
        with self.context():
            y = self.forward(self.prepare(x))
        return y.float().clamp(0.0, 1.0).to(x.device).contiguous()

    def _tile_for_shape(self, shape: tuple[int, ...]) -> int | None:
        if self.tile == 0:
            return None
        n, h, w = shape[0], shape[-2], shape[-1]
        if self.tile is not None:
            return int(self.tile) if max(h, w) > self.tile else None
        budget = self.memory_budget
        if budget is not None:
            budget //= max(1, n)
        # int8 activations take 1 byte; 2 leaves room for the padding copies.
        dtype = torch.bfloat16 if self.int8 else self.dtype
        return auto_tile(self.source, h, w, budget=budget, dtype=dtype, align=self.align,
                         overlap=self.overlap)

    def tile_for(self, x: Tensor) -> int | None:
        """The tile side used for ``x`` (None: whole)."""
        return self._tile_for_shape(tuple(x.shape))

    def overlap_for(self, tile: int) -> int:
        """The overlap used with ``tile``: ``overlap``, at most half the tile."""
        most = tile // 2 // self.align * self.align
        return min(self.overlap, most)

    def __call__(self, x: Tensor) -> Tensor:
        tile = self.tile_for(x)
        if tile is None:
            return self.run_whole(x)
        if self.int8:
            self._int8_for(x)  # calibrated on the whole image, not its first tile
        if self.tiled is not None:
            return self.tiled(self, x, tile)
        if self.compile_mode == "auto":  # one image in many tiles: may pay by itself
            self.expect({tuple(x.shape): 1})
        return run_tiled(self.run_whole, x, tile=tile, overlap=self.overlap_for(tile),
                         align=self.align)



def _prefers_channels_last(net: nn.Module, device: torch.device) -> bool:
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return not any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())


def _cast_parameters(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``net`` with its floating-point parameters (not its buffers: statistics such as AdaIN's
    style means stay float32) cast to ``dtype``."""
    for module in net.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and p.is_floating_point():
                module._parameters[name] = nn.Parameter(p.detach().to(dtype), requires_grad=False)
    return net


