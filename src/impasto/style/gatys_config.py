"""The settings of Gatys style transfer (:class:`GatysConfig`) and its default schedule, one
rule for every size (:data:`SCHEDULE_RULE`); the optimisation is in :mod:`impasto.style.gatys`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import InitVar, asdict, dataclass

from impasto.errors import InputError
from impasto.nets.vgg import VGG19_LAYER_NAMES
from impasto.style.color import COLOR_MODES

OPTIMIZERS = ("lbfgs", "adam")
#: The starts: the content photo, noise, or the instant result (Ghiasi et al. 2017's network at
#: the output's size with the style at Gatys' scale; :mod:`impasto.style.instant.gatys_start`).
INITS = ("content", "noise", "instant")

# The default schedule, one rule for every size: scales halve the longest side down to
# MIN_SCALE_SIZE; each coarse scale gets COARSE_ITERATIONS, the full size FINE_ITERATIONS, with
# either optimiser.
MIN_SCALE_SIZE = 128
COARSE_ITERATIONS = 100
FINE_ITERATIONS = 150
#: From the instant start (init="instant"): full size only, INSTANT_ITERATIONS iterations
#: (benchmarks/nst_instant.py: the coarse scales throw away the start's full-size detail).
INSTANT_ITERATIONS = 100
SCHEDULE_RULE = (
    f"scales halving the longest side down to about {MIN_SCALE_SIZE} px, {COARSE_ITERATIONS} "
    f"iterations at each coarse scale and {FINE_ITERATIONS} at full size, with L-BFGS or Adam: "
    f"{FINE_ITERATIONS} at 128 px, {COARSE_ITERATIONS},{FINE_ITERATIONS} at 256 px, "
    f"{COARSE_ITERATIONS},{COARSE_ITERATIONS},{FINE_ITERATIONS} at 512 px; from --init "
    f"instant: full size only, {INSTANT_ITERATIONS} iterations"
)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class GatysConfig:
    """Settings of one style transfer; saved in the output PNG's metadata.

    ``iterations`` is per scale, coarse to fine; one number applies to every scale. With
    ``scales=0`` the number of scales is chosen from ``size`` (each scale halves the longest side,
    down to about 128 px; from ``init="instant"``, the full size only). The default schedule is
    :data:`SCHEDULE_RULE`.

    The loss weights mean what jcjohnson/neural-style's do: content and style terms are mean
    squared errors of caffe-VGG features and of Gram matrices divided by ``C*H*W``, and the TV
    term is neural-style's (half the sum of squared neighbour differences on a 0-255 scale,
    :func:`~impasto.style.losses.total_variation` with ``reduction="sum"``).

    ``tileable`` (``"x"``, ``"y"`` or ``"xy"``) makes the result wrap around along those axes
    (:mod:`impasto.style.wrap`): circular padding, each scale's sides rounded to multiples of
    16, the photo made periodic first, the TV term taken across the wrap-around too.
    """

    size: int = 512
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    style_scale: float = 1.0
    style_blend_weights: tuple[float, ...] | None = None
    preserve_color: str = "none"
    init: str = "content"
    optimizer: str = "lbfgs"
    lr: float | None = None
    scales: int = 0
    iterations: tuple[int, ...] | int | None = None
    pooling: str = "max"
    lbfgs_history: int = 30
    seed: int | None = 0
    tile: int | None = None
    tileable: str = "none"
    device: str = "auto"
    precision: str = "auto"
    weights: str = "caffe"
    vgg_weights: str | None = None
    # The names before the redesign (issue #12), accepted for one release.
    learning_rate: InitVar[float | None] = None
    weights_path: InitVar[str | None] = None

    def __post_init__(self, learning_rate: float | None, weights_path: str | None) -> None:
        for old, new, value in (("learning_rate", "lr", learning_rate),
                                ("weights_path", "vgg_weights", weights_path)):
            if value is not None:
                warnings.warn(f"GatysConfig({old}=...) is now {new}=...", DeprecationWarning,
                              stacklevel=3)
                setattr(self, new, value)

    def validate(self, n_styles: int = 1) -> None:
        """Raises :class:`InputError` for a bad value, before any work is done."""
        if self.size <= 0:
            raise InputError(f"size must be positive, got {self.size}")
        if not _finite(self.style_scale) or self.style_scale <= 0:
            raise InputError(f"style scale must be positive, got {self.style_scale}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise InputError(f"{name.replace('_', ' ')} must be a non-negative number")
        for kind, layers, weights in (
            ("content", self.content_layers, self.content_layer_weights),
            ("style", self.style_layers, self.style_layer_weights),
        ):
            if not layers:
                raise InputError(f"at least one {kind} layer is needed")
            bad = [n for n in layers if n not in VGG19_LAYER_NAMES]
            if bad:
                raise InputError(
                    f"unknown {kind} layer(s): {', '.join(bad)} (valid: conv1_1 ... relu5_4, "
                    "pool1 ... pool5)"
                )
            if weights is not None and len(weights) != len(layers):
                raise InputError(
                    f"{len(weights)} {kind} layer weights given for {len(layers)} {kind} layers"
                )
            if weights is not None and not all(_finite(w) and w >= 0 for w in weights):
                raise InputError(f"{kind} layer weights must be non-negative numbers")
        if self.style_blend_weights is not None:
            if len(self.style_blend_weights) != n_styles:
                raise InputError(
                    f"{len(self.style_blend_weights)} style blend weights given for "
                    f"{n_styles} style image(s)"
                )
            blend = self.style_blend_weights
            if not all(_finite(w) and w >= 0 for w in blend) or sum(blend) <= 0:
                raise InputError("style blend weights must be non-negative and not all zero")
        if self.preserve_color not in COLOR_MODES:
            raise InputError(f"preserve color must be one of {', '.join(COLOR_MODES)}")
        if self.init not in INITS:
            raise InputError(f"init must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.pooling not in ("max", "avg"):
            raise InputError("pooling must be 'max' or 'avg'")
        if self.scales < 0:
            raise InputError(f"scales must not be negative, got {self.scales}")
        if self.lr is not None and not (
            _finite(self.lr) and self.lr > 0
        ):
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise InputError(f"seed must be between 0 and 2**63-1, got {self.seed}")
        if self.tile is not None and self.tile != 0 and self.tile < 32:
            raise InputError(f"tile must be 0 (never tile) or at least 32 px, not {self.tile}")
        if self.tileable not in ("none", "x", "y", "xy"):
            raise InputError(f"tileable must be one of none, x, y, xy, not {self.tileable!r}")
        if self.lbfgs_history <= 0:
            raise InputError(f"L-BFGS history must be positive, got {self.lbfgs_history}")
        its = self.iterations
        if its is not None:
            its = [its] if isinstance(its, int) else list(its)
            if any(i < 0 for i in its):
                raise InputError("iterations must not be negative")
            if len(its) not in (1, self.scale_sizes().__len__()):
                raise InputError(
                    f"{len(its)} iteration counts given for {len(self.scale_sizes())} scales"
                )

    def scale_sizes(self) -> list[int]:
        """Longest side at each scale, coarse to fine, ending at ``size``."""
        n = self.scales
        if n == 0 and self.init == "instant":
            n = 1
        if n == 0:
            n = 1 + max(0, int(math.floor(math.log2(max(self.size, 1) / MIN_SCALE_SIZE))))
        # The finest scale is exactly `size`; coarser ones too small to encode are skipped later.
        return [max(1, round(self.size / 2**k)) for k in reversed(range(n))]

    def scale_iterations(self) -> list[int]:
        """Iterations at each scale, coarse to fine.

        The default (:data:`SCHEDULE_RULE`) is the same rule at every size and for both
        optimisers: ``COARSE_ITERATIONS`` (100) at each coarse scale, which settle the
        large-scale layout cheaply, and ``FINE_ITERATIONS`` (150) at full size. The full-size loss
        depends mostly on full-size detail, which only full-size iterations add: at 512 px this
        schedule (100, 100, 150) reached a lower full-size loss in less time than the earlier
        300, 200, 100 (2.00e6 in 356 s against 2.11e6 in 430 s, ``benchmarks/nst.py``), with the
        same large strokes.
        """
        sizes = self.scale_sizes()
        its = self.iterations
        if its is None:
            fine = INSTANT_ITERATIONS if self.init == "instant" else FINE_ITERATIONS
            return [COARSE_ITERATIONS] * (len(sizes) - 1) + [fine]
        its = [its] if isinstance(its, int) else list(its)
        return its * len(sizes) if len(its) == 1 else its

    def to_dict(self) -> dict:
        return asdict(self)


def default_config(**overrides) -> GatysConfig:
    """A :class:`GatysConfig` with ``overrides``; unknown names raise :class:`InputError`."""
    names = GatysConfig.__dataclass_fields__
    bad = [k for k in overrides if k not in names]
    if bad:
        raise InputError(f"unknown style transfer option(s): {', '.join(bad)}")
    return GatysConfig(**overrides)

