"""The null-matching loss (``nullmatch``), without a model: its target, optimum and gradient signs."""

from __future__ import annotations

import pytest
import torch

from pii_unlearn.unlearn.losses import null_matching, row_quantile


def test_row_quantile_interpolates_each_row_at_its_own_level() -> None:
    values = torch.tensor([[3.0, 1.0, 2.0], [10.0, 30.0, 20.0]])
    got = row_quantile(values, torch.tensor([0.0, 0.75]))
    assert torch.allclose(got, torch.tensor([1.0, 25.0]))
    assert torch.allclose(row_quantile(values, torch.tensor([1.0, 0.5])), torch.tensor([3.0, 20.0]))


def _grad(true: float, twins: list[float], q: float = 0.5, delta: float = 1.0) -> tuple[float, torch.Tensor]:
    t = torch.tensor([true], requires_grad=True)
    w = torch.tensor([twins], requires_grad=True)
    loss = null_matching(t, w, torch.tensor([q]), torch.ones(1), delta=delta)
    loss.backward()
    assert t.grad is not None
    return float(t.grad[0]), w.grad


def test_a_value_above_its_twins_is_pushed_down_and_one_below_pushed_back_up() -> None:
    twins = [-40.0, -50.0, -60.0]
    above, _ = _grad(-1.0, twins)  # memorised: far likelier than never-seen values
    below, _ = _grad(-90.0, twins)  # over-unlearned: far less likely than never-seen values
    # gradient descent moves against the gradient: down for the first, up for the second
    assert above > 0 and below < 0
    # two-sided and symmetric far from the target (smooth-L1: constant pull)
    assert above == pytest.approx(-below)


def test_the_optimum_is_the_chosen_quantile_of_the_twins_and_twins_get_no_gradient() -> None:
    twins = [-40.0, -50.0, -60.0]
    at, twin_grad = _grad(-50.0, twins, q=0.5)
    assert at == 0.0
    assert twin_grad is None or torch.count_nonzero(twin_grad) == 0
    # a lower quantile is a lower target: -50 now sits above it and is pushed down
    low, _ = _grad(-50.0, twins, q=0.0)
    assert low > 0


def test_loss_is_zero_at_the_null_and_grows_both_ways() -> None:
    twins = torch.tensor([[-40.0, -50.0, -60.0]])
    q, w = torch.tensor([0.5]), torch.ones(1)

    def loss(v: float) -> float:
        return float(null_matching(torch.tensor([v]), twins, q, w, delta=2.0))

    assert loss(-50.0) == 0.0
    assert loss(-45.0) > loss(-49.0) > 0
    assert loss(-55.0) > loss(-51.0) > 0


def test_weights_scale_each_value() -> None:
    twins = torch.tensor([[-10.0, -10.0], [-10.0, -10.0]])
    true = torch.tensor([0.0, -10.0])
    q = torch.tensor([0.5, 0.5])
    only_first = null_matching(true, twins, q, torch.tensor([1.0, 0.0]), delta=1.0)
    only_second = null_matching(true, twins, q, torch.tensor([0.0, 1.0]), delta=1.0)
    assert float(only_first) > 0 and float(only_second) == 0.0
