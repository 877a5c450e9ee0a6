"""The teacher terms (teachers/terms/) and the objective that sums them: each loss against a hand computation on a
tiny tensor, the registry against the schema.

Tolerances: a float32 result of a handful (≲ 10) of rounded operations on values of size ~1 is within ~10 · 2^-24
≈ 6e-7 of the exact value relative, hence ``REL = 1e-6`` wherever the hand value is computed in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from soteacher.core.ranks import SINGLE
from soteacher.models.base import ModelOutput
from soteacher.study.config import load_schema, validate
from soteacher.teachers.objective import TeacherObjective
from soteacher.teachers.terms import TERMS, TeacherSetup
from soteacher.teachers.terms.consistency import consistency_loss, consistency_weight
from soteacher.teachers.terms.label_smoothing import label_smoothing_loss
from soteacher.teachers.terms.lipschitz import LipschitzPenalty
from tests.helpers import soteacher_recipe, standard_recipe

REL = 1e-6
LOGITS = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
LABELS = [0, 2]


def softmax_row(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def term(name: str, net: nn.Module | None = None, num_samples: int = 4, num_classes: int = 3, epochs: int = 4,
         **params):
    """Term ``name`` with the schema's defaults, ``params`` on top."""
    filled = validate({"teacher": {"recipes": {"r": {name: params}}}}, deep=False)["teacher"]["recipes"]["r"][name]
    setup = TeacherSetup(net if net is not None else nn.Linear(1, 1), num_samples, num_classes, epochs, SINGLE)
    return TERMS[name](filled, setup)


def out(logits) -> ModelOutput:
    return ModelOutput(torch.as_tensor(logits), [], [])


# ---------------------------------------------------------------- registry and schema

def test_registry_matches_schema_and_defaults_fill():
    schema = load_schema()["properties"]["teacher"]["properties"]["recipes"]["additionalProperties"]["properties"]
    assert set(TERMS) == set(schema)
    for name, cls in TERMS.items():
        assert cls.name == name
        assert schema[name].get("description"), name
        props = schema[name]["properties"]
        filled = validate({"teacher": {"recipes": {"r": {name: {}}}}}, deep=False)["teacher"]["recipes"]["r"][name]
        assert set(filled) == set(props), name  # every parameter has a default
        assert all(p.get("description") for p in props.values()), name
        # what the ablation reads from the class names real parameters
        assert cls.weight_param is None or cls.weight_param in props, name
        assert set(cls.joint_params) | set(cls.joint_params.values()) <= set(props), name


# ---------------------------------------------------------------- ce and label smoothing

def test_cross_entropy_by_hand():
    expected = -sum(math.log(softmax_row(row)[y]) for row, y in zip(LOGITS, LABELS)) / 2
    got = term("ce")(out(LOGITS), torch.tensor(LABELS), torch.arange(2))
    assert math.isclose(got.item(), expected, rel_tol=REL)


def test_label_smoothing_by_hand():
    eps, classes = 0.2, 3
    expected = 0.0
    for row, y in zip(LOGITS, LABELS):
        target = [(1 - eps) * (c == y) + eps / classes for c in range(classes)]
        expected -= sum(q * math.log(p) for q, p in zip(target, softmax_row(row)))
    expected /= 2
    got = term("label_smoothing", epsilon=eps)(out(LOGITS), torch.tensor(LABELS), torch.arange(2))
    assert math.isclose(got.item(), expected, rel_tol=REL)
    assert label_smoothing_loss(torch.tensor(LOGITS), torch.tensor(LABELS), eps).item() == got.item()


# ---------------------------------------------------------------- Lipschitz

def tiny_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]], [[[-1.0, 1.0], [1.0, -3.0]]]]))
        net[1].weight.copy_(torch.tensor([2.0, -0.5]))
        net[1].running_var.copy_(torch.tensor([3.0, 0.25]))
        net[3].weight.copy_(torch.tensor([[1.0, -4.0, 2.0], [-2.0, 1.0, 0.5]]))
    return net


def lipschitz_by_hand(net: nn.Sequential) -> float:
    eps = net[1].eps
    conv = (1 + 2 + 0.5 + 0) + (1 + 1 + 1 + 3)  # Σ|w| over the whole kernel
    bn = max(2.0 / math.sqrt(3.0 + eps), 0.5 / math.sqrt(0.25 + eps))  # max_c |γ_c| / sqrt(var_c + eps)
    linear = max(1 + 2, 4 + 1, 2 + 0.5)  # max over input columns of Σ_rows |W_rc|
    return conv + bn + linear


def test_lipschitz_reference_form_matches_hand_computation():
    net = tiny_net()
    assert math.isclose(LipschitzPenalty(net)().item(), lipschitz_by_hand(net), rel_tol=REL)


def test_lipschitz_term_is_the_penalty_times_its_weight():
    net = tiny_net()
    got = term("lipschitz", net, weight=0.1)(out(LOGITS), torch.tensor(LABELS), torch.arange(2))
    assert math.isclose(got.item(), 0.1 * lipschitz_by_hand(net), rel_tol=REL)


def test_per_layer_max_is_taken_per_batchnorm_not_globally():
    net = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 5.0]))
        net[1].weight.copy_(torch.tensor([-2.0, 0.1, 0.3]))
    eps = 1e-5
    expected = 5.0 / math.sqrt(1 + eps) + 2.0 / math.sqrt(1 + eps)
    assert math.isclose(LipschitzPenalty(net)().item(), expected, rel_tol=REL)


def test_gradient_flows_to_weights_and_gammas_only_through_the_penalty():
    net = tiny_net()
    LipschitzPenalty(net)().backward()
    assert torch.equal(net[0].weight.grad, torch.sign(net[0].weight))
    # only the BN channel attaining the max gets gradient: d/dγ0 of γ0/sqrt(3+eps)
    assert net[1].weight.grad[1] == 0 and net[1].weight.grad[0] > 0
    # only the linear column with the largest abs-sum (column 1) gets gradient
    assert torch.equal(net[3].weight.grad[:, 1], torch.sign(net[3].weight[:, 1]))
    assert net[3].weight.grad[:, [0, 2]].abs().sum() == 0


def test_spectral_bound_converges_to_largest_singular_value():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4, bias=False))
    penalty = LipschitzPenalty(net, bound="spectral")
    steps = 200
    for _ in range(steps):  # persistent power iteration: one step per call
        value = penalty()
    singular = torch.linalg.svdvals(net[0].weight.detach().double())
    # the iteration's own error shrinks like (σ2/σ1)^(2·steps): negligible here, so float32 rounding sets REL
    assert (singular[1] / singular[0]) ** (2 * steps) < 1e-12
    assert math.isclose(value.item(), singular[0].item(), rel_tol=REL)


def test_penalty_tracks_weight_updates_without_rebuilding():
    net = tiny_net()
    penalty = LipschitzPenalty(net)
    before = penalty().item()
    with torch.no_grad():
        net[0].weight.mul_(2)
    # each value (~25) rounds in its final float32 sum of three terms, ≤ 2 · 2^-24 · 32 ≈ 4e-6 absolute: the
    # difference is within ~8e-6 of 9.5, under 1e-6 relative
    assert math.isclose(penalty().item() - before, 9.5, rel_tol=REL)  # the conv L1 norm doubled (9.5 -> 19)


def test_spectral_iteration_state_is_saved_so_a_resume_continues_exactly():
    """The power-iteration vectors are part of the objective's state_dict (the resumable training state)."""
    torch.manual_seed(0)
    net = tiny_net()
    penalty = LipschitzPenalty(net, bound="spectral")
    for _ in range(3):
        penalty()
    resumed = LipschitzPenalty(net, bound="spectral")  # a fresh process: iteration restarts from seed 0
    resumed.load_state_dict(penalty.state_dict())
    assert resumed().item() == penalty().item()


# ---------------------------------------------------------------- consistency

def test_consistency_loss_is_squared_error_summed_over_classes_and_averaged_over_batch():
    targets = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    expected = 0.0
    for row, target in zip(LOGITS, targets):
        expected += sum((p - t) ** 2 for p, t in zip(softmax_row(row), target))
    expected /= 2
    assert math.isclose(consistency_loss(torch.tensor(LOGITS), torch.tensor(targets)).item(), expected, rel_tol=REL)


def test_consistency_term_compares_with_the_average_before_the_batch_updates_it():
    cr = term("consistency", num_samples=3, num_classes=2, epochs=4, weight=2.0, schedule="linear")
    p1, p2 = softmax_row([2.0, 0.0]), softmax_row([0.0, 1.0])
    # epoch 1: weight 0, the table fills with p1
    assert cr(out([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([1])).item() == 0.0
    cr.end_epoch(1)  # λ_CR = 2 · (1 + 1) / 4 = 1, τ = 1/3
    assert cr.current_weight.item() == 1.0
    got = cr(out([[0.0, 1.0]]), torch.tensor([0]), torch.tensor([1]))
    expected = 1.0 * sum((a - b) ** 2 for a, b in zip(p2, p1))  # against p1, not the updated row
    assert math.isclose(got.item(), expected, rel_tol=REL)
    # probabilities ≤ 1 after ~4 float32 roundings each: 1e-6 absolute is ample
    expected_row = [(2 / 3) * a + (1 / 3) * b for a, b in zip(p1, p2)]
    torch.testing.assert_close(cr.average.table[1], torch.tensor(expected_row), rtol=0, atol=1e-6)


def test_consistency_gradient_does_not_reach_the_table():
    cr = term("consistency", num_samples=2, num_classes=2)
    logits = torch.zeros(1, 2, requires_grad=True)
    cr(out(logits), torch.tensor([0]), torch.tensor([0]))
    assert not cr.average.table.requires_grad


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
    # Python floats (double) on both sides: only the order of a few operations differs
    got = [consistency_weight(schedule, 2.0, e, 4, start_epoch=3) for e in range(4)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="unknown consistency schedule"):
        consistency_weight("exp", 1.0, 1, 4)


# ---------------------------------------------------------------- the objective

def test_teacher_objective_sums_the_recipe_terms_with_schedule():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    # the hand values below need these: a large λ_LR, λ_CR 2, the l1 bound, the linear ramp
    recipe = soteacher_recipe(lipschitz={"weight": 0.1, "bound": "l1"},
                              consistency={"weight": 2.0, "schedule": "linear"})
    obj = TeacherObjective(net, recipe, num_samples=5, num_classes=3, total_epochs=4)
    logits = net(torch.randn(2, 1, 2, 2))
    labels, idx = torch.tensor([0, 2]), torch.tensor([1, 3])
    losses = obj(ModelOutput(logits, [], []), None, labels, idx)
    assert list(losses) == ["ce", "lipschitz", "consistency"]
    assert losses["consistency"].item() == 0.0  # weight 0 during the first epoch
    w = net[1].weight.detach()
    assert math.isclose(losses["lipschitz"].item(), 0.1 * w.abs().sum(0).max().item(), rel_tol=REL)
    obj.end_epoch(1)  # forwarded to each term
    assert obj.terms["consistency"].current_weight.item() == 2.0 * 2 / 4
    losses = obj(ModelOutput(logits.detach(), [], []), None, labels, idx)
    # the table now holds the epoch-1 predictions for idx; the same logits -> zero squared error
    assert losses["consistency"].item() == pytest.approx(0.0, abs=1e-12)


def test_terms_are_summed_in_registry_order_whatever_the_recipe_order():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    recipe = soteacher_recipe()
    in_registry_order = [name for name in TERMS if name in recipe]
    reversed_recipe = dict(reversed(list(recipe.items())))
    assert list(reversed_recipe) != in_registry_order
    obj = TeacherObjective(net, reversed_recipe, 5, 3, 4)
    losses = obj(ModelOutput(net(torch.randn(2, 1, 2, 2)), [], []), None, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert list(losses) == in_registry_order


def test_standard_recipe_is_plain_cross_entropy():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    obj = TeacherObjective(net, standard_recipe(), 5, 3, 4)
    logits = net(torch.randn(2, 1, 2, 2))
    losses = obj(ModelOutput(logits, [], []), None, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert set(losses) == {"ce"}
    assert torch.equal(losses["ce"], torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))


def test_unknown_term_is_refused():
    with pytest.raises(ValueError, match="unknown teacher terms"):
        TeacherObjective(nn.Linear(2, 2), {"ce": {}, "mixup": {}}, 5, 2, 4)
