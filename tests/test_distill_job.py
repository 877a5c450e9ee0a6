"""The jobs' own bookkeeping: what a student's metrics file reports."""

from __future__ import annotations

import pytest
import torch

from soteacher.student_side.distill_job import student_summary


def test_best_epoch_is_chosen_on_the_validation_split_and_only_test_is_reported():
    history = [{"epoch": 1, "test_acc": 40.0, "val_acc": 50.0, "tv_pstar_test": 0.5},
               {"epoch": 2, "test_acc": 60.0, "val_acc": 45.0, "tv_pstar_test": 0.4},  # best on test
               {"epoch": 3, "test_acc": 55.0, "val_acc": 52.0, "tv_pstar_test": 0.3}]  # best on val
    teacher = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    summary = student_summary(history, teacher, student)
    assert summary["best_chosen_on"] == "val" and summary["best_epoch"] == 3 and summary["best_acc"] == 55.0
    assert summary["last_acc"] == 55.0 and summary["last_tv_pstar_test"] == 0.3
    assert summary["agreement"] == pytest.approx(50.0)
    without_val = student_summary([{k: v for k, v in h.items() if k != "val_acc"} for h in history], teacher, student)
    assert without_val["best_chosen_on"] == "test" and without_val["best_epoch"] == 2
