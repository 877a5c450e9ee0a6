"""The Lipschitz penalty against values computed by hand on a tiny network."""

from __future__ import annotations

import math

import torch
from torch import nn

from soteacher.teachers.lipschitz import LipschitzPenalty


def tiny_net() -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]], [[[-1.0, 1.0], [1.0, -3.0]]]]))
        net[1].weight.copy_(torch.tensor([2.0, -0.5]))
        net[1].running_var.copy_(torch.tensor([3.0, 0.25]))
        net[3].weight.copy_(torch.tensor([[1.0, -4.0, 2.0], [-2.0, 1.0, 0.5]]))
    return net


def test_reference_form_matches_hand_computation():
    net = tiny_net()
    eps = net[1].eps
    conv = (1 + 2 + 0.5 + 0) + (1 + 1 + 1 + 3)  # Σ|w| over the whole kernel
    bn = max(2.0 / math.sqrt(3.0 + eps), 0.5 / math.sqrt(0.25 + eps))  # max_c |γ_c| / sqrt(var_c + eps)
    linear = max(1 + 2, 4 + 1, 2 + 0.5)  # max over input columns of Σ_rows |W_rc|
    value = LipschitzPenalty(net)()
    assert math.isclose(value.item(), conv + bn + linear, rel_tol=1e-6)


def test_per_layer_max_is_taken_per_batchnorm_not_globally():
    net = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 5.0]))
        net[1].weight.copy_(torch.tensor([-2.0, 0.1, 0.3]))
    eps = 1e-5
    expected = 5.0 / math.sqrt(1 + eps) + 2.0 / math.sqrt(1 + eps)
    assert math.isclose(LipschitzPenalty(net)().item(), expected, rel_tol=1e-6)


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
    for _ in range(200):  # persistent power iteration: one step per call
        value = penalty()
    expected = torch.linalg.svdvals(net[0].weight.detach())[0]
    assert math.isclose(value.item(), expected.item(), rel_tol=1e-4)


def test_penalty_tracks_weight_updates_without_rebuilding():
    net = tiny_net()
    penalty = LipschitzPenalty(net)
    before = penalty().item()
    with torch.no_grad():
        net[0].weight.mul_(2)
    assert math.isclose(penalty().item() - before, 9.5, rel_tol=1e-6)  # the conv L1 norm doubled (9.5 -> 19)


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
