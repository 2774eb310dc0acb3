"""Sampling from a trained GAN: :class:`GanGenerator`, a callable pipeline that the CLI and any
other front end share, and :func:`slerp`.

::

    gen = GanGenerator.from_file("runs/cifar")       # a run folder, checkpoint or model file
    images = gen(16, seed=1, truncation=0.7)         # (16, C, H, W) in [0, 1]
    pictures = gen(4, seed=1, output="pil")          # four PIL images
    frames = gen.interpolate([1, 2, 3], frames=60)   # (60, C, H, W), slerp from seed to seed
    export_model("runs/cifar", "cifar-gan.pt")       # G_ema alone, in the one model-file format

The generator is rebuilt from the file alone (its stored network config); nothing of the
training code or data is needed. Latents follow one convention everywhere: ``seed`` seeds a
CPU :class:`torch.Generator` from which :func:`~impasto.nets.gan.sample_latents` draws, so the
same seed gives the same images on every device, and ``gen(1, seed=s)`` shows the image that
``interpolate`` passes through at seed ``s``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from impasto.device import resolve_device
from impasto.errors import InputError
from impasto.gan.model import build_generator, read_generator
from impasto.nets.gan import sample_latents
from impasto.train import ModelFile

__all__ = ["OUTPUTS", "GanGenerator", "image_grid", "sample_metadata", "slerp"]

#: What :meth:`GanGenerator.__call__` returns: a tensor of images, or a list of PIL images.
OUTPUTS = ("tensor", "pil")

_CHUNK = 64  # images per forward pass


def slerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Spherical linear interpolation (Shoemake 1985) between latents ``a`` and ``b``.

    ``a``, ``b``: ``(D,)`` or ``(N, D)``; ``t``: a number or a tensor ``(T,)`` (then the result
    is ``(T, D)`` for ``(D,)`` inputs). Moves along the great circle at constant angular speed,
    with the norm interpolated linearly, so intermediate latents keep the norm a Gaussian latent
    typically has (plain linear interpolation shrinks it in the middle by up to ``cos(angle/2)``).
    ``t=0`` gives ``a`` and ``t=1`` gives ``b`` exactly. The direction is the textbook slerp of
    the unit vectors; the norm goes linearly from ``|a|`` to ``|b|`` (for inputs of equal norm
    this is exactly the textbook slerp). Nearly parallel inputs fall back to linear
    interpolation of the directions.
    """
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() == 1 and a.dim() == 1:
        a_, b_, t_ = a[None], b[None], t[:, None]
    else:
        a_, b_, t_ = a, b, t.reshape(-1, 1) if t.dim() else t
    na = a_.norm(dim=-1, keepdim=True)
    nb = b_.norm(dim=-1, keepdim=True)
    ua = a_ / na.clamp_min(1e-12)
    ub = b_ / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    near = sin.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(sin), sin)
    wa = torch.where(near, 1.0 - t_, torch.sin((1.0 - t_) * omega) / safe)
    wb = torch.where(near, t_, torch.sin(t_ * omega) / safe)
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = direction * ((1.0 - t_) * na + t_ * nb)
    # Exact endpoints, whatever the rounding of sin/acos.
    out = torch.where(t_ == 0, a_.expand_as(out), out)
    out = torch.where(t_ == 1, b_.expand_as(out), out)
    return out


def image_grid(images: Tensor, nrow: int | None = None) -> Tensor:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` as one grid ``(C, H', W')`` with ``nrow`` images
    a row (default: about a square) and 2 px black between them, as ``impasto gan sample
    --grid`` writes it."""
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    return make_grid(images, nrow=nrow, padding=2, pad_value=0.0)


def sample_metadata(source: Any, seed: int | None, n: int, truncation: float | None,
                    class_: Any = None) -> dict[str, Any]:
    """The metadata of sampled images' files: where the generator came from and what drew
    them (every front end writes the same)."""
    return {"source": str(source), "seed": seed, "n": n, "truncation": truncation,
            "class": class_}


def _seed(value: Any, what: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InputError(f"{what} must be a whole number from 0 to 2**63-1, not {value!r}")
    return value


class GanGenerator:
    """A trained generator, ready to sample (see the module doc).

    Build it with :meth:`from_file`, or from a module: ``GanGenerator(G, classes=[...])``
    (moved to ``device``, ``"auto"`` by default). ``G`` is put in eval mode (batch norm uses
    its running statistics).
    """

    def __init__(
        self,
        G: nn.Module,
        *,
        classes: Sequence[str] | None = None,
        device: str | torch.device = "auto",
        source: str = "<module>",
    ) -> None:
        self.device = torch.device(device) if not isinstance(device, str) else (
            resolve_device(device)
        )
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.z_dim: int = int(G.z_dim)
        self.num_classes: int = int(getattr(G, "num_classes", 0))
        self.resolution: int = int(getattr(G, "resolution", 0))
        self.channels: int = int(getattr(G, "channels", 3))
        names = list(classes or [])
        if self.num_classes and len(names) != self.num_classes:
            names = [str(i) for i in range(self.num_classes)]
        self.classes = names
        self.source = source

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "auto",
        *,
        ema: bool = True,
        resolution: int | None = None,
    ) -> GanGenerator:
        """The generator of a GAN model file (:func:`~impasto.gan.export_model`), a training
        checkpoint (of this release or the one before) or a run folder (its latest
        checkpoint), on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...).

        ``ema``: the moving-average weights (what samples should use) or, if False, the raw
        trained ones (checkpoints only). ``resolution``: for a progressive GAN (``gan/pggan``),
        any resolution it has reached (default: the stage it reached; see
        :func:`impasto.gan.progressive.pggan_generator`); other GANs render only at their own.
        Raises :class:`InputError` (one line naming the file) for a missing, truncated or
        corrupt file and for one that holds no GAN.
        """
        return cls.from_model(read_generator(path, ema=ema), device, resolution=resolution)

    @classmethod
    def from_model(
        cls, model: ModelFile, device: str | torch.device = "auto", *,
        resolution: int | None = None,
    ) -> GanGenerator:
        """The generator of a GAN :class:`~impasto.train.ModelFile` (see
        :func:`impasto.gan.model.read_generator`), as :meth:`from_file`."""
        G = build_generator(model, resolution)
        classes = model.extra.get("classes")
        return cls(G, classes=classes if isinstance(classes, list) else None, device=device,
                   source=str(model.path) if model.path is not None else "<model>")

    @classmethod
    def load(
        cls,
        path_or_run_folder: str | os.PathLike[str],
        *,
        ema: bool = True,
        device: str | torch.device = "cpu",
        resolution: int | None = None,
    ) -> GanGenerator:
        """The older spelling of :meth:`from_file`, whose device default is ``"cpu"`` (kept
        for one release)."""
        return cls.from_file(path_or_run_folder, device, ema=ema, resolution=resolution)

    # ----------------------------------------------------------------------------------------

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def class_index(self, class_: int | str) -> int:
        """A class given by index or by name -> its index; :class:`InputError` if unknown or
        if the generator is unconditional."""
        if not self.conditional:
            raise InputError(
                f"{self.source}: this generator is unconditional; a class needs a "
                "class-conditional model (trained with --conditional)"
            )
        if isinstance(class_, str) and class_ in self.classes:
            return self.classes.index(class_)
        try:
            k = int(class_)
        except (TypeError, ValueError):
            names = ", ".join(self.classes[:10]) + (" ..." if len(self.classes) > 10 else "")
            raise InputError(f"unknown class {class_!r}; classes are {names}") from None
        if isinstance(class_, bool) or not 0 <= k < self.num_classes:
            raise InputError(
                f"class {class_!r} is out of range; this model has classes 0 to "
                f"{self.num_classes - 1}"
            )
        return k

    def _labels(self, n: int, class_: Any) -> Tensor | None:
        if class_ is None:
            if not self.conditional:
                return None
            return torch.arange(n) % self.num_classes  # every class in turn
        if isinstance(class_, (list, tuple)):
            if len(class_) != n:
                raise InputError(f"{len(class_)} classes given for {n} images")
            return torch.tensor([self.class_index(c) for c in class_], dtype=torch.int64)
        return torch.full((n,), self.class_index(class_), dtype=torch.int64)

    def seed_latents(self, seeds: Sequence[int], truncation: float | None = None) -> Tensor:
        """``(len(seeds), z_dim)``: the latent of each seed (``gen(1, seed=s)``'s latent)."""
        rows = []
        for s in seeds:
            g = torch.Generator().manual_seed(_seed(s))
            rows.append(sample_latents(1, self.z_dim, g, truncation))
        if not rows:
            raise InputError("no seeds given")
        return torch.cat(rows)

    def latents(self, n: int, seed: int | None = None, truncation: float | None = None) -> Tensor:
        """``(n, z_dim)`` latents from ``seed`` (random when None), CPU float32."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"the number of images must be a positive whole number, not {n!r}")
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(_seed(seed))
        return sample_latents(n, self.z_dim, g, truncation)

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None, *,
                 progress: Callable[[int, int, Tensor], None] | None = None,
                 batch_size: int = _CHUNK) -> Tensor:
        """Images ``(N, C, H, W)`` in ``[0, 1]`` (float32, CPU) for latents ``z`` ``(N, z_dim)``,
        ``batch_size`` at a time; ``progress(done, N, images)`` is called after each batch
        with the batch's images (it may raise to stop)."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"latents must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        step = max(1, int(batch_size))
        outs = []
        for i in range(0, z.shape[0], step):
            zc = z[i : i + step].to(self.device, torch.float32)
            yc = None if y is None else y[i : i + step].to(self.device)
            x = self.G(zc, yc) if yc is not None else self.G(zc)
            outs.append(((x.float() + 1.0) / 2.0).clamp_(0.0, 1.0).cpu())
            if progress is not None:
                progress(min(i + step, z.shape[0]), z.shape[0], outs[-1])
        return torch.cat(outs)

    def __call__(
        self,
        n: int | Tensor | None = None,
        *,
        seed: int | None = None,
        latents: Tensor | None = None,
        truncation: float | None = None,
        class_: int | str | Sequence[int | str] | None = None,
        output: str = "tensor",
    ) -> Any:
        """``n`` images: ``(n, C, H, W)`` in ``[0, 1]`` (float32, CPU), or with
        ``output="pil"`` a list of ``n`` PIL images (RGB, or grey ``L`` for one channel).

        From ``seed`` (the same seed gives the same images; None draws a random one) or from
        given latents ``(N, z_dim)``: ``gen(z)`` or ``gen(latents=z)``. ``truncation``:
        resample latent entries beyond ``[-t, t]`` (Brock et al. 2019); smaller is cleaner but
        less varied. ``class_``: one class (index or name) for all images, or one per image; on
        a conditional model without it, the images go through the classes in turn.
        """
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if isinstance(n, Tensor):
            if latents is not None:
                raise InputError("give the latents once: gen(z) or gen(latents=z)")
            n, latents = None, n
        if latents is not None:
            if truncation is not None:
                raise InputError("truncation applies to sampled latents, not to given ones")
            if seed is not None:
                raise InputError("give latents or a seed, not both")
            z = torch.as_tensor(latents, dtype=torch.float32)
            if n is not None and n != z.shape[0]:
                raise InputError(f"n={n} but {z.shape[0]} latents given")
        else:
            z = self.latents(1 if n is None else n, seed, truncation)
        images = self.generate(z, self._labels(z.shape[0], class_))
        if output == "tensor":
            return images
        from impasto.io import to_pil

        return [to_pil(x.expand(3, -1, -1)).convert("L") if x.shape[0] == 1 else to_pil(x)
                for x in images]

    def interpolation_latents(
        self,
        seeds: Sequence[int],
        frames: int,
        *,
        truncation: float | None = None,
        loop: bool = False,
    ) -> Tensor:
        """``(frames, z_dim)``: a slerp path through the latents of ``seeds`` in order (back to
        the first with ``loop``), at even steps; the first frame is the first seed's latent and
        the last the last seed's (or, with ``loop``, the frame just before the first again)."""
        seeds = list(seeds)
        if len(seeds) < 2:
            raise InputError(f"interpolation needs at least two seeds, got {len(seeds)}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
            raise InputError(f"frames must be a whole number >= 2, not {frames!r}")
        keys = self.seed_latents(seeds + seeds[:1] if loop else seeds, truncation)
        segments = keys.shape[0] - 1
        if loop:
            pos = torch.arange(frames, dtype=torch.float64) * segments / frames
        else:
            pos = torch.linspace(0, segments, frames, dtype=torch.float64)
        out = torch.empty(frames, self.z_dim)
        for f, p in enumerate(pos.tolist()):
            i = min(int(math.floor(p)), segments - 1)
            out[f] = slerp(keys[i], keys[i + 1], p - i)
        return out

    def interpolate(
        self,
        seeds: Sequence[int],
        frames: int,
        *,
        truncation: float | None = None,
        class_: int | str | None = None,
        loop: bool = False,
        progress: Callable[[int, int, Tensor], None] | None = None,
        batch_size: int = _CHUNK,
    ) -> Tensor:
        """``(frames, C, H, W)`` in ``[0, 1]``: the images along
        :meth:`interpolation_latents` (one class for every frame on a conditional model);
        ``progress`` and ``batch_size`` as :meth:`generate`'s."""
        z = self.interpolation_latents(seeds, frames, truncation=truncation, loop=loop)
        y = None
        if self.conditional:
            y = torch.full((frames,), 0 if class_ is None else self.class_index(class_))
        elif class_ is not None:
            self.class_index(class_)  # raises: unconditional
        return self.generate(z, y, progress=progress, batch_size=batch_size)

    def __repr__(self) -> str:
        return (
            f"GanGenerator({self.source!r}, {type(self.G).__name__}, z_dim={self.z_dim}, "
            f"{self.channels}x{self.resolution}x{self.resolution}, classes={self.num_classes})"
        )
