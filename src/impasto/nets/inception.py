"""The FID Inception-v3: the 2015-12-05 TensorFlow ImageNet graph that FID and the Inception
Score were defined with (Szegedy et al. 2016, "Rethinking the Inception Architecture"), in the
PyTorch port of pytorch-fid / torch-fidelity.

Weights: ``pt_inception-2015-12-05-6726825d.pth`` (``6726825d`` is the start of its SHA-256),
loaded from a local path only (see :data:`FID_INCEPTION`): ``weights=`` or the environment
variable ``IMPASTO_INCEPTION_WEIGHTS``. Nothing is downloaded; a missing file raises
:class:`~impasto.errors.WeightsNotFoundError` saying where to get it. Module names and shapes
equal the reference's, so the file loads with ``strict=True``.

The network differs from torchvision's ImageNet Inception-v3 exactly where the TensorFlow graph
does: 1008 classes; the 3x3 average pools inside the A, C and first E blocks ignore the zero
padding (``count_include_pad=False``); the last E block (``Mixed_7c``) pools its fourth branch
with a 3x3 *max* pool. Every convolution has no bias and is followed by batch norm (eps 1e-3)
and ReLU.

Input handling follows pytorch-fid: RGB ``(N, 3, H, W)`` in ``[0, 1]`` (grey ``(N, 1, H, W)``
is repeated to three channels, as converting a grey image to RGB does) is resized to 299x299
with bilinear interpolation (``align_corners=False``, no antialiasing), then scaled to
``[-1, 1]`` as ``2x - 1``. Outputs: the 2048-d ``pool3`` features (global average of
``Mixed_7c``; what FID uses) and 1008 logits.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto._fileutil import load_tensors, refused_pickle
from impasto.errors import InputError
from impasto.nets.weights import WEIGHT_FILES, Preprocessing, WeightFile, file_sha256

__all__ = [
    "FID_INCEPTION",
    "FIDInceptionV3",
    "InceptionWeights",
    "file_sha256",
    "load_fid_inception",
    "read_inception_state",
    "resolve_inception_weights",
]

log = logging.getLogger("impasto.nets")

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_CLASSES = 1008


_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{_FILENAME}"
_ENV = "IMPASTO_INCEPTION_WEIGHTS"

#: The reference weights (``6726825d`` is the start of their SHA-256). The network expects RGB
#: in [0, 1], resized to 299x299 (bilinear, ``align_corners=False``), scaled as ``2x - 1``
#: (what :attr:`~impasto.nets.weights.WeightFile.preprocessing` writes as ``(x - 0.5) / 0.5``);
#: :meth:`FIDInceptionV3.prepare` and :meth:`FIDInceptionV3.pool3` apply it.
FID_INCEPTION: WeightFile = WEIGHT_FILES.register("inception-fid", WeightFile(
    name="inception-fid",
    title="FID Inception",
    filename=_FILENAME,
    sha256="6726825d",
    url=_URL,
    env_var=_ENV,
    preprocessing=Preprocessing(bgr=False, scale=1.0, mean=(0.5,) * 3, std=(0.5,) * 3),
    input_size=INPUT_SIZE,
    how_to_get=(
        f"download {_FILENAME} from {_URL} (the pytorch-fid release) and pass its path with "
        f"--weights or the environment variable {_ENV}"
    ),
))
#: The descriptor type of :data:`FID_INCEPTION`, under its name from before every network's
#: weight files shared :class:`~impasto.nets.weights.WeightFile`.
InceptionWeights = WeightFile


# --------------------------------------------------------------------------------------------
# building blocks (module names are the reference's: they are the state-dict keys)


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TensorFlow graph), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's SAME average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max3(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + ``pool_features``."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 384 + 96 + ``cin``."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 and 7x1) -> 768 channels."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c = channels_7x7

        def row(cin_: int, cout: int) -> BasicConv2d:  # 1x7
            return BasicConv2d(cin_, cout, (1, 7), padding=(0, 3))

        def col(cin_: int, cout: int) -> BasicConv2d:  # 7x1
            return BasicConv2d(cin_, cout, (7, 1), padding=(3, 0))

        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c, 1)
        self.branch7x7_2 = row(c, c)
        self.branch7x7_3 = col(c, 192)
        self.branch7x7dbl_1 = BasicConv2d(cin, c, 1)
        self.branch7x7dbl_2 = col(c, c)
        self.branch7x7dbl_3 = row(c, c)
        self.branch7x7dbl_4 = col(c, c)
        self.branch7x7dbl_5 = row(c, 192)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = x
        for i in range(1, 6):
            c = getattr(self, f"branch7x7dbl_{i}")(c)
        d = self.branch_pool(_avg3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 320 + 192 + ``cin``."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs -> 2048 channels. ``pool`` is the fourth branch's
    3x3 pooling: ``"avg"`` (padding excluded) in ``Mixed_7b``, ``"max"`` in ``Mixed_7c`` (the
    TensorFlow graph's choice there)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', not {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg3(x) if self.pool == "avg" else _max3(x)
        return torch.cat(
            [
                a,
                self.branch3x3_2a(b),
                self.branch3x3_2b(b),
                self.branch3x3dbl_3a(c),
                self.branch3x3dbl_3b(c),
                self.branch_pool(pooled),
            ],
            1,
        )


# --------------------------------------------------------------------------------------------
# the network


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 (see the module doc). Random weights unless ``weights`` (a path)
    is given; use :func:`load_fid_inception` for the file from its usual places.

    ``forward(x)`` takes RGB (or grey) ``(N, C, H, W)`` in ``[0, 1]``, any size, and returns
    ``(pool3, logits)``: ``(N, 2048)`` and ``(N, 1008)`` in float32. :meth:`prepare` is the
    resize step alone (``(N, 3, 299, 299)``, still in ``[0, 1]``), :meth:`forward_prepared`
    the rest, so callers can resize images of different sizes separately and batch them.
    Always in eval mode, without gradients.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(POOL_DIM, NUM_CLASSES)
        self.sha256 = ""  # of the weight file, when loaded by load_fid_inception
        if weights is not None:
            self.load_state_dict(read_inception_state(Path(weights)), strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        return super().train(False)  # batch norm always uses the stored statistics

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        """``(N, 1|3, H, W)`` float in ``[0, 1]`` -> ``(N, 3, 299, 299)`` float32, bilinear."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise InputError(
                f"Inception input must be (N, 1 or 3, H, W) images, got shape {tuple(x.shape)}"
            )
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                              align_corners=False)
        return x

    def pool3(self, x: Tensor) -> Tensor:
        """``(N, 2048)`` features of prepared input ``(N, 3, 299, 299)`` in ``[0, 1]``."""
        h = 2.0 * x - 1.0
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            h = getattr(self, name)(h)
        h = F.max_pool2d(h, 3, stride=2)
        h = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h))
        h = F.max_pool2d(h, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            h = getattr(self, f"Mixed_{name}")(h)
        return h.mean(dim=(2, 3))

    def forward_prepared(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(pool3, logits)`` of prepared input (see :meth:`prepare`)."""
        with torch.no_grad():
            pool = self.pool3(x)
            return pool, self.fc(pool)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_prepared(self.prepare(x))

    def unbiased_logits(self, pool: Tensor) -> Tensor:
        """``pool @ W^T`` without the bias: the logits the original Inception Score code
        (Salimans et al.) read from the TensorFlow graph, and torch-fidelity's default for IS."""
        return pool @ self.fc.weight.T


# --------------------------------------------------------------------------------------------
# weights


def resolve_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The FID Inception weight file: ``path``, else ``$IMPASTO_INCEPTION_WEIGHTS``. Raises
    :class:`~impasto.errors.WeightsNotFoundError` (saying where to get it) when neither names
    a file."""
    return FID_INCEPTION.locate(path)


def _listed(keys: list[str], limit: int = 3) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def read_inception_state(path: Path) -> dict[str, Tensor]:
    """The state dict in ``path``, checked against :class:`FIDInceptionV3`'s keys and shapes
    (``num_batches_tracked`` may be absent, as batch norm allows). :class:`InputError` names
    the file and the first mismatches."""
    try:
        state = load_tensors(path, map_location="cpu")
    except Exception as e:  # a corrupt, truncated or foreign file
        why = refused_pickle(e)
        if why:
            raise InputError(f"{path}: not an Inception weight file: {why}") from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot read the Inception weights ({reason[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    expected = _expected_shapes()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_listed(wrong)}")
    if problems:
        raise InputError(
            f"{path}: not the FID Inception-v3 weights ({'; '.join(problems)}); "
            f"expected {FID_INCEPTION.filename}"
        )
    return state


@functools.lru_cache(maxsize=1)
def _expected_shapes() -> dict[str, tuple[int, ...]]:
    # Built on the meta device: keys and shapes without allocating 95 MB.
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}


def load_fid_inception(
    path: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu"
) -> FIDInceptionV3:
    """The FID Inception-v3 with the reference weights (see :func:`resolve_inception_weights`).

    The file's SHA-256 is kept as ``net.sha256``. A file whose digest does not start with
    ``6726825d`` still loads if its structure fits, with a warning that scores may not compare
    with published ones.
    """
    p = resolve_inception_weights(path)
    digest = file_sha256(p)
    if not FID_INCEPTION.matches(digest):
        log.warning(
            "%s: SHA-256 %s... is not that of %s; scores may not compare with published ones",
            p, digest[:8], FID_INCEPTION.filename,
        )
    net = FIDInceptionV3(weights=p).to(device)
    net.sha256 = digest
    return net
