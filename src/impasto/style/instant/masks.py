"""Per-region instant styles: one style per mask, mixed per pixel inside the network.

:class:`MaskedCondition` conditions a :class:`~impasto.nets.magenta.CINTransformer` with a
different style at each pixel: every conditional instance norm mixes the styles' scales and
shifts with the masks' weights at its own resolution, while its statistics stay those of the
whole image (the spatial blending of Dumoulin et al. 2017, section 5, and Ghiasi et al. 2017,
figure 8). One pass of the network, whatever the number of styles, and the convolutions after
each norm make the change of style at a mask's border gradual instead of a cut
(``docs/instant.md`` has the comparison with running the network once per style).

The masks mean what they mean for Gatys and AdaIN (:mod:`impasto.style.masks`): white = where
that style goes, grey weighs it, overlapping masks share a pixel in proportion; where the masks
add up to less than 1 the result blends with the photo (nothing covers it: the photo).
"""

from __future__ import annotations

from torch import Tensor, nn

from impasto.nets.magenta import CINTransformer, NormStats
from impasto.style.masks import mask_shares, resize_masks

__all__ = ["MaskedCondition"]


class MaskedCondition(nn.Module):
    """A :class:`~impasto.nets.magenta.CINTransformer` with ``K`` conditions placed by masks:
    ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]``.

    ``conds`` ``(K, cond_dim)``: one style vector (or preset mix) per mask; ``masks`` ``(K,
    Hm, Wm)`` in ``[0, 1]``, resized to each input (bilinear, antialiased); ``mix`` in ``[0,
    1]`` scales how much of the style is kept (presets' strength), as ``cover`` does."""

    def __init__(self, net: CINTransformer, conds: Tensor, masks: Tensor,
                 mix: float = 1.0) -> None:
        super().__init__()
        if conds.dim() != 2 or conds.shape[1] != net.config.cond_dim:
            raise ValueError(f"conds must be (K, {net.config.cond_dim}), not "
                             f"{tuple(conds.shape)}")
        if masks.dim() != 3 or masks.shape[0] != conds.shape[0]:
            raise ValueError(f"{masks.shape[0] if masks.dim() == 3 else '?'} masks for "
                             f"{conds.shape[0]} styles")
        self.net = net
        self.mix = float(mix)
        self.register_buffer("conds", conds.detach().float().clone())
        self.register_buffer("masks", masks.detach().float().clamp(0, 1).clone())
        self._cache: tuple[tuple[int, int], Tensor] | None = None

    def shares(self, size: tuple[int, int],
               box: tuple[int, int, int, int] | None = None) -> tuple[Tensor, Tensor]:
        """``(weights (1, K, h, w), cover (1, 1, h, w))`` (:func:`~impasto.style.masks.
        mask_shares`) of the masks resized to an image of ``size`` ``(H, W)``, or of the part
        ``box = (y0, y1, x0, x1)`` of it (a tile; the resized masks are kept for the next)."""
        if self._cache is not None and self._cache[0] == tuple(size):
            m = self._cache[1]
        else:
            m = resize_masks(self.masks, size)
            self._cache = (tuple(size), m)
        if box is not None:
            y0, y1, x0, x1 = box
            m = m[..., y0:y1, x0:x1]
        return mask_shares(m)

    def forward(self, x: Tensor, stats: NormStats | None = None,
                box: tuple[int, int, int, int] | None = None,
                image_size: tuple[int, int] | None = None) -> Tensor:
        """``box``/``image_size``: ``x`` is that part of a larger image (a tile; the masks are
        cut to it); ``stats``: fixed norm statistics (:data:`~impasto.nets.magenta.
        NormStats`)."""
        h, w = x.shape[-2:]
        weights, cover = self.shares(image_size or (h, w), box if image_size else None)
        y = self.net(x, self.conds, masks=weights.to(x.device), stats=stats)
        return self.finish(x, y, cover)

    def finish(self, x: Tensor, y: Tensor, cover: Tensor) -> Tensor:
        """The result from the input ``x``, the transformer's output ``y`` and the masks'
        ``cover`` (:meth:`shares`): the photo where the masks leave it."""
        keep = (cover.to(x.device) * self.mix).to(y.dtype)
        if bool((keep >= 1).all()):
            return y
        return keep * y + (1 - keep) * x.to(y.dtype)

    def extra_repr(self) -> str:
        return f"styles={self.conds.shape[0]}, mix={self.mix:g}"
