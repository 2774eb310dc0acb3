"""EMA: the update formula on known numbers, buffers copied, ramp-up, half-life, state round
trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from impasto.train import EMA


def _net():
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _fill(model: nn.Module, start: float) -> None:
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(
                torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) * 0.37 + start + i
            )


def test_one_update_is_beta_old_plus_one_minus_beta_new_exactly():
    model = _net()
    _fill(model, 1.0)
    ema = EMA(model, beta=0.9)
    old = [p.detach().clone() for p in ema.model.parameters()]
    _fill(model, -5.0)
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.25, -0.5]))
        model[1].running_var.copy_(torch.tensor([2.0, 3.0]))
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)

    for o, e, n in zip(old, ema.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(e, o * 0.9 + n * 0.1)  # same float32 roundings
        assert torch.allclose(e.double(), 0.9 * o.double() + 0.1 * n.double(), rtol=0, atol=1e-6)
    # Buffers are copied, not averaged.
    assert torch.equal(ema.model[1].running_mean, torch.tensor([0.25, -0.5]))
    assert torch.equal(ema.model[1].running_var, torch.tensor([2.0, 3.0]))
    assert int(ema.model[1].num_batches_tracked) == 7
    assert ema.num_updates == 1


def test_update_on_exactly_representable_numbers():
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(4.0)
        model.bias.fill_(-8.0)
    ema = EMA(model, beta=0.75)
    with torch.no_grad():
        model.weight.fill_(8.0)
        model.bias.fill_(0.0)
    ema.update(model)
    assert ema.model.weight.item() == 5.0 and ema.model.bias.item() == -6.0
    ema.update(model)
    assert ema.model.weight.item() == 5.75 and ema.model.bias.item() == -4.5


def test_copy_is_independent_eval_and_without_grad():
    model = _net()
    model.train()
    ema = EMA(model)
    assert ema.model is not model and not ema.model.training
    assert all(not p.requires_grad for p in ema.model.parameters())
    before = ema.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(ema.model[0].weight, before)


def test_rampup_by_images():
    model = nn.Linear(2, 2)
    ema = EMA(model, beta=0.9, rampup_images=100)
    old = ema.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(3.0)
    assert ema.current_beta(0) == 0.0 and ema.current_beta(50) == pytest.approx(0.45)
    assert ema.current_beta(100) == 0.9 and ema.current_beta(10**6) == 0.9
    ema.update(model, images_seen=50)
    expected = 0.45 * old.double() + 0.55 * model.weight.detach().double()
    assert torch.allclose(ema.model.weight.double(), expected, rtol=0, atol=1e-6)
    ema.update(model, images_seen=0)  # beta 0: a plain copy
    assert torch.equal(ema.model.weight, model.weight)
    with pytest.raises(ValueError, match="images_seen"):
        ema.update(model)


def test_half_life_in_images_with_rampup_ratio():
    """StyleGAN2-ADA's rule: beta = 0.5 ** (images / min(H, ratio * images_seen))."""
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, half_life_images=1000, rampup_ratio=0.05)
    # at 2000 images seen the half-life is 5% of them, 100 images: 100 images halve the weight
    assert ema.current_beta(2000, 100) == 0.5
    assert ema.current_beta(2000, 50) == pytest.approx(0.5**0.5)
    # from 20000 images on it is H itself
    assert ema.current_beta(20_000, 1000) == 0.5 and ema.current_beta(10**7, 1000) == 0.5
    assert ema.current_beta(10**7, 64) == pytest.approx(0.5 ** (64 / 1000))
    assert ema.current_beta(0, 64) == 0.0  # the first update copies the model
    # two updates halving the distance each time, on exact numbers
    with torch.no_grad():
        model.weight.fill_(8.0)
    ema.update(model, images_seen=2000, images=100)
    assert ema.model.weight.item() == 4.0
    ema.update(model, images_seen=20_000, images=1000)
    assert ema.model.weight.item() == 6.0
    # without a ratio the half-life is H from the start
    assert EMA(model, half_life_images=1000).current_beta(100, 1000) == 0.5
    with pytest.raises(ValueError, match="images"):
        ema.update(model, images_seen=100)
    with pytest.raises(ValueError, match="not both"):
        EMA(model, rampup_images=10, half_life_images=1000)
    with pytest.raises(ValueError, match="needs half_life_images"):
        EMA(model, rampup_ratio=0.05)
    with pytest.raises(ValueError, match="positive"):
        EMA(model, half_life_images=0)


def test_state_dict_round_trip_and_determinism():
    torch.manual_seed(0)
    model = _net()
    a, b = EMA(model, beta=0.99), EMA(model, beta=0.99)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        a.update(model)
        b.update(model)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    c = EMA(_net(), beta=0.99)
    c.load_state_dict(a.state_dict())
    for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert c.num_updates == 3


@pytest.mark.cuda  # skipped without CUDA (tests/conftest.py); pytest -m cuda runs it
def test_cuda_matches_cpu_bit_for_bit():
    model = _net()
    _fill(model, 1.0)
    cpu, gpu = EMA(model, beta=0.9), EMA(model.cuda(), beta=0.9)
    _fill(model, -2.0)
    gpu.update(model)
    cpu.update(model.cpu())
    for x, y in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        assert torch.equal(x, y.cpu())
