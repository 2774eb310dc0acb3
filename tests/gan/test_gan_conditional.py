"""Class conditioning through the training loop: D sees every real image with its own label and
the fakes with the labels G drew them with, G's step uses labels too, and a step trains exactly
the class embeddings of the classes in the batch (G's conditional batch norms, D's
projection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.gan import GanLoss, GanTrainConfig, train
from impasto.nets.gan import build_gan
from impasto.nets.layers import ConditionalBatchNorm2d

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40]], np.float64)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> str:
    """48 images of 3 classes, each class a square of its own colour (class 3 has no image)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(48):
        k = (i * 7) % 3  # labels not in file order
        img = np.full((32, 32, 3), 20.0) + rng.normal(0, 4, (32, 32, 3))
        top, left = rng.integers(0, 16, 2)
        img[top: top + 16, left: left + 16] = COLOURS[k]
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(k)
    path = tmp_path_factory.mktemp("squares") / "squares.npz"
    np.savez(path, images=np.stack(images), labels=np.array(labels))
    return str(path)


def _class_of(img: torch.Tensor) -> int:
    """The class whose colour the brightest pixels of ``img`` ``(3, H, W)`` in [-1, 1] have."""
    rgb = (img.flatten(1)[:, img.flatten(1).sum(0) > img.flatten(1).sum(0).median()]
           .mean(1) + 1) * 127.5
    return int(np.argmin(((COLOURS[:3] - rgb.numpy()) ** 2).sum(1)))


def test_labels_reach_g_and_d_in_every_phase(squares, tmp_path, monkeypatch):
    seen: dict[str, list] = {"d": [], "g": []}
    d_step, g_step = GanLoss.d_step, GanLoss.g_step

    def record_d(self, real, y=None, z=None):
        seen["d"].append((real.detach().clone(), None if y is None else y.clone()))
        return d_step(self, real, y, z)

    def record_g(self, z, y=None):
        seen["g"].append(None if y is None else y.clone())
        return g_step(self, z, y)

    monkeypatch.setattr(GanLoss, "d_step", record_d)
    monkeypatch.setattr(GanLoss, "g_step", record_g)
    cfg = GanTrainConfig(data=squares, run=str(tmp_path / "run"), conditional=True, z_dim=8,
                         base_width=8, batch_size=8, steps=3, d_steps=2, precision="fp32",
                         device="cpu", log_every=0, sample_every=0, ckpt_every=0,
                         tensorboard=False, channels_last=False)
    result = train(cfg)
    assert len(seen["d"]) == 6 and len(seen["g"]) == 3
    for real, y in seen["d"]:
        assert y is not None and y.shape == (8,)
        assert [_class_of(x) for x in real] == y.tolist()  # each image with its own label
    assert all(y is not None and y.shape == (8,) for y in seen["g"])

    # one step trains the embeddings of the classes it saw; class 3 (no image) never moves
    torch.manual_seed(cfg.seed)
    G0, D0 = build_gan(result.G.config)
    assert result.G.config.num_classes == 3
    for name, m in result.G.named_modules():
        if isinstance(m, ConditionalBatchNorm2d):
            m0 = G0.get_submodule(name)
            assert not torch.equal(m.gain.weight, m0.gain.weight), name
            assert not torch.equal(m.bias.weight, m0.bias.weight), name
    assert not torch.equal(result.D.embed.weight, D0.embed.weight)


def test_the_label_changes_g_and_d_for_the_same_z_and_image(squares, tmp_path):
    """After a short run, G(z, y) and D(x, y) depend on y. At initialisation G does not (its
    class gains are 1, biases 0), and each Adam step moves them by about the learning rate,
    so after 20 steps at 2e-3 the effect is still small."""
    cfg = GanTrainConfig(data=squares, run=str(tmp_path / "run"), conditional=True, z_dim=8,
                         base_width=8, batch_size=8, steps=20, lr_g=2e-3, lr_d=2e-3,
                         precision="fp32", device="cpu", log_every=0, sample_every=0,
                         ckpt_every=0, tensorboard=False)
    result = train(cfg)
    G, D = result.G.eval(), result.D.eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    G0, _ = build_gan(result.G.config)
    G0.eval()
    with torch.no_grad():
        a = G(z, torch.tensor([0, 0, 0]))
        b = G(z, torch.tensor([1, 1, 1]))
        da, db = D(a, torch.tensor([0, 0, 0])), D(a, torch.tensor([1, 1, 1]))
        a0, b0 = G0(z, torch.tensor([0, 0, 0])), G0(z, torch.tensor([1, 1, 1]))
    assert torch.equal(a0, b0)
    assert (a - b).abs().mean() > 2e-3
    assert (da - db).abs().min() > 1e-3
