"""Per-sample moving averages of predictions (training/averages.py): both update rules by hand over a few visits.

Tolerances: the table holds probabilities ≤ 1, each entry after a few (≲ 10) float32 roundings of ≤ 2^-24 ≈ 6e-8,
so it is within ~6e-7 of the float64 hand value: ``ATOL = 1e-6``.
"""

from __future__ import annotations

import math

import torch

from soteacher.training.averages import EpochMeanAverage, ExponentialAverage

ATOL = 1e-6


def softmax_row(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def close(table_row: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(table_row.double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=ATOL)


def test_epoch_mean_first_epoch_copies_then_tau_is_one_over_one_plus_k():
    average = EpochMeanAverage(num_samples=3, num_classes=2)
    rows = [[2.0, 0.0], [0.0, 1.0], [-1.0, 3.0]]
    p1, p2, p3 = (softmax_row(r) for r in rows)
    average.update(torch.tensor([rows[0]]), torch.tensor([1]))  # epoch 1: k = 0, τ = 1
    close(average.table[1], p1)
    assert average.table[[0, 2]].abs().sum() == 0  # unvisited rows untouched
    average.end_epoch(1)  # k = 2: τ = 1/3
    average.update(torch.tensor([rows[1]]), torch.tensor([1]))
    q2 = [(2 / 3) * a + (1 / 3) * b for a, b in zip(p1, p2)]
    close(average.table[1], q2)
    average.end_epoch(2)  # k = 3: τ = 1/4
    average.update(torch.tensor([rows[2]]), torch.tensor([1]))
    close(average.table[1], [(3 / 4) * a + (1 / 4) * b for a, b in zip(q2, p3)])


def test_filter_kd_rule_initialises_with_the_first_prediction_then_a_fixed_rate():
    """Ren, Guo & Sutherland's Filter-KD: α = 0.05 on every visit, the first visit copies the prediction."""
    alpha = 0.05
    average = ExponentialAverage(num_samples=4, num_classes=3, alpha=alpha)
    rows = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0], [3.0, -2.0, 0.0]]
    p1, p2, p3 = (softmax_row(r) for r in rows)
    for row in rows:  # three visits of sample 2 (within one epoch or over several: the rule does not care)
        average.update(torch.tensor([row]), torch.tensor([2]))
        average.end_epoch(1)
    q1 = p1
    q2 = [(1 - alpha) * a + alpha * b for a, b in zip(q1, p2)]
    q3 = [(1 - alpha) * a + alpha * b for a, b in zip(q2, p3)]
    close(average.table[2], q3)
    assert average.table[[0, 1, 3]].abs().sum() == 0


def test_filter_kd_rule_softens_with_its_temperature_and_tracks_each_sample_on_its_own():
    average = ExponentialAverage(num_samples=2, num_classes=2, alpha=0.5, temperature=2.0)
    average.update(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))  # sample 0's first visit
    average.update(torch.tensor([[0.0, 2.0], [4.0, 0.0]]), torch.tensor([0, 1]))  # 0's second, 1's first
    first, second = softmax_row([2.0, 0.0], 2.0), softmax_row([0.0, 2.0], 2.0)
    close(average.table[0], [0.5 * a + 0.5 * b for a, b in zip(first, second)])
    close(average.table[1], softmax_row([4.0, 0.0], 2.0))


def test_update_uses_detached_predictions():
    average = EpochMeanAverage(2, 2)
    average.update(torch.zeros(1, 2, requires_grad=True), torch.tensor([0]))
    assert not average.table.requires_grad


def test_epoch_mean_under_bf16_autocast_keeps_a_float32_moving_average():
    """With bf16 logits (compute.amp: bf16) the update is still q ← (1 − τ) q + τ p in float32: rows stay on
    the simplex (a bf16 τ gives (1 − τ) + τ ≠ 1 and the rows drift)."""
    torch.manual_seed(0)
    average = EpochMeanAverage(num_samples=6, num_classes=5)
    logits = torch.randn(6, 5).to(torch.bfloat16)
    indices = torch.arange(6)
    average.update(logits, indices)  # first epoch: τ = 1, q = p
    average.end_epoch(99)  # k = 100, τ = 1/101: not representable in bf16
    q0 = average.table.double().clone()
    probs = torch.softmax(logits.double(), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        average.update(logits, indices)
    expected = (1 - 1 / 101) * q0 + (1 / 101) * probs
    assert average.table.dtype == torch.float32
    torch.testing.assert_close(average.table.double(), expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(average.table.sum(1), torch.ones(6), rtol=0, atol=ATOL)


def test_the_table_is_resumable_state():
    average = ExponentialAverage(3, 2)
    average.update(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    resumed = ExponentialAverage(3, 2)
    resumed.load_state_dict(average.state_dict())
    assert torch.equal(resumed.table, average.table)
