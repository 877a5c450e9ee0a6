"""AB, activation boundaries (Heo et al., AAAI 2019), as in RepDistiller.

On each paired stage's *pre-activation* maps, a connector (1×1 conv + BN; the student map is resized to the
teacher's first) gives r(s); with margin μ the alternative L2 loss is
``Σ ((r(s) + μ)² · [r(s) > −μ ∧ t ≤ 0] + (r(s) − μ)² · [r(s) ≤ μ ∧ t > 0])``, stage i of n weighted by
``2^(i−n+1)``, the total divided by B and scaled by 3/1000 (RepDistiller's normalisation).
As in the paper and RepDistiller, AB is a pre-training: ``init_epochs`` = 30 epochs minimise this loss
(connectors + student feature layers), then the student trains with CE only — so β defaults to 0 (a
positive β also adds the AB loss to the main phase). Defaults: μ = 1, 30 init epochs, γ = 1, α = 0, β = 0.
"""

from __future__ import annotations

import torch
from torch import nn

from soteacher.distill.features import check_stage_pairs, stage_pairs
from soteacher.distill.fitnet import match_spatial
from soteacher.distill.staged import StagedMethod
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


class ABConnector(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, out_size: tuple[int, int]):
        super().__init__()
        self.out_size = out_size
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(match_spatial(x, self.out_size)))


class AB(StagedMethod):
    name = "ab"

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int):
        super().__init__(cfg, student, teacher, num_samples)
        pairs = check_stage_pairs("ab", student, teacher, preact=True)
        self.connectors = nn.ModuleList(ABConnector(s.shape[1], t.shape[1], tuple(t.shape[-2:])) for s, t in pairs)

    def init_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                  indices: torch.Tensor) -> torch.Tensor:
        pairs = stage_pairs(student, teacher, preact=True)
        sources = [conn(s) for conn, (s, _) in zip(self.connectors, pairs)]
        return ab_loss(sources, [t for _, t in pairs], self.cfg["margin"])

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor | None:
        return self.init_loss(student, teacher, labels, indices) if self.cfg["weight"] else None
