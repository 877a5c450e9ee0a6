"""FSP, flow of solution procedure (Yim et al., CVPR 2017), as in RepDistiller.

For consecutive maps (stem, stage 1, …, stage K) of one network, the FSP matrix of layers (a, b) is
``G_{ij} = mean_{hw} b_i(h, w) · a_j(h, w)`` (the larger map pooled to the smaller; C_b×C_a per sample);
``loss = Σ_pairs mean((G_s − G_t)²)``. It needs the student and the teacher to have as many layers and the
same channel count at each (otherwise ValueError). As in the paper and RepDistiller it is a pre-training:
``init_epochs`` = 30 epochs minimise the FSP loss (student feature layers), then the student trains with
CE only, so β defaults to 0 (RepDistiller's script passes β = 50 but adds no FSP term to the main phase).
Defaults: 30 init epochs, γ = 1, α = 0, β = 0.
"""

from __future__ import annotations

import torch

from soteacher.core.ranks import SINGLE, World
from soteacher.methods.features import pool_to_common
from soteacher.methods.staged import StagedMethod
from soteacher.models.base import ModelOutput


def fsp_matrix(bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    bottom, top = pool_to_common(bottom, top)
    return torch.bmm(top.flatten(2), bottom.flatten(2).transpose(1, 2)) / bottom[0, 0].numel()


def fsp_matrices(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [fsp_matrix(a, b) for a, b in zip(feats[:-1], feats[1:])]


def fsp_loss(feats_s: list[torch.Tensor], feats_t: list[torch.Tensor]) -> torch.Tensor:
    return sum((g_s - g_t).pow(2).mean() for g_s, g_t in zip(fsp_matrices(feats_s), fsp_matrices(feats_t)))


class FSP(StagedMethod):
    name = "fsp"

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        s_ch = [f.shape[1] for f in student.feats[:-1]]
        t_ch = [f.shape[1] for f in teacher.feats[:-1]]
        if s_ch != t_ch or len(s_ch) < 2:
            raise ValueError(f"fsp needs equal channel counts at every layer (stem and stages): "
                             f"student {s_ch}, teacher {t_ch}")

    def init_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                  indices: torch.Tensor) -> torch.Tensor:
        return fsp_loss(student.feats[:-1], teacher.feats[:-1])

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor | None:
        return self.init_loss(student, teacher, labels, indices) if self.cfg["weight"] else None
