"""A Markovian (patch) discriminator for adversarial style training.

Li & Wand (2016, "Precomputed Real-Time Texture Synthesis with Markovian Generative Adversarial
Networks", MGAN) train a feed-forward texture/style network against a discriminator that
classifies every local patch of an image as coming from the style image or not, rather than the
image as a whole. This is the same idea in pixel space, in the PatchGAN layout of Isola et al.
(2017): strided 4x4 convolutions with leaky ReLUs, ending in one logit per overlapping patch.
With the default three stride-2 layers each logit sees a 70x70 pixel patch.

The network takes RGB crops ``(N, 3, H, W)`` in ``[0, 1]`` (any size >= its receptive field
is sensible; smaller inputs still run) and returns raw logits ``(N, 1, h, w)``; the GAN losses
of :mod:`impasto.losses.adversarial` average over every element.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from impasto.errors import InputError

__all__ = ["PATCH_NORMS", "PatchDiscConfig", "PatchDiscriminator"]

PATCH_NORMS = ("spectral", "instance", "none")


@dataclass(frozen=True)
class PatchDiscConfig:
    """Architecture of a :class:`PatchDiscriminator`.

    base_width: channels of the first layer, doubled at each stride-2 layer (capped at 8x).
    num_layers: stride-2 layers (3: 70 px patches; 2: 34 px; 1: 16 px).
    norm: ``"spectral"`` (spectral normalisation of every convolution, Miyato et al. 2018: the
        default, stable without tuning), ``"instance"`` or ``"none"``.
    """

    base_width: int = 64
    num_layers: int = 3
    norm: str = "spectral"

    def __post_init__(self) -> None:
        for name in ("base_width", "num_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"discriminator {name} must be a positive whole number, not {v!r}")
        if self.norm not in PATCH_NORMS:
            raise InputError(
                f"discriminator norm must be one of {', '.join(PATCH_NORMS)}, not {self.norm!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def receptive_field(self) -> int:
        """Side in pixels of the patch that one output logit sees."""
        rf = 1
        # Walk back from the output: final 4x4 s1, the 4x4 s1 layer, then num_layers 4x4 s2.
        for stride in [1, 1] + [2] * self.num_layers:
            rf = rf * stride + (4 - stride)
        return rf


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (see the module doc): ``(N, 3, H, W)`` in ``[0, 1]`` ->
    logits ``(N, 1, h, w)``, one per overlapping patch."""

    def __init__(self, config: PatchDiscConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PatchDiscConfig()

        def conv(cin: int, cout: int, stride: int) -> nn.Module:
            layer = nn.Conv2d(cin, cout, 4, stride=stride, padding=1)
            return spectral_norm(layer) if cfg.norm == "spectral" else layer

        def norm(c: int) -> list[nn.Module]:
            return [nn.InstanceNorm2d(c, affine=True)] if cfg.norm == "instance" else []

        widths = [min(cfg.base_width * 2**i, cfg.base_width * 8) for i in range(cfg.num_layers + 1)]
        layers: list[nn.Module] = [conv(3, widths[0], 2), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, cfg.num_layers):
            layers += [conv(widths[i - 1], widths[i], 2), *norm(widths[i]),
                       nn.LeakyReLU(0.2, inplace=True)]
        last = widths[cfg.num_layers]
        layers += [conv(widths[cfg.num_layers - 1], last, 1), *norm(last),
                   nn.LeakyReLU(0.2, inplace=True), conv(last, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # Centre the input on 0 so the first layer sees signed values, as GAN discriminators
        # are used to.
        return self.body(x * 2.0 - 1.0)
