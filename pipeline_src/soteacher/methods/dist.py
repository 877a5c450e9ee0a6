"""DIST, KD from a stronger teacher (Huang et al., NeurIPS 2022).

With y = softmax(z / τ) (B×C) and ρ the Pearson correlation of two vectors:
inter-class ``L_inter = 1 − mean_i ρ(y_s[i, :], y_t[i, :])`` (per sample, across classes),
intra-class ``L_intra = 1 − mean_c ρ(y_s[:, c], y_t[:, c])`` (per class, across the batch);
``loss = τ²·(b_inter·L_inter + b_intra·L_intra)``. Defaults: the paper's CIFAR-100 setting
τ = 4, b_inter = b_intra = 2 (ImageNet: 1, 1, τ = 1), CE 1, β = 1, α = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, inter_weight: float, intra_weight: float,
              temperature: float) -> torch.Tensor:
    y_s = F.softmax(logits_s / temperature, dim=1)
    y_t = F.softmax(logits_t / temperature, dim=1)
    inter = 1 - _pearson_rows(y_s, y_t).mean()
    intra = 1 - _pearson_rows(y_s.t(), y_t.t()).mean()
    return temperature**2 * (inter_weight * inter + intra_weight * intra)


class DIST(DistillMethod):
    name = "dist"

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        # the intra-class term relates the samples of a batch: over the global batch
        return dist_loss(self.world.gather(student.logits), self.world.gather(teacher.logits), cfg["inter_weight"],
                         cfg["intra_weight"], cfg["kd_temperature"])
