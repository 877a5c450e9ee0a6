"""The teacher objective (teacher_side/objective.py): cross-entropy plus the weighted Lipschitz and consistency
terms, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from soteacher.models.base import ModelOutput
from soteacher.teachers.objective import TeacherObjective
from tests.helpers import soteacher_recipe, standard_recipe


def test_teacher_objective_combines_terms_with_schedule():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    # the hand values below need these: a large λ_LR, λ_CR 2, the l1 bound, the linear ramp
    recipe = soteacher_recipe(lambda_lr=0.1, lambda_cr=2.0, lipschitz_bound="l1", cr_schedule="linear")
    obj = TeacherObjective(net, recipe, num_samples=5, num_classes=3, total_epochs=4)
    logits = net(torch.randn(2, 1, 2, 2))
    labels, idx = torch.tensor([0, 2]), torch.tensor([1, 3])
    losses = obj(ModelOutput(logits, [], []), None, labels, idx)
    assert set(losses) == {"ce", "lipschitz", "consistency"}
    assert losses["consistency"].item() == 0.0  # weight 0 during the first epoch
    w = net[1].weight.detach()
    assert math.isclose(losses["lipschitz"].item(), 0.1 * w.abs().sum(0).max().item(), rel_tol=1e-6)
    obj.end_epoch(1)
    assert math.isclose(obj.cr_weight.item(), 2.0 * 2 / 4)
    losses = obj(ModelOutput(logits.detach(), [], []), None, labels, idx)
    # buffer now holds the epoch-1 predictions for idx; same logits -> zero squared error
    assert losses["consistency"].item() == pytest.approx(0.0, abs=1e-12)


def test_standard_recipe_is_plain_cross_entropy():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    obj = TeacherObjective(net, standard_recipe(), 5, 3, 4)
    logits = net(torch.randn(2, 1, 2, 2))
    losses = obj(ModelOutput(logits, [], []), None, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert set(losses) == {"ce"}
    assert torch.equal(losses["ce"], torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
