"""AT, attention transfer (Zagoruyko & Komodakis, ICLR 2017), as in RepDistiller / mdistiller.

For each paired stage map f (B×C×H×W): attention ``a(f) = normalize(mean_c f^p)`` (flattened to B×HW,
L2-normalised per sample); ``loss = Σ_stages mean((a(f_s) − a(f_t))²)``, the larger map pooled to the
smaller first. Defaults (mdistiller / RepDistiller CIFAR-100): p = 2, β = 1000, γ = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import check_stage_pairs, pool_to_common, stage_pairs
from soteacher.models.base import ModelOutput


def attention_map(f: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(f.pow(p).mean(1).flatten(1), dim=1)


def at_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: float) -> torch.Tensor:
    f_s, f_t = pool_to_common(f_s, f_t)
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


class AT(DistillMethod):
    name = "at"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        check_stage_pairs("at", student, teacher)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        return sum(at_loss(s, t, self.cfg["p"]) for s, t in stage_pairs(student, teacher))
