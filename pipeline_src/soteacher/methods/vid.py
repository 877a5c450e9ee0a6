"""VID, variational information distillation (Ahn et al., CVPR 2019), as in RepDistiller / mdistiller.

For each paired stage (larger map pooled to the smaller), a 1×1-conv regressor r (student channels →
teacher channels → teacher channels → teacher channels, ReLU between) predicts the mean of a Gaussian over
the teacher map with a learned per-channel variance ``σ²_c = softplus(w_c) + ε``:
``loss = Σ_stages mean(½ ((r(f_s) − f_t)² / σ² + log σ²))``. Defaults (mdistiller / RepDistiller):
β = 1, initial variance 5.0, ε = 1e-5, γ = 1, α = 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import check_stage_pairs, pool_to_common, stage_pairs
from soteacher.models.base import ModelOutput


def vid_loss(mean: torch.Tensor, target: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood up to a constant; ``variance`` has one entry per channel."""
    variance = variance.view(1, -1, 1, 1)
    return (0.5 * ((mean - target).pow(2) / variance + variance.log())).mean()


class VIDRegressor(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, init_var: float, eps: float):
        super().__init__()
        self.eps = eps
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False),
        )
        # softplus(w) + eps = init_var at the start
        self.log_scale = nn.Parameter(torch.full((out_channels,), math.log(math.expm1(init_var - eps))))

    def variance(self) -> torch.Tensor:
        return F.softplus(self.log_scale) + self.eps

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        f_s, f_t = pool_to_common(f_s, f_t)
        return vid_loss(self.net(f_s), f_t, self.variance())


class VID(DistillMethod):
    name = "vid"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        pairs = check_stage_pairs("vid", student, teacher)
        self.regressors = nn.ModuleList(
            VIDRegressor(s.shape[1], t.shape[1], t.shape[1], cfg["init_pred_var"], cfg["eps"]) for s, t in pairs)

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        return sum(reg(s, t) for reg, (s, t) in zip(self.regressors, stage_pairs(student, teacher)))
