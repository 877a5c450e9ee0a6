"""Consistency regularisation: loss value, temporal-ensemble update and weight schedules, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from soteacher.teachers.consistency import TemporalEnsemble, consistency_loss, consistency_weight


def softmax_row(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_loss_is_squared_error_summed_over_classes_and_averaged_over_batch():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    targets = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    expected = 0.0
    for row, target in zip(logits.tolist(), targets.tolist()):
        expected += sum((p - t) ** 2 for p, t in zip(softmax_row(row), target))
    expected /= 2
    assert math.isclose(consistency_loss(logits, targets).item(), expected, rel_tol=1e-6)


def test_first_epoch_fills_buffer_then_moving_average_with_tau_one_over_one_plus_k():
    ens = TemporalEnsemble(num_samples=3, num_classes=2)
    z1 = torch.tensor([[2.0, 0.0]])
    loss = ens.loss_and_update(z1, torch.tensor([1]))
    p1 = softmax_row([2.0, 0.0])
    # against the empty buffer: Σ p² ; then τ = 1 copies the prediction in
    assert math.isclose(loss.item(), p1[0] ** 2 + p1[1] ** 2, rel_tol=1e-6)
    assert torch.allclose(ens.targets[1], torch.tensor(p1))
    assert ens.targets[[0, 2]].abs().sum() == 0
    ens.end_epoch(1)  # k = 2 -> τ = 1/3
    assert math.isclose(ens.tau, 1 / 3)
    z2 = torch.tensor([[0.0, 1.0]])
    ens.loss_and_update(z2, torch.tensor([1]))
    p2 = softmax_row([0.0, 1.0])
    expected = [(2 / 3) * a + (1 / 3) * b for a, b in zip(p1, p2)]
    assert torch.allclose(ens.targets[1], torch.tensor(expected), atol=1e-6)


def test_update_uses_detached_predictions():
    ens = TemporalEnsemble(2, 2)
    logits = torch.zeros(1, 2, requires_grad=True)
    ens.loss_and_update(logits, torch.tensor([0]))
    assert not ens.targets.requires_grad


@pytest.mark.parametrize(
    "schedule, expected",
    [
        # λ=2, E=4; value after epoch e is used in epoch e+1; x = 1 - (e+1)/E
        ("linear", [0.0, 2 * 2 / 4, 2 * 3 / 4, 2 * 4 / 4]),
        ("cycle", [0.0] + [2 * math.sqrt(1 - (1 - (e + 1) / 4) ** 2) for e in (1, 2, 3)]),
        ("cosine", [0.0] + [2 * math.cos((1 - (e + 1) / 4) * math.pi / 2) for e in (1, 2, 3)]),
        ("step", [0.0, 0.0, 0.0, 2.0]),  # start 3: on once epoch 3 has finished (reference: 0 if e < start_at)
    ],
)
def test_weight_schedules(schedule, expected):
    got = [consistency_weight(schedule, 2.0, e, 4, start_epoch=3) for e in range(4)]
    assert got == pytest.approx(expected)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown consistency schedule"):
        consistency_weight("exp", 1.0, 1, 4)


def test_update_under_bf16_autocast_keeps_the_buffer_a_float32_moving_average():
    """With bf16 logits (compute.amp: bf16) the update is still q ← (1 − τ) q + τ p in float32: rows stay on
    the simplex (a bf16 τ gives (1 − τ) + τ ≠ 1 and the rows drift)."""
    torch.manual_seed(0)
    ens = TemporalEnsemble(num_samples=6, num_classes=5)
    logits = torch.randn(6, 5).to(torch.bfloat16)
    indices = torch.arange(6)
    ens.loss_and_update(logits, indices)  # first epoch: τ = 1, q = p
    ens.end_epoch(99)  # k = 100, τ = 1/101: not representable in bf16
    q0 = ens.targets.double().clone()
    probs = torch.softmax(logits.double(), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ens.loss_and_update(logits, indices)
    expected = (1 - 1 / 101) * q0 + (1 / 101) * probs
    assert ens.targets.dtype == torch.float32
    torch.testing.assert_close(ens.targets.double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ens.targets.sum(1), torch.ones(6), rtol=0, atol=1e-6)
