"""Consistency regularisation towards a temporal ensemble (SoTeacher's official code): λ_CR(e) times the squared
error between the prediction and the sample's running mean of its past predictions.

For a batch with sample indices ``i`` and logits ``z`` (temperature 1):

* loss = C · mean_{batch, classes} (softmax(z) − q_i)² — the squared error summed over the C classes and averaged
  over the batch — against q_i as it was before this batch;
* then q_i ← (1 − τ) q_i + τ · softmax(z).detach(), with τ = 1 / (1 + k); k = 0 during the first epoch (which only
  fills the table) and k = e + 1 once epoch e (1-based) has finished (``training.averages.EpochMeanAverage``).

The weight λ_CR(e) used during epoch e + 1 is set when epoch e finishes; during epoch 1 it is 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from soteacher.models.base import ModelOutput
from soteacher.teachers.terms.base import TeacherSetup, TeacherTerm
from soteacher.training.averages import EpochMeanAverage

SCHEDULES = ("linear", "step", "cycle", "cosine")


def consistency_weight(schedule: str, weight: float, finished_epoch: int, total_epochs: int,
                       start_epoch: int = 1) -> float:
    """λ_CR (final value ``weight``) to use in the epoch after ``finished_epoch`` (1-based) of ``total_epochs``.

    ``finished_epoch = 0`` (nothing finished yet) gives 0 for every schedule: the first epoch only fills the table.
    """
    if finished_epoch <= 0:
        return 0.0
    e, n = finished_epoch, total_epochs
    x = 1.0 - (e + 1) / n
    if schedule == "linear":
        return weight * (e + 1) / n
    if schedule == "step":  # on once epoch start_epoch has finished, as the reference's `start_at`
        return weight if e >= start_epoch else 0.0
    if schedule == "cycle":
        return weight * math.sqrt(max(0.0, 1.0 - x * x))
    if schedule == "cosine":
        return weight * math.cos(x * math.pi / 2)
    raise ValueError(f"unknown consistency schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def consistency_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """C · mean over batch and classes of (softmax(logits) − targets)²."""
    probs = F.softmax(logits, dim=1)
    return ((probs - targets) ** 2).sum(dim=1).mean()


class Consistency(TeacherTerm):
    name = "consistency"
    weight_param = "weight"
    joint_params = {"start_epoch": "schedule"}  # read by the step schedule only

    def __init__(self, params: dict, setup: TeacherSetup):
        super().__init__(params, setup)
        self.total_epochs = setup.total_epochs
        self.average = EpochMeanAverage(setup.num_samples, setup.num_classes, setup.world)
        # λ_CR(e) as a buffer: saved with the training state, and multiplying by it never forces a host sync
        self.register_buffer("current_weight", torch.zeros(()))

    def forward(self, out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        loss = consistency_loss(out.logits, self.average.table[indices])  # indexing copies: q before the update
        self.average.update(out.logits, indices)
        return self.current_weight * loss

    def end_epoch(self, finished_epoch: int) -> None:
        self.average.end_epoch(finished_epoch)
        p = self.params
        self.current_weight.fill_(
            consistency_weight(p["schedule"], p["weight"], finished_epoch, self.total_epochs, p["start_epoch"]))

    @classmethod
    def axis_value(cls, params: dict, axis: str) -> object:
        if axis == "schedule" and params["schedule"] == "step":
            return f"step@{params['start_epoch']}"
        return params[axis]
