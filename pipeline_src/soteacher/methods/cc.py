"""CC, correlation congruence (Peng et al., ICCV 2019), in the form of the RepDistiller CIFAR benchmark.

Both pooled embeddings go through a learnable linear head to ``feat_dim`` (student and teacher head are
method parameters); with ``δ = |e_s − e_t|`` (B×D), ``loss = mean_i Σ_d δ_i,d · δ_{i+1},d`` over consecutive
samples of the batch (RepDistiller's ``Correlation``, a restructuring of the authors' code, not the
paper's Gaussian-kernel correlation matrix). Defaults (RepDistiller): β = 0.02, feat_dim 128, γ = 1, α = 0.
"""

from __future__ import annotations

import torch

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.base import DistillMethod
from soteacher.methods.features import LinearEmbed
from soteacher.models.base import ModelOutput


def cc_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    delta = (e_s - e_t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


class CC(DistillMethod):
    name = "cc"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        s, t = student.feats[-1], teacher.feats[-1]
        self.embed_s = LinearEmbed(s.flatten(1).shape[1], cfg["feat_dim"])
        self.embed_t = LinearEmbed(t.flatten(1).shape[1], cfg["feat_dim"])

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        # consecutive samples of the global batch
        e_s, e_t = self.embed_s(student.feats[-1]), self.embed_t(teacher.feats[-1])
        return cc_loss(self.world.gather(e_s), self.world.gather(e_t))
