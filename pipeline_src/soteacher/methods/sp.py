"""SP, similarity-preserving KD (Tung & Mori, ICCV 2019), as in RepDistiller / mdistiller.

On the last stage map: ``G = normalize_rows(F Fᵀ)`` with F the B×(CHW) flattened features;
``loss = ‖G_s − G_t‖_F² / B²``. Defaults (mdistiller / RepDistiller): β = 3000, γ = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


def similarity_matrix(f: torch.Tensor) -> torch.Tensor:
    f = f.flatten(1)
    return F.normalize(f @ f.t(), dim=1)


def sp_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    b = f_s.shape[0]
    return (similarity_matrix(f_s) - similarity_matrix(f_t)).pow(2).sum() / (b * b)


class SP(DistillMethod):
    name = "sp"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        if len(student.feats) < 2 or len(teacher.feats) < 2:
            raise ValueError("sp needs the last stage feature map (feats[-2]) of both networks")

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        # over the global batch
        return sp_loss(self.world.gather(student.feats[-2]), self.world.gather(teacher.feats[-2]))
