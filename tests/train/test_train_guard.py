"""check_finite: NaN/inf losses stop training with one clear line; finite ones pass."""

from __future__ import annotations

import math

import pytest
import torch

from impasto.errors import ImpastoError, InputError
from impasto.train import NonFiniteLossError, check_finite


def test_nan_tensor_names_loss_and_step():
    with pytest.raises(NonFiniteLossError) as e:
        check_finite({"g_loss": torch.tensor(0.3), "d_loss": torch.tensor(float("nan"))}, 120)
    assert str(e.value) == "loss 'd_loss' became nan at step 120; no checkpoint had been written yet"
    assert (e.value.name, e.value.step) == ("d_loss", 120) and math.isnan(e.value.value)
    assert isinstance(e.value, ImpastoError) and not isinstance(e.value, InputError)


@pytest.mark.parametrize(
    "value, word",
    [
        (float("inf"), "inf"),
        (-math.inf, "-inf"),
        (torch.tensor([1.0, -math.inf]), "-inf"),
        (torch.tensor([[math.inf, math.nan]]), "nan"),
    ],
)
def test_infinities_and_non_scalar_tensors(value, word):
    with pytest.raises(NonFiniteLossError, match=rf"^loss 'r1' became {word} at step 7;"):
        check_finite({"r1": value}, 7)


def test_first_bad_loss_in_order_and_checkpoint_named():
    losses = {"a": 1.0, "b": torch.tensor(math.inf), "c": math.nan}
    with pytest.raises(NonFiniteLossError) as e:
        check_finite(losses, 3, checkpoint="run/ckpt-000000002.pt")
    assert str(e.value) == (
        "loss 'b' became inf at step 3; the last good checkpoint (run/ckpt-000000002.pt) is kept"
    )


def test_finite_losses_pass():
    check_finite({"a": torch.tensor(1e30), "b": 0.0, "c": torch.zeros(3), "d": -2}, 0)
    check_finite({}, 0)
