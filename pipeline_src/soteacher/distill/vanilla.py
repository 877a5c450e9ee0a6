"""Vanilla student (the "student trained alone" baseline): cross-entropy on the true labels, no teacher term.

Registered as a method so that the baseline row trains in the same jobs, on the same batches and from the same
initialisation as the distilled students. Its loss is ``γ·CE(student, y)``; it never reads the teacher's output
(``teacher`` may be None), and its schema has no KD or method weight to switch a teacher term on by mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.distill.base import DistillMethod
from soteacher.models.base import ModelOutput


class Vanilla(DistillMethod):
    name = "vanilla"
    needs_features = False

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": self.cfg["ce_weight"] * F.cross_entropy(student.logits, labels)}
