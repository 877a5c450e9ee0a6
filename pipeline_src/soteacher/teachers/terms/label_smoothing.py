"""Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016): cross-entropy against the
label mixed with the uniform distribution,

    loss = −Σ_c q_c · log softmax(z)_c,  q = (1 − ε) · onehot(y) + ε / C,

averaged over the batch. PyTorch's own ``F.cross_entropy(..., label_smoothing=ε)`` computes exactly this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from soteacher.models.base import ModelOutput
from soteacher.teachers.terms.base import TeacherTerm


def label_smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=epsilon)


class LabelSmoothing(TeacherTerm):
    name = "label_smoothing"

    def forward(self, out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return label_smoothing_loss(out.logits, labels, self.params["epsilon"])
