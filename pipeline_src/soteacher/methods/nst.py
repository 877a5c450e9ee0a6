"""NST, neuron selectivity transfer (Huang & Wang, 2017), as in RepDistiller / mdistiller.

For each paired stage map (larger pooled to the smaller), every channel's spatial map is flattened and
L2-normalised (f_i ∈ R^{HW}); with the polynomial kernel ``k(a, b) = (aᵀb)²`` the squared MMD is
``mean_{ij} k(t_i, t_j) + mean_{ij} k(s_i, s_j) − 2 mean_{ij} k(s_i, t_j)`` (per sample, then batch
mean); ``loss = Σ_stages MMD²``. Defaults (mdistiller / RepDistiller): β = 50, γ = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import check_stage_pairs, pool_to_common, stage_pairs
from soteacher.models.base import ModelOutput


def _poly_kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()


def nst_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    f_s, f_t = pool_to_common(f_s, f_t)
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)
    return _poly_kernel_mean(t, t).detach() + _poly_kernel_mean(s, s) - 2 * _poly_kernel_mean(s, t)


class NST(DistillMethod):
    name = "nst"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        check_stage_pairs("nst", student, teacher)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        return sum(nst_loss(s, t) for s, t in stage_pairs(student, teacher))
