"""GAN losses by hand, penalties on linear and quadratic critics, and GanLoss's phases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from impasto.errors import InputError
from impasto.gan import (
    DiffAugment,
    GanLoss,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wgan,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_wgan,
    gradient_penalty,
    r1_penalty,
)
from impasto.nets.gan import GanNetConfig, build_gan

Z = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


class LinearD(nn.Module):
    """D(x) = w . flatten(x) + b, which has input gradient w everywhere."""

    def __init__(self, w) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.b = nn.Parameter(torch.tensor(0.25))

    def forward(self, x, y=None):
        out = x.flatten(1) @ self.w + self.b
        return out if y is None else out + y.float()


def tiny_gan(arch="dcgan", num_classes=0, **kw):
    torch.manual_seed(0)
    return build_gan(GanNetConfig(arch, 32, 3, z_dim=Z, base_width=8,
                                  num_classes=num_classes, **kw))


def grads(net: nn.Module):
    return [p.grad for p in net.parameters()]


# ------------------------------------------------------------------------------------------
# Functional losses
# ------------------------------------------------------------------------------------------


def test_nonsaturating_losses_by_hand():
    real, fake = torch.full((4,), 2.0), torch.full((4,), -1.0)
    assert d_loss_nonsaturating(real, fake).item() == pytest.approx(softplus(-2) + softplus(-1))
    assert g_loss_nonsaturating(fake).item() == pytest.approx(softplus(1))
    # the D loss is the binary cross-entropy with targets 1 (real) and 0 (fake)
    r, f = torch.tensor([0.3, -1.2]), torch.tensor([2.0, -0.5])
    bce = nn.functional.binary_cross_entropy_with_logits
    expected = bce(r, torch.ones(2)) + bce(f, torch.zeros(2))
    torch.testing.assert_close(d_loss_nonsaturating(r, f), expected)


def test_hinge_and_wgan_losses_by_hand():
    real = torch.tensor([0.5, 2.0, -1.0])
    fake = torch.tensor([-2.0, 0.0, 0.5])
    # mean(relu(1 - r)) = mean(0.5, 0, 2) ; mean(relu(1 + f)) = mean(0, 1, 1.5)
    assert d_loss_hinge(real, fake).item() == pytest.approx(2.5 / 3 + 2.5 / 3)
    assert g_loss_hinge(fake).item() == pytest.approx(0.5)
    assert d_loss_wgan(real, fake).item() == pytest.approx(-1.5 / 3 - 1.5 / 3)
    assert g_loss_wgan(fake).item() == pytest.approx(0.5)


def test_losses_are_float32_for_bf16_logits():
    real = torch.tensor([0.5, 2.0], dtype=torch.bfloat16)
    fake = torch.tensor([-1.0, 0.25], dtype=torch.bfloat16)
    for value in (d_loss_nonsaturating(real, fake), d_loss_hinge(real, fake),
                  g_loss_nonsaturating(fake), g_loss_wgan(fake)):
        assert value.dtype == torch.float32
    # (N, 1) logits give the same numbers as (N,)
    assert d_loss_hinge(real[:, None], fake[:, None]) == d_loss_hinge(real, fake)


def test_gradient_penalty_on_a_linear_critic_is_exact():
    D = LinearD([1.0, 2.0, 2.0])  # ||w|| = 3
    real, fake = torch.randn(5, 3, 1, 1), torch.randn(5, 3, 1, 1)
    gp = gradient_penalty(D, real, fake, weight=10.0)
    assert gp.item() == 40.0  # 10 * (3 - 1)^2
    assert gradient_penalty(D, real, fake, y=torch.arange(5), weight=0.5).item() == 2.0
    gp.backward()  # d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||
    torch.testing.assert_close(D.w.grad, 20 * 2 * D.w.detach() / 3)


def test_gradient_penalty_interpolates_with_one_uniform_eps_per_sample():
    # D(x) = ||x||^2 / 2 has gradient x, so at x_hat = eps * real + (1 - eps) * 0 the gradient
    # norm is eps * ||real||.
    D = lambda x: 0.5 * x.flatten(1).square().sum(1)  # noqa: E731
    real = torch.arange(1.0, 13.0).reshape(2, 3, 2, 1)
    fake = torch.zeros_like(real)
    gp = gradient_penalty(D, real, fake, weight=3.0, generator=torch.Generator().manual_seed(4))
    eps = torch.rand(2, generator=torch.Generator().manual_seed(4))
    norms = eps * real.flatten(1).norm(dim=1)
    torch.testing.assert_close(gp, 3.0 * ((norms - 1) ** 2).mean())
    with pytest.raises(InputError, match="differ in shape"):
        gradient_penalty(D, real, fake[:1])


def test_r1_penalty_by_hand():
    D = LinearD([0.0, 2.0, 0.0, 0.0])  # ||w|| = 2
    real = torch.randn(3, 1, 2, 2)
    r1 = r1_penalty(D, real, gamma=5.0)
    assert r1.item() == pytest.approx(5.0 / 2 * 4)
    r1.backward()  # d/dw gamma/2 ||w||^2 = gamma w
    torch.testing.assert_close(D.w.grad, 5.0 * D.w.detach())
    # Expectation over samples: D(x) = ||x||^2 / 2 has gradient x.
    quad = lambda x: 0.5 * x.flatten(1).square().sum(1)  # noqa: E731
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert r1_penalty(quad, x, gamma=2.0).item() == pytest.approx((5 + 9) / 2)


# ------------------------------------------------------------------------------------------
# GanLoss phases
# ------------------------------------------------------------------------------------------


def floats(stats: dict) -> dict:
    """A phase's statistics as numbers, after checking they are what the loop can keep without
    a read: detached 0-d float32 tensors on the networks' device (here the CPU)."""
    for name, v in stats.items():
        assert isinstance(v, torch.Tensor), name
        assert v.dim() == 0 and v.dtype == torch.float32 and not v.requires_grad, name
    return {name: float(v) for name, v in stats.items()}


def test_d_step_backprops_into_d_only_and_reports_its_numbers():
    G, D = tiny_gan("dcgan", num_classes=3)
    loss = GanLoss(G, D, "hinge")
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    y, z = torch.tensor([0, 1, 2, 0]), torch.randn(4, Z)
    stats = floats(loss.d_step(real, y, z))
    assert set(stats) == {"d_loss", "d_real", "d_fake"}
    assert all(math.isfinite(v) for v in stats.values())
    assert all(g is None for g in grads(G))
    assert all(g is not None for g in grads(D))
    assert sum(g.abs().sum().item() for g in grads(D)) > 0
    # Same batches, same train-mode batch statistics: the reported numbers can be recomputed.
    with torch.no_grad():
        r, f = D(real, y), D(G(z, y), y)
    assert stats["d_real"] == pytest.approx(r.mean().item(), abs=1e-5)
    assert stats["d_fake"] == pytest.approx(f.mean().item(), abs=1e-5)
    assert stats["d_loss"] == pytest.approx(d_loss_hinge(r, f).item(), abs=1e-5)


def test_d_step_samples_latents_when_none_are_given():
    G, D = tiny_gan("sngan")
    stats = GanLoss(G, D).d_step(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert math.isfinite(stats["d_loss"]) and all(g is None for g in grads(G))
    with pytest.raises(InputError, match="pass latents z"):
        GanLoss(nn.Linear(2, 1), nn.Linear(1, 1)).d_step(torch.randn(2, 1))


def test_g_step_backprops_into_g_only_and_restores_flags():
    G, D = tiny_gan("sngan", num_classes=2)
    frozen = next(D.parameters())
    frozen.requires_grad_(False)  # a user's own choice must survive the phase
    loss = GanLoss(G, D, "nonsaturating")
    y = torch.tensor([1, 0])
    stats = floats(loss.g_step(torch.randn(2, Z), y))
    assert set(stats) == {"g_loss", "g_d_fake"}
    assert all(math.isfinite(v) for v in stats.values())
    assert all(g is None for g in grads(D))
    assert all(g is not None for g in grads(G))
    assert sum(g.abs().sum().item() for g in grads(G)) > 0
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in D.parameters() if p is not frozen)
    # g_loss = softplus(-D(G(z))) averaged, consistent with the reported mean logit sign
    assert stats["g_loss"] > 0


def test_penalty_step_adds_the_expected_gradient():
    G = nn.Linear(Z, 4)
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)

    D = LinearD([1.0, 2.0, 2.0, 0.0])  # ||w|| = 3
    assert GanLoss(G, D, "hinge").penalty_step(real, fake) == {}
    assert D.w.grad is None

    stats = floats(GanLoss(G, D, "nonsaturating", r1_gamma=4.0).penalty_step(real))
    assert stats == {"r1": pytest.approx(4.0 / 2 * 9)}
    torch.testing.assert_close(D.w.grad, 4.0 * D.w.detach())
    assert D.b.grad is None or D.b.grad.item() == 0.0

    D.zero_grad(set_to_none=True)
    stats = floats(GanLoss(G, D, "wgan-gp", gp_weight=10.0).penalty_step(real, fake))
    assert stats == {"gp": 40.0}
    torch.testing.assert_close(D.w.grad, 10.0 * 2 * (3 - 1) * D.w.detach() / 3)

    # Both at once add up, and add to gradients already there.
    D.zero_grad(set_to_none=True)
    D.w.grad = torch.ones(4)
    both = GanLoss(G, D, "wgan-gp", gp_weight=10.0, r1_gamma=4.0)
    stats = floats(both.penalty_step(real, fake))
    assert set(stats) == {"gp", "r1"}
    torch.testing.assert_close(D.w.grad, 1 + (40 / 3 + 4.0) * D.w.detach())
    assert all(p.grad is None for p in G.parameters())

    with pytest.raises(InputError, match="needs a fake batch"):
        GanLoss(G, D, "wgan-gp").penalty_step(real)


def test_augment_sees_every_image_d_sees():
    G, D = tiny_gan("dcgan", d_norm="layer")
    calls = []

    def spy(x):
        calls.append(x.shape[0])
        return x.flip(3)

    loss = GanLoss(G, D, "wgan-gp", r1_gamma=1.0, augment=spy)
    real, z = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, Z)
    loss.d_step(real, z=z)
    assert len(calls) == 2
    with torch.no_grad():
        fake = G(z)
    stats = loss.penalty_step(real, fake)
    assert len(calls) == 4 and set(stats) == {"gp", "r1"}
    loss.g_step(z)
    assert len(calls) == 5

    # With real DiffAugment every phase stays finite and still reaches G.
    G.zero_grad(set_to_none=True)
    aug = DiffAugment(generator=torch.Generator().manual_seed(0))
    loss = GanLoss(G, D, "hinge", augment=aug)
    assert math.isfinite(loss.d_step(real, z=z)["d_loss"])
    assert math.isfinite(loss.g_step(z)["g_loss"])
    assert sum(p.grad.abs().sum().item() for p in G.parameters()) > 0


def test_autocast_wraps_forwards_but_not_penalties():
    G, D = tiny_gan("dcgan", d_norm="none")
    entered = []

    def bf16():
        entered.append(1)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    real, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, Z)
    loss32 = GanLoss(G, D, "nonsaturating", r1_gamma=1.0)
    loss16 = GanLoss(G, D, "nonsaturating", r1_gamma=1.0, autocast=bf16)
    ref = floats(loss32.d_step(real, z=z))
    D.zero_grad(set_to_none=True)
    low = floats(loss16.d_step(real, z=z))
    assert len(entered) == 1
    assert low["d_loss"] == pytest.approx(ref["d_loss"], abs=0.05)
    assert all(p.grad.dtype == torch.float32 for p in D.parameters())
    # penalties run in float32 without autocast: identical to the float32 loss object
    D.zero_grad(set_to_none=True)
    assert floats(loss16.penalty_step(real)) == floats(loss32.penalty_step(real))
    assert len(entered) == 1
    assert math.isfinite(loss16.g_step(z)["g_loss"]) and len(entered) == 2


def test_bad_loss_options():
    G, D = tiny_gan()
    with pytest.raises(InputError, match="unknown GAN loss 'lsgan'; choose from"):
        GanLoss(G, D, "lsgan")
    with pytest.raises(InputError, match="r1_gamma must be a finite number >= 0"):
        GanLoss(G, D, r1_gamma=-1)


def test_loss_kinds_come_from_the_shared_registry():
    from impasto.gan import GAN_LOSS_KINDS
    from impasto.losses.adversarial import ADVERSARIAL_LOSSES, AdversarialLoss

    assert GAN_LOSS_KINDS == ADVERSARIAL_LOSSES.names() == ("nonsaturating", "hinge", "wgan-gp")
    hinge = ADVERSARIAL_LOSSES.get("hinge")
    assert hinge.d_loss is d_loss_hinge and hinge.g_loss is g_loss_hinge
    assert [n for n, a in ADVERSARIAL_LOSSES.items() if a.gradient_penalty] == ["wgan-gp"]
    # A registered loss is a GanLoss kind without touching GanLoss: least squares (Mao et al.).
    lsgan = AdversarialLoss(lambda r, f: (r.float() - 1).square().mean() + f.float().square()
                            .mean(), lambda f: (f.float() - 1).square().mean())
    ADVERSARIAL_LOSSES.register("lsgan", lsgan)
    try:
        D = LinearD([1.0, -2.0])
        G = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            G.weight.copy_(torch.eye(2))
        loss = GanLoss(G, D, "lsgan")
        assert loss.penalties == ()
        real, z = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 1.0]])
        # D(real) = 1.25, -1.75; D(G(z)) = D(z) = 0.25
        stats = loss.d_step(real, z=z)
        assert stats["d_loss"] == pytest.approx((0.25**2 + 2.75**2) / 2 + 0.25**2)
        assert loss.g_step(z)["g_loss"] == pytest.approx(0.75**2)
    finally:
        ADVERSARIAL_LOSSES.unregister("lsgan")
    assert "lsgan" not in ADVERSARIAL_LOSSES


def test_adversarial_losses_sit_below_gan_and_style():
    """impasto.losses imports only leaf modules; style/ takes the losses from there, never
    sideways from gan/."""
    import ast
    from pathlib import Path

    import impasto

    root = Path(impasto.__file__).parent

    def imports(path: Path) -> set[str]:
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
        return {n for n in out if n.startswith("impasto")}

    for path in (root / "losses").glob("*.py"):  # the full rules: tests/test_layering.py
        assert not {n for n in imports(path)
                    if n.startswith(("impasto.gan", "impasto.style", "impasto.train"))}, path
    for path in (root / "style").rglob("*.py"):
        assert not any(n.startswith("impasto.gan") for n in imports(path)), path


def test_tiny_gan_learns_the_mean_of_a_gaussian():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    D = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    loss = GanLoss(G, D, "nonsaturating")
    opt_g = torch.optim.Adam(G.parameters(), 2e-2, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), 2e-2, betas=(0.5, 0.99))
    z_eval = torch.randn(2000, 4)
    with torch.no_grad():
        before = G(z_eval).mean().item()
    for _ in range(60):
        real = 3.0 + 0.5 * torch.randn(64, 1)
        opt_d.zero_grad(set_to_none=True)
        loss.d_step(real, z=torch.randn(64, 4))
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        loss.g_step(torch.randn(64, 4))
        opt_g.step()
    with torch.no_grad():
        after = G(z_eval).mean().item()
    # GAN training oscillates around the data mean (over 20 seeds the final mean lay in
    # [2.1, 3.3]); a robust check is that most of the distance to the data mean is gone.
    assert abs(before - 3.0) > 2.0
    assert abs(after - 3.0) < 0.4 * abs(before - 3.0)
