"""The teacher's loss: CE + λ_LR · LipschitzPenalty + λ_CR(e) · Consistency (standard: both λ = 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.models.base import ModelOutput
from soteacher.teachers.consistency import TemporalEnsemble, consistency_weight
from soteacher.teachers.lipschitz import LipschitzPenalty


class TeacherObjective(nn.Module):
    needs_features = False

    def __init__(self, net: nn.Module, recipe: dict, num_samples: int, num_classes: int, total_epochs: int,
                 world: World = SINGLE):
        super().__init__()
        self.recipe = recipe
        self.total_epochs = total_epochs
        self.lipschitz = (
            LipschitzPenalty(net, recipe["lipschitz_bound"]) if recipe["lambda_lr"] > 0 else None
        )
        self.ensemble = TemporalEnsemble(num_samples, num_classes, world) if recipe["lambda_cr"] > 0 else None
        # kept as a buffer so it is saved with the training state and never forces a host sync
        self.register_buffer("cr_weight", torch.zeros(()))

    def forward(self, out: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = {"ce": F.cross_entropy(out.logits, labels)}
        if self.lipschitz is not None:
            losses["lipschitz"] = self.recipe["lambda_lr"] * self.lipschitz()
        if self.ensemble is not None:
            losses["consistency"] = self.cr_weight * self.ensemble.loss_and_update(out.logits, indices)
        return losses

    def end_epoch(self, finished_epoch: int) -> None:
        if self.ensemble is None:
            return
        self.ensemble.end_epoch(finished_epoch)
        r = self.recipe
        self.cr_weight.fill_(
            consistency_weight(r["cr_schedule"], r["lambda_cr"], finished_epoch, self.total_epochs, r["cr_start_epoch"])
        )
