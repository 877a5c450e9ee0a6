"""KD (Hinton, Vinyals & Dean 2015): match the teacher's temperature-softened class distribution.

The whole loss is the shared logit part of ``DistillMethod`` (γ·CE + α·KL·T²); it adds no term. With
``logit_standardization`` (Sun et al., CVPR 2024; see ``logit_std``) both networks' logits are Z-scored
before the temperature softmax of the KL term (the CE term keeps the raw logits).
"""

from __future__ import annotations

import torch

from soteacher.methods.base import DistillMethod
from soteacher.methods.logit_std import standardize


class KD(DistillMethod):
    name = "kd"

    def kd_logits(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.get("logit_standardization", False):
            return standardize(student), standardize(teacher)
        return student, teacher
