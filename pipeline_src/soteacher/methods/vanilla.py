"""Vanilla student (the baseline: a student trained on labels alone): cross-entropy on the true labels, no teacher term.

Registered as a method so that every table has its baseline row, trained on the same batches and from the same
initialisation as the distilled students of its seed. It needs no teacher, so it runs once per student × seed
(rule train_vanilla, ``VANILLA``), not in each distill job. Its loss is ``γ·CE(student, y)``; it never reads the
teacher's output (``teacher`` may be None), and its schema has no KD or method weight to switch a teacher term on
by mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


class Vanilla(DistillMethod):
    name = "vanilla"
    needs_features = False
    needs_teacher = False

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": self.cfg["ce_weight"] * F.cross_entropy(student.logits, labels)}
