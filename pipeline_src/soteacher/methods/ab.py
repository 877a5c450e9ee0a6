"""AB, activation boundaries (Heo et al., AAAI 2019), as in RepDistiller.

On each paired stage's *pre-activation* maps, a connector gives r(s): the identity where the student's and
the teacher's maps have the same shape, else ``features.HintRegressor`` without ReLU (1×1 conv + BN for
equal sizes); with margin μ the alternative L2 loss is
``Σ ((r(s) + μ)² · [r(s) > −μ ∧ t ≤ 0] + (r(s) − μ)² · [r(s) ≤ μ ∧ t > 0])``, stage i of n weighted by
``2^(i−n+1)``, the total divided by B and scaled by 3/1000 (RepDistiller's normalisation).
As in the paper and RepDistiller, AB is a pre-training: ``init_epochs`` = 30 epochs minimise this loss
(connectors + student feature layers), then the student trains with CE only — so β defaults to 0 (a
positive β also adds the AB loss to the main phase). Defaults: μ = 1, 30 init epochs, γ = 1, α = 0, β = 0.
"""

from __future__ import annotations

import torch
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.features import HintRegressor, check_stage_pairs, stage_pairs
from soteacher.methods.staged import StagedMethod
from soteacher.models.base import ModelOutput


def ab_stage_loss(source: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    pos = (target > 0).float()
    neg = 1 - pos
    loss = ((source + margin).pow(2) * ((source > -margin).float() * neg)
            + (source - margin).pow(2) * ((source <= margin).float() * pos))
    return loss.sum()


def ab_loss(sources: list[torch.Tensor], targets: list[torch.Tensor], margin: float) -> torch.Tensor:
    n, batch = len(sources), sources[0].shape[0]
    total = sum(2.0 ** (i - n + 1) * ab_stage_loss(s, t, margin) for i, (s, t) in enumerate(zip(sources, targets)))
    return total / batch / 1000 * 3


def ab_connector(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """RepDistiller's AB connector: none where the shapes match (the student's own map is shaped directly)."""
    if student_shape == teacher_shape:
        return nn.Identity()
    return HintRegressor(student_shape, teacher_shape, relu=False)


class AB(StagedMethod):
    name = "ab"

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        pairs = check_stage_pairs("ab", student, teacher, preact=True)
        self.connectors = nn.ModuleList(ab_connector(tuple(s.shape[1:]), tuple(t.shape[1:])) for s, t in pairs)

    def init_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                  indices: torch.Tensor) -> torch.Tensor:
        pairs = stage_pairs(student, teacher, preact=True)
        sources = [conn(s) for conn, (s, _) in zip(self.connectors, pairs)]
        return ab_loss(sources, [t for _, t in pairs], self.cfg["margin"])

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor | None:
        return self.init_loss(student, teacher, labels, indices) if self.cfg["weight"] else None
