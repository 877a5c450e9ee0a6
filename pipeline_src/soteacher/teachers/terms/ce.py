"""Cross-entropy on the labels: −log softmax(z)_y, averaged over the batch (the standard teacher's whole loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.models.base import ModelOutput
from soteacher.teachers.terms.base import TeacherTerm


class CrossEntropy(TeacherTerm):
    name = "ce"

    def forward(self, out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.logits, labels)
