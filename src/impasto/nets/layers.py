"""Small reusable layers shared by impasto's networks."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConditionalBatchNorm2d"]


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose affine gain and bias are looked up per class (de Vries et al. 2017,
    as used by Miyato & Koyama 2018).

    ``forward(x, y)`` normalises ``x`` with batch statistics (running statistics in eval mode),
    then returns ``gain[y] * x_hat + bias[y]``. The gain embedding starts at 1 and the bias
    embedding at 0, so at initialisation the layer equals a freshly built ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        self.reset_embeddings()

    def reset_embeddings(self) -> None:
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.bn(x)
        gain = self.gain(y)[:, :, None, None]
        bias = self.bias(y)[:, :, None, None]
        return h * gain + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"

