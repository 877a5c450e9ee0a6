"""RKD, relational KD (Park et al., CVPR 2019), as in RepDistiller / mdistiller.

On the pooled embeddings: distance term ``smooth_l1(ψ_D(s), ψ_D(t))`` with ψ_D the pairwise Euclidean
distances divided by their mean over distinct pairs, and angle term ``smooth_l1(ψ_A(s), ψ_A(t))`` with
``ψ_A(e)_{ijk} = ⟨(e_i − e_j)/‖·‖, (e_k − e_j)/‖·‖⟩``; ``loss = w_d·distance + w_a·angle``.
Defaults (mdistiller / RepDistiller): w_d = 25, w_a = 50, β = 1, γ = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    return d / d[d > 0].mean()


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # [j, i] = e_i - e_j
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def rkd_loss(e_s: torch.Tensor, e_t: torch.Tensor, distance_weight: float, angle_weight: float) -> torch.Tensor:
    e_s, e_t = e_s.flatten(1), e_t.flatten(1)
    loss_d = F.smooth_l1_loss(_normalised_distances(e_s), _normalised_distances(e_t))
    loss_a = F.smooth_l1_loss(_angles(e_s), _angles(e_t))
    return distance_weight * loss_d + angle_weight * loss_a


class RKD(DistillMethod):
    name = "rkd"
    needs_features = True

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        # over the global batch
        cfg = self.cfg
        return rkd_loss(self.world.gather(student.feats[-1]), self.world.gather(teacher.feats[-1]),
                        cfg["distance_weight"], cfg["angle_weight"])
