"""The per-style network's inference pipeline, :class:`FastStyle`: the one the command line,
the benchmarks and other front ends call."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from impasto.device import resolve_device
from impasto.errors import InputError
from impasto.io import load_image, to_pil, to_tensor
from impasto.nets.transformer import TransformerNet
from impasto.style.color import keep_colours
from impasto.style.fast.model import load_fast_style, save_fast_style

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["OUTPUTS", "FastStyle"]

#: What :meth:`FastStyle.__call__` returns: PIL images or float32 tensors in ``[0, 1]``.
OUTPUTS = ("pil", "tensor")


class FastStyle:
    """A trained per-style network, ready to stylise (Johnson et al. 2016).

    ``FastStyle.from_file(path)`` rebuilds it from a model file (see
    :func:`~impasto.style.fast.load_fast_style`); ``FastStyle(net, metadata)`` wraps a network.
    ``model(image)`` stylises (see :meth:`__call__`); ``net`` is the
    :class:`~impasto.nets.transformer.TransformerNet` (any ``H, W``)::

        model = FastStyle.from_file("starry.pt")
        out = model("photo.jpg")                   # PIL image in, PIL image out
        batch = model(x, output="tensor")          # (N, 3, H, W) in [0, 1] -> same
    """

    def __init__(
        self,
        net: TransformerNet,
        metadata: Mapping[str, Any] | None = None,
        *,
        thumbnail: Tensor | None = None,
        device: str | torch.device = "auto",
        source: str = "<module>",
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata.setdefault("net", net.config.to_dict())
        self.thumbnail = thumbnail
        self.source = source
        self._runners: dict[str, Any] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "auto") -> FastStyle:
        """Load a model file written by training, :func:`~impasto.style.fast.save_fast_style`
        or :func:`~impasto.style.fast.export_model`, or by the release before the common model
        file (see :func:`~impasto.style.fast.load_fast_style` for the errors)."""
        dev = resolve_device(device)
        net, meta, thumb = load_fast_style(path)
        return cls(net, meta, thumbnail=thumb, device=dev, source=str(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "auto") -> FastStyle:
        """The name before issue #12 of :meth:`from_file` (kept for one release)."""
        return cls.from_file(path, device=device)

    @property
    def style_name(self) -> str | None:
        style = self.metadata.get("style")
        return style.get("name") if isinstance(style, dict) else None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this model (network, metadata, thumbnail) to a model file, atomically."""
        meta = {k: v for k, v in self.metadata.items()
                if k not in ("kind", "format_version", "net", "impasto")}
        return save_fast_style(self.net, path, meta, thumbnail=self.thumbnail)

    def thumbnail_image(self) -> Image.Image | None:
        """The style thumbnail as a PIL image, or None."""
        if self.thumbnail is None:
            return None
        return to_pil(self.thumbnail.float().div(255.0))

    def stylize_tensor(self, x: Tensor, *, precision: str = "auto") -> Tensor:
        """``(N, 3, H, W)`` float in ``[0, 1]`` -> float32 ``(N, 3, H, W)`` in ``[0, 1]``,
        on the model's device. ``precision``: ``auto|fp32|bf16|int8`` as in
        :class:`~impasto.infer.runner.InferenceRunner` (``auto``: int8 on a CPU with VNNI,
        else bf16 where it is fast); int8 is calibrated on each call's own input, so an image's
        result does not depend on the images before it. Images too large for the memory budget
        run in tiles."""
        runner = self._runners.get(precision)
        if runner is None:
            from impasto.infer.global_norm import tiled_global_norm
            from impasto.infer.runner import InferenceRunner

            runner = InferenceRunner(self.net, device=self.device, precision=precision,
                                     compile="off", calibrate_each=True,
                                     tiled=tiled_global_norm)
            self._runners[precision] = runner
        return runner(x.to(self.device, torch.float32))

    def transform(self, *, precision: str = "auto", tile: int | str | None = None,
                  compile: bool | str = "auto", preserve_color: str = "none") -> Any:
        """A batch function ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` for
        :mod:`impasto.style.apply` (an :class:`~impasto.infer.runner.InferenceRunner`, see it
        for ``precision``, ``tile`` and ``compile``), with ``.precision`` (the precision
        chosen) and ``.expect``. ``preserve_color="luminance"``: the network restyles and each
        input's chroma is put back (Gatys et al. 2017); a per-style network has no style image
        to recolour, so ``"histogram"`` is refused."""
        from impasto.infer.global_norm import tiled_global_norm
        from impasto.infer.runner import InferenceRunner

        if preserve_color not in ("none", "luminance"):
            raise InputError(f"a per-style network preserves colour by 'luminance' only, not "
                             f"{preserve_color!r}")
        runner = InferenceRunner(self.net, device=self.device, precision=precision, tile=tile,
                                 compile=compile, tiled=tiled_global_norm)
        return keep_colours(runner) if preserve_color == "luminance" else runner

    def __call__(
        self,
        image: Any,
        *,
        precision: str = "auto",
        seed: int | None = None,
        output: str | None = None,
    ) -> Any:
        """Stylise ``image``: a path, bytes, PIL image or array, or a float tensor
        ``(N, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]``.

        ``output="pil"``: an RGB PIL image (a list of them for a batch of several);
        ``"tensor"``: float32 in ``[0, 1]``, ``(1, 3, H, W)`` for an image, else the input's
        shape, on the input tensor's device (CPU for other inputs). The default: a tensor for a
        tensor, else a PIL image. ``seed`` is accepted for the pipelines' common shape; the
        network draws nothing random, so it changes nothing."""
        del seed  # deterministic
        if output is not None and output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if isinstance(image, Tensor) and image.is_floating_point():
            x = image[None] if image.ndim == 3 else image
            if x.ndim != 4 or x.shape[1] != 3:
                raise InputError(
                    f"expected an image tensor (N, 3, H, W) or (3, H, W), got {tuple(image.shape)}"
                )
            y = self.stylize_tensor(x, precision=precision).to(image.device)
            if output == "pil":
                return to_pil(y[0]) if y.shape[0] == 1 else [to_pil(t) for t in y]
            return y[0] if image.ndim == 3 else y
        y = self.stylize_tensor(to_tensor(load_image(image)), precision=precision)
        return y.cpu() if output == "tensor" else to_pil(y[0])

    def __repr__(self) -> str:
        return f"FastStyle(style={self.style_name!r}, source={self.source!r})"
