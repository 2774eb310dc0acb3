"""Apply a feed-forward style network to an image, a folder of images or a video.

Any image-to-image network works: a per-style :class:`~impasto.nets.transformer.TransformerNet`
(``FastStyle.net``) or an :class:`~impasto.nets.adain.AdaINStylizer` with its styles fixed.

* :class:`InferenceRunner` runs a network fast on batches ``(N, 3, H, W)`` in ``[0, 1]``:
  ``torch.inference_mode``; for a per-style network on a CPU with VNNI, int8
  (:mod:`impasto.nets.int8`, calibrated on the first input); otherwise bf16 where the hardware
  does bf16 fast (:func:`impasto.device.resolve_precision`); channels_last on GPUs, ``torch.compile`` where
  the work ahead pays for the compile time (:class:`CompilePolicy`), and tiles
  (:mod:`impasto.style.tiling`) when an image would not fit the memory budget or when asked to.
* :func:`apply_image`, :func:`apply_folder` (batches of same-size images, one output per
  input under the same relative name) and :func:`apply_video` (read and written with
  imageio-ffmpeg: the frame rate is kept, and the audio track is copied where there is one)
  take a ``transform``: any callable from a batch tensor to a batch tensor, usually a runner.
  Before they start, folders and videos tell a transform with an ``expect`` method (a runner)
  which batch shapes are coming, and how many (:meth:`InferenceRunner.expect`).

Outputs are written atomically (a temporary file in the target folder, then a rename).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from impasto._fileutil import one_line, reason
from impasto.device import PRECISIONS, precision_name, resolve_device, resolve_precision
from impasto.errors import InputError
from impasto.io import (
    DEFAULT_MAX_PIXELS,
    SAVE_FORMATS,
    load_image,
    resize,
    save_image,
    to_pil,
    to_tensor,
)
from impasto.style.tiling import DEFAULT_OVERLAP, auto_tile, plan_tiles, run_tiled

__all__ = [
    "COMPILE_MODES",
    "INFERENCE_PRECISIONS",
    "OUTPUT_CODECS",
    "VIDEO_SUFFIXES",
    "CompilePolicy",
    "InferenceRunner",
    "VideoInfo",
    "apply_folder",
    "apply_image",
    "apply_video",
    "batch_work",
    "compile_mode",
    "default_compile_policy",
    "inference_precision",
    "input_kind",
    "probe_video",
]

log = logging.getLogger(__name__)

Transform = Callable[[Tensor], Tensor]

#: File suffixes read and written as video (lower case).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv"})


# --------------------------------------------------------------------------------------------
# running a network


#: ``compile`` settings of :class:`InferenceRunner` (and ``impasto stylize --compile``).
COMPILE_MODES = ("auto", "on", "off")

#: ``precision`` settings of :class:`InferenceRunner` (and ``impasto stylize --model``).
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")

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
    ``batch_size`` at a time, a batch ending where the size changes (as :func:`apply_folder`
    and :func:`apply_video` do): input shape ``(N, C, H, W)`` -> number of calls."""
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


class InferenceRunner:
    """Runs ``net`` (``(N, 3, H, W)`` in ``[0, 1]`` -> same shape) for inference.

    Args:
        device, precision: ``auto|fp32|bf16|int8``. ``"auto"``: int8 for a per-style network
            (:class:`~impasto.nets.transformer.TransformerNet`) or AdaIN
            (:class:`~impasto.nets.adain.AdaINStylizer`) on a CPU where
            :func:`~impasto.nets.int8.int8_supported` (VNNI), else bf16 where the hardware
            computes bf16 fast, else fp32. int8 (:mod:`impasto.nets.int8`) is calibrated on
            the first input the runner sees (:meth:`calibrate` chooses other images,
            ``calibrate_each=True`` calibrates every call on its own input) and is never
            compiled, so ``compile="on"`` makes ``"auto"`` pick bf16/fp32. With bf16 the
            runner keeps a bf16 copy of the network and feeds it bf16 inputs: on a CPU this
            is 5-50% faster than autocast, which casts every weight again at every call (``benchmarks/fast_style.py``). The network's own float32
            statistics (AdaIN) stay float32.
        channels_last: NHWC memory format for the network and its inputs. ``None`` (default):
            on CUDA always; on a CPU only for networks without instance normalisation, whose
            CPU kernels have no fast NHWC path (measured: a TransformerNet runs about 15%
            slower in NHWC, the AdaIN network about 30% faster).
        compile: ``torch.compile`` the network (inductor with frozen weights; the first call of
            each input shape compiles). ``"auto"`` (default): only for the input shapes that
            :meth:`expect` announces in quantities that pay back the compile time
            (``compile_policy``; :func:`apply_folder` and :func:`apply_video` announce their
            batches), and for tiles when one call cuts an image into enough tiles of one size;
            a lone call is run eagerly. ``"on"`` / ``True``: always; ``"off"`` / ``False``:
            never. If compiling fails (no C++ compiler, an inductor error) the runner logs one
            warning and runs eagerly from then on.
        compile_policy: when ``"auto"`` compiles (:class:`CompilePolicy`; default:
            :func:`default_compile_policy`).
        tile: ``None``/``"auto"``: tile only when the activations of a whole image would exceed
            ``memory_budget`` (see :func:`impasto.style.tiling.auto_tile`); ``0``: never tile;
            an int: always tile with this side (when the image is larger).
        tiled: replaces the generic tiling for networks that need more than one pass (AdaIN):
            ``tiled(runner, x, tile) -> y``. Such tiling runs ``runner.net`` eagerly.

    Calling the runner takes a float tensor ``(N, 3, H, W)`` (any device) and returns float32
    on the same device, clamped to ``[0, 1]``. ``net`` itself is not modified (it is moved to
    ``device``).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool | str = "auto",
        compile_policy: CompilePolicy | None = None,
        tile: int | str | None = None,
        overlap: int = DEFAULT_OVERLAP,
        memory_budget: int | None = None,
        align: int = 8,
        tiled: Callable[[InferenceRunner, Tensor, int], Tensor] | None = None,
        calibrate_each: bool = False,
    ) -> None:
        self.compile_mode = compile_mode(compile)
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.compile_policy = compile_policy or default_compile_policy(net, self.device)
        #: Whether the network runs in int8 (:mod:`impasto.nets.int8`).
        self.int8 = _uses_int8(type(net), precision, self.device, self.compile_mode)
        self.calibrate_each = calibrate_each
        #: The int8 network once calibrated (None before the first call).
        self.quantized: nn.Module | None = None
        if self.int8:
            self.compile_mode = "off"
        self.dtype = torch.float32 if self.int8 else resolve_precision(precision, self.device)
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
        net.eval().requires_grad_(False).to(self.device)
        self.source = net
        if self.int8:
            channels_last = False
            self.channels_last, self.memory_format = False, torch.contiguous_format
        if self.dtype != torch.float32:
            net = _cast_parameters(copy.deepcopy(net), self.dtype)
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
        return "int8" if self.int8 else precision_name(self.dtype)

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
            from impasto.nets.transformer import TransformerNet

            images = [x.to(self.device) for x in images]
            if isinstance(self.source, TransformerNet):
                self.quantized = Int8TransformerNet.calibrate(self.source, images)
            else:
                self.quantized = quantize_adain(self.source, images)

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
                with _compiling():
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


def compile_mode(value: bool | str) -> str:
    """``"auto"``, ``"on"`` or ``"off"`` from a compile setting (``True``/``False`` too)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value in COMPILE_MODES:
        return str(value)
    raise InputError(f"compile must be one of {', '.join(COMPILE_MODES)}, not {value!r}")


@contextlib.contextmanager
def _compiling() -> Iterator[None]:
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


def inference_precision(kind: type[nn.Module], precision: str, device: torch.device,
                        compile: bool | str = "auto") -> str:
    """The precision (``"int8"``, ``"bf16"`` or ``"fp32"``) an :class:`InferenceRunner` of a
    ``kind`` network runs in with these settings, without building one (same errors)."""
    if _uses_int8(kind, precision, device, compile_mode(compile)):
        return "int8"
    return precision_name(resolve_precision(precision, device))


def _uses_int8(kind: type[nn.Module], precision: str, device: torch.device,
               compile: str) -> bool:
    """Whether ``precision`` means int8 for a ``kind`` network on ``device`` (an error where
    asked for and impossible). ``auto`` with ``compile="on"`` is not int8: int8 is never
    compiled."""
    from impasto.nets.int8 import int8_supported

    if precision not in INFERENCE_PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; choose from "
                         f"{', '.join(INFERENCE_PRECISIONS)}")
    if precision == "int8":
        if not _int8_capable(kind):
            raise InputError("precision int8 is for per-style networks and AdaIN only; "
                             "use auto, bf16 or fp32")
        if not int8_supported(device):
            raise InputError("precision int8 needs a CPU with VNNI (AVX512-VNNI, AVX-VNNI or "
                             "AMX) and PyTorch's quantised engine; use auto, bf16 or fp32")
        return True
    return (precision == "auto" and compile != "on" and _int8_capable(kind)
            and int8_supported(device))


def _int8_capable(kind: type[nn.Module]) -> bool:
    from impasto.nets.adain import AdaINStylizer
    from impasto.nets.transformer import TransformerNet

    return issubclass(kind, (TransformerNet, AdaINStylizer))


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


# --------------------------------------------------------------------------------------------
# inputs


def input_kind(path: str | os.PathLike[str]) -> str:
    """``"folder"``, ``"video"`` (by suffix) or ``"image"``."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "image"


def _output_name(rel: str) -> str:
    """A relative output name for the input ``rel``: the same, with ``.png`` for suffixes that
    cannot be written (``photo.bmp`` -> ``photo.png``)."""
    p = Path(rel)
    return rel if p.suffix.lower() in SAVE_FORMATS else str(p.with_suffix(".png"))


def apply_image(
    transform: Transform,
    source: Any,
    output: str | os.PathLike[str],
    *,
    size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Stylise one image file (or any image :func:`~impasto.io.load_image` reads) into
    ``output``; ``size`` resizes it to that longest side first."""
    img = load_image(source, max_pixels=max_pixels)
    if size:
        img = resize(img, longest=size)
    y = transform(to_tensor(img))
    return save_image(to_pil(y), output, metadata=metadata)


def apply_folder(
    transform: Transform,
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    batch_size: int = 4,
    size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    metadata: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[Path]:
    """Stylise every image under ``folder`` (recursively) into ``output``, keeping the
    relative names (suffixes that cannot be written become ``.png``). Images of the same size
    go through the network together, ``batch_size`` at a time. An unreadable file is skipped
    with a warning; a folder without images is an :class:`InputError`. Returns the paths
    written, in input order."""
    from impasto.data.sources import list_folder

    src, dst = Path(folder), Path(output)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    names = list_folder(src)
    if not names:
        raise InputError(f"{src}: no images in the folder")
    if dst.resolve() == src.resolve():
        raise InputError(f"{dst}: the output folder must differ from the input folder")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dst}: is a file; give an output folder for a folder of images")
    # Names that can be written keep theirs; converted ones (photo.bmp -> photo.png) yield to
    # them (photo.bmp -> photo.bmp.png when photo.png exists too).
    keep = {n for n in names if _output_name(n) == n}
    taken = {n.lower() for n in keep}
    outputs: dict[str, Path] = {}
    for n in names:
        out_name = _output_name(n)
        if n not in keep:
            if out_name.lower() in taken:
                out_name = f"{n}.png"
            taken.add(out_name.lower())
        outputs[n] = dst / out_name
    _announce(transform, lambda: batch_work(_folder_sizes(src, names, size, max_pixels),
                                            batch_size))
    bar = _bar(progress, len(names), "img")
    written: dict[str, Path] = {}
    pending: list[tuple[str, Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.cat([t for _, t in pending])
        out = transform(batch)
        for (name, _), y in zip(pending, out):
            written[name] = save_image(to_pil(y), outputs[name], metadata=metadata)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        for name in names:
            try:
                img = load_image(src / name, max_pixels=max_pixels)
            except InputError as e:
                log.warning("skipped: %s", e)
                if bar is not None:
                    bar.update(1)
                continue
            if size:
                img = resize(img, longest=size)
            t = to_tensor(img)
            if pending and (pending[0][1].shape != t.shape or len(pending) >= batch_size):
                flush()
            pending.append((name, t))
        flush()
    finally:
        if bar is not None:
            bar.close()
    if not written:
        raise InputError(f"{src}: none of the {len(names)} image files could be read")
    return [written[n] for n in names if n in written]


def _announce(transform: Transform, work: Callable[[], Work]) -> None:
    """Tells ``transform`` the work ahead if it takes it (``transform.expect``)."""
    expect = getattr(transform, "expect", None)
    if callable(expect):
        expect(work())


def _folder_sizes(src: Path, names: list[str], size: int | None,
                  max_pixels: int | None) -> Iterator[tuple[int, int]]:
    """``(height, width)`` of each readable image as :func:`apply_folder` will feed it, from
    the file headers."""
    from impasto.io import image_size, scaled_size

    for name in names:
        try:
            w, h = image_size(src / name)
        except InputError:
            continue
        if max_pixels is not None and w * h > max_pixels:
            continue
        if size:
            w, h = scaled_size(w, h, longest=size)
        yield h, w


def _bar(enabled: bool, total: int | None, unit: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# video


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds: frame size ``(width, height)``, frames per second,
    an estimated frame count (0 when unknown) and whether there is an audio track."""

    size: tuple[int, int]
    fps: float
    frames: int
    has_audio: bool
    codec: str


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError(
            "video needs the imageio-ffmpeg package: pip install 'impasto[video]'"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's header with ffmpeg; :class:`InputError` (one line naming the file) if it
    is missing or cannot be decoded."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: video file not found" if not p.exists() else f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file, not a video")
    import imageio_ffmpeg  # noqa: F401  (a clear message if missing)

    _ffmpeg()
    try:
        gen = imageio_ffmpeg.read_frames(str(p))
        meta = next(gen)
        gen.close()
    except Exception as e:  # noqa: BLE001  (ffmpeg's errors are RuntimeError/OSError/...)
        raise InputError(f"{p}: cannot decode the video ({_ffmpeg_reason(e)})") from None
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    w, h = meta.get("size") or (0, 0)
    if not w or not h:
        raise InputError(f"{p}: cannot decode the video (no video stream)")
    frames = int(round(fps * duration)) if fps and duration else 0
    return VideoInfo((int(w), int(h)), fps or 25.0, frames, _has_audio(p), str(meta.get("codec")))


def _ffmpeg_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for pattern in (r"Invalid data found when processing input", r"moov atom not found",
                    r"could not find codec parameters", r"No such file or directory"):
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            return m.group(0)
    return reason(exc)[:160]


def _has_audio(path: Path) -> bool:
    try:
        proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(re.search(r"Stream #\d+:\d+.*: Audio:", proc.stderr))


#: Containers written, with their video and audio codecs (None: imageio-ffmpeg's H.264).
OUTPUT_CODECS: dict[str, tuple[str | None, str]] = {
    ".mp4": (None, "aac"), ".m4v": (None, "aac"), ".mov": (None, "aac"), ".mkv": (None, "aac"),
    ".avi": (None, "libmp3lame"), ".webm": ("libvpx-vp9", "libopus"),
}


def _frames(path: Path, size: tuple[int, int]) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    w, h = size
    gen = imageio_ffmpeg.read_frames(str(path))
    count = 0
    try:
        while True:
            try:
                raw = next(gen)
            except StopIteration:
                return
            except (RuntimeError, OSError) as e:
                where = f" after {max(count - 1, 0)} frames" if count > 1 else ""
                raise InputError(
                    f"{path}: cannot decode the video{where} ({_ffmpeg_reason(e)})"
                ) from None
            if count:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
            count += 1  # the first item is the metadata
    finally:
        gen.close()


def apply_video(
    transform: Transform,
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    batch_size: int = 4,
    size: int | None = None,
    quality: float = 8.0,
    progress: bool = False,
    audio: bool = True,
) -> Path:
    """Stylise every frame of the video ``source`` into the video ``output`` (container by
    suffix; H.264 for .mp4), at the source's frame rate, with its audio track (re-encoded;
    when ``audio`` and there is one). ``size`` resizes the frames to that longest side. The
    output is written to a temporary file beside it and renamed when complete. Raises
    :class:`InputError` for a video that cannot be decoded."""
    import imageio_ffmpeg

    src, dst = Path(source), Path(output)
    suffix = dst.suffix.lower()
    if suffix not in OUTPUT_CODECS:
        raise InputError(f"{dst}: a video input needs a video output "
                         f"({', '.join(OUTPUT_CODECS)})")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    info = probe_video(src)
    w, h = info.size
    if size:
        from impasto.io import scaled_size

        w, h = scaled_size(w, h, longest=size)
    w, h = w - w % 2, h - h % 2  # yuv420p needs even sides
    if w < 2 or h < 2:
        raise InputError(f"{src}: frames of {info.size[0]}x{info.size[1]} are too small")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{dst.parent}: cannot create the folder: {reason(e)}") from None
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}{dst.suffix}")
    audio_path = str(src) if audio and info.has_audio else None
    video_codec, audio_codec = OUTPUT_CODECS[suffix]
    fps: float | Fraction = Fraction(info.fps).limit_denominator(1001)
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (w, h), fps=fps, quality=quality, macro_block_size=1, codec=video_codec,
        audio_path=audio_path, audio_codec=audio_codec if audio_path else None,
        ffmpeg_log_level="error",
    )
    # An unknown length (0) announces nothing: compile="auto" stays eager.
    full, rest = divmod(info.frames, batch_size)
    _announce(transform, lambda: {k: v for k, v in (((batch_size, 3, h, w), full),
                                                     ((rest, 3, h, w), 1 if rest else 0)) if v})
    bar = _bar(progress, info.frames or None, "frame")
    count = 0
    ok = False
    try:
        writer.send(None)
        batch: list[Tensor] = []

        def flush() -> None:
            nonlocal count
            if not batch:
                return
            out = transform(torch.cat(batch))
            arr = (out.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
            for frame in arr.numpy():
                writer.send(np.ascontiguousarray(frame))
            count += len(batch)
            if bar is not None:
                bar.update(len(batch))
            batch.clear()

        for frame in _frames(src, info.size):
            t = torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float().div_(255.0)
            if t.shape[-2:] != (h, w):
                from impasto.io import resize_tensor

                t = resize_tensor(t, (h, w))
            batch.append(t)
            if len(batch) >= batch_size:
                flush()
        flush()
        if count == 0:
            raise InputError(f"{src}: cannot decode the video (no frames)")
        writer.close()
        tmp.replace(dst)
        ok = True
    finally:
        if bar is not None:
            bar.close()
        if not ok:
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
    return dst
