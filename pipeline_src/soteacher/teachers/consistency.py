"""Consistency regularisation towards a temporal ensemble (per-sample moving average of predictions).

For a batch with sample indices ``i`` and logits ``z`` (temperature 1):

* loss = C · mean_{batch, classes} (softmax(z) − q_i)² — the squared error summed over the C classes
  and averaged over the batch;
* then q_i ← (1 − τ) q_i + τ · softmax(z).detach(), with τ = 1 / (1 + k); k = 0 during the first epoch
  (which only fills the buffer) and k = e + 1 once epoch e (1-based) has finished.

The weight λ_CR(e) used during epoch e + 1 is set when epoch e finishes; during epoch 1 it is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World

SCHEDULES = ("linear", "step", "cycle", "cosine")


def consistency_weight(schedule: str, lambda_cr: float, finished_epoch: int, total_epochs: int,
                       start_epoch: int = 1) -> float:
    """λ_CR to use in the epoch after ``finished_epoch`` (1-based) of ``total_epochs``.

    ``finished_epoch = 0`` (nothing finished yet) gives 0 for every schedule: the first epoch only fills
    the temporal-ensemble buffer.
    """
    if finished_epoch <= 0:
        return 0.0
    e, n = finished_epoch, total_epochs
    x = 1.0 - (e + 1) / n
    if schedule == "linear":
        return lambda_cr * (e + 1) / n
    if schedule == "step":  # on once epoch start_epoch has finished, as the reference's `start_at`
        return lambda_cr if e >= start_epoch else 0.0
    if schedule == "cycle":
        return lambda_cr * math.sqrt(max(0.0, 1.0 - x * x))
    if schedule == "cosine":
        return lambda_cr * math.cos(x * math.pi / 2)
    raise ValueError(f"unknown consistency schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def consistency_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """C · mean over batch and classes of (softmax(logits) − targets)²."""
    probs = F.softmax(logits, dim=1)
    return ((probs - targets) ** 2).sum(dim=1).mean()


class TemporalEnsemble(nn.Module):
    """The q ∈ R^{N×C} buffer and its update rule. A module so it moves with ``.to(device)`` and is
    saved in ``state_dict`` (it is part of the resumable training state). With several ranks every rank updates it
    with the predictions of the whole global batch, so it stays the one process's buffer on each."""

    def __init__(self, num_samples: int, num_classes: int, world: World = SINGLE):
        super().__init__()
        self.world = world
        self.register_buffer("targets", torch.zeros(num_samples, num_classes))
        self.register_buffer("momentum_k", torch.zeros((), dtype=torch.long))

    @property
    def tau(self) -> float:
        return 1.0 / (1.0 + float(self.momentum_k))

    def loss_and_update(self, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        loss = consistency_loss(logits, self.targets[indices])
        with torch.no_grad():
            # τ in the buffer's float32, not the logits' dtype: under bf16 autocast (1 − τ) + τ ≠ 1 and the
            # rows of q would drift off the simplex over the epochs
            tau = 1.0 / (1.0 + self.momentum_k.to(self.targets.dtype))
            probs = self.world.gather(F.softmax(logits.detach().float(), dim=1))
            indices = self.world.gather(indices)
            self.targets[indices] = (1.0 - tau) * self.targets[indices] + tau * probs
        return loss

    def end_epoch(self, finished_epoch: int) -> None:
        self.momentum_k.fill_(finished_epoch + 1)
