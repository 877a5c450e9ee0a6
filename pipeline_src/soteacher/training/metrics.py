"""Evaluation measures on logits: accuracy, distance to the true label distribution p*(x), and student fidelity.

Pure functions of tensors (no model, no data set), so each is tested against a hand computation. Means are over
samples; KL and TV use natural logarithms and the softmax at temperature 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return (logits.argmax(1) == labels).float().mean().item() * 100


def tv_to(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean total variation ½ Σ_y |softmax(z)_y − p(y)| between the predictions and target distributions."""
    return 0.5 * (logits.softmax(1) - target).abs().sum(1).mean().item()


def kl_from(target: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean KL(target ‖ softmax(z)) = Σ_y p(y) (log p(y) − log softmax(z)_y), with 0·log 0 = 0."""
    log_q = F.log_softmax(logits.float(), 1)
    terms = target * (target.clamp_min(1e-30).log() - log_q)
    return torch.where(target > 0, terms, torch.zeros_like(terms)).sum(1).mean().item()


def agreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Top-1 agreement in percent: how often two networks predict the same class (the paper's student fidelity)."""
    return (logits_a.argmax(1) == logits_b.argmax(1)).float().mean().item() * 100


def kl_between(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Mean KL(teacher ‖ student) of the two softmaxes (temperature 1): the paper's other fidelity measure."""
    return kl_from(teacher_logits.float().softmax(1), student_logits)
