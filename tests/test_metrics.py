"""Evaluation measures against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from soteacher.training.metrics import accuracy, agreement, kl_between, kl_from, tv_to


def _logits(*rows):
    """Logits whose softmax is exactly the given rows (log of the probabilities)."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_tv_and_kl_to_pstar_by_hand():
    logits = _logits([0.5, 0.25, 0.25], [0.2, 0.3, 0.5])
    pstar = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    # row 1: ½(0.5 + 0.25 + 0.25) = 0.5; row 2: identical, 0
    assert tv_to(logits, pstar) == pytest.approx(0.25)
    # row 1: 1·log(1/0.5) (the zero entries contribute 0·log 0 = 0); row 2: 0
    assert kl_from(pstar, logits) == pytest.approx(math.log(2) / 2)


def test_kl_between_teacher_and_student_by_hand():
    teacher, student = _logits([0.5, 0.5]), _logits([0.25, 0.75])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    # float32 log-softmax: logs up to log 4 ≈ 1.4 within ~1 ulp (1.2e-7) each, and the KL takes differences of two:
    # ≤ 2.4e-7, more than approx's default rel 1e-6 of this 0.14 allows
    assert kl_between(teacher, student) == pytest.approx(expected, abs=2.4e-7)
    assert kl_between(teacher, teacher) == pytest.approx(0.0, abs=1e-12)


def test_accuracy_and_agreement_by_hand():
    a = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(a, torch.tensor([0, 1, 1, 1])) == pytest.approx(75.0)
    assert agreement(a, b) == pytest.approx(75.0)  # they differ on the second sample only
