"""KD (Hinton, Vinyals & Dean 2015): match the teacher's temperature-softened class distribution.

The whole loss is the shared logit part of ``DistillMethod`` (γ·CE + α·KL·T²); it adds no term. With
``logit_standardization`` (Sun et al., CVPR 2024; see ``logit_std``) both networks' logits are Z-scored
before the temperature softmax of the KL term (the CE term keeps the raw logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.student_side.methods.base import DistillMethod, kd_loss
from soteacher.student_side.methods.logit_std import standardize
from soteacher.teacher_side.models.base import ModelOutput


class KD(DistillMethod):
    name = "kd"

    def forward(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if not cfg.get("logit_standardization", False):
            return super().forward(student, teacher, labels, indices)
        losses: dict[str, torch.Tensor] = {}
        if cfg["ce_weight"]:
            losses["ce"] = cfg["ce_weight"] * F.cross_entropy(student.logits, labels)
        if cfg["kd_weight"]:
            losses["kd"] = cfg["kd_weight"] * kd_loss(standardize(student.logits), standardize(teacher.logits),
                                                      cfg["kd_temperature"])
        return losses
