"""Logit standardization (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation").

A Z-score pre-process of both networks' logits before the temperature softmax of a logit-based KD loss:
``z ↦ (z − mean(z)) / (std(z) + 1e-7)`` per sample (std with Bessel's correction, as in the authors' code),
so the student matches the teacher's logit *relations* rather than their magnitude. The authors' CIFAR-100
setting: base temperature T = 2 and KD weight 9 (with CE weight 0.1 for KD).
"""

from __future__ import annotations

import torch


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + eps)
