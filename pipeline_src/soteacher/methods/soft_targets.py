"""Soft targets by training index: methods whose target for training sample i is a fixed distribution q_i looked up
by the batch's sample indices, not the teacher network's output (``oracle``: p*(x_i); ``filter_kd``: the teacher's
moving-average table). The loss is written once here (``soft_target_loss``); each method is a thin subclass that
says where its targets come from (``attach``).

How targets meet augmentation: q_i belongs to the un-augmented training image i, and is applied to whatever
augmented view of i the batch holds (the loop hands each objective the indices of its batch's samples).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from soteacher.core.ranks import SINGLE, World
from soteacher.data import Data
from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput

log = logging.getLogger(__name__)


def soft_target_loss(student_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(q ‖ softmax(s/T)) averaged over the batch, times T². The targets ``q`` are probabilities, not logits, so
    the temperature softens the student alone (with T = 1 the student matches q itself)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p_student, targets.to(log_p_student.dtype), reduction="batchmean") * temperature**2


class SoftTargetMethod(DistillMethod):
    """``γ·CE(s, y) + α·KL(q_i ‖ softmax(s/T))·T²`` with q_i a row of ``targets`` (N × C, one row per training
    sample, set by ``attach`` before training). It never reads the teacher's output (``teacher`` may be None).
    The table is a non-persistent buffer: it moves with ``.to(device)`` but is not saved with the student or in the
    resumable state (the job attaches it again on every start)."""

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput | None, num_samples: int,
                 world: World = SINGLE):
        super().__init__(cfg, student, teacher, num_samples, world)
        self.num_samples, self.num_classes = num_samples, int(student.logits.shape[1])
        self.register_buffer("targets", None, persistent=False)

    def set_targets(self, targets: torch.Tensor) -> None:
        """Use ``targets`` (N × C probabilities, row i for training sample i); refuses a table of the wrong shape."""
        want = (self.num_samples, self.num_classes)
        if tuple(targets.shape) != want:
            raise ValueError(f"{self.name}: the target table is {tuple(targets.shape)}, the training split needs "
                             f"{want} (one row per training sample, one column per class)")
        if not torch.isfinite(targets).all():
            raise ValueError(f"{self.name}: the target table holds non-finite values")
        unset = int((targets.sum(dim=1) == 0).sum())
        if unset:  # e.g. a sample in no batch before the checkpoint (a dropped trailing batch of one)
            log.warning("%s: %d training sample(s) have an all-zero target row and contribute no KL term", self.name,
                        unset)
        self.targets = targets.detach().float()

    def attach(self, data: Data, teacher_checkpoint: dict | None) -> None:
        raise NotImplementedError

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.targets is None:
            raise RuntimeError(f"{self.name}: no target table; the distill job attaches it (attach) before training")
        cfg = self.cfg
        losses: dict[str, torch.Tensor] = {}
        if cfg["ce_weight"]:
            losses["ce"] = cfg["ce_weight"] * F.cross_entropy(student.logits, labels)
        losses["kd"] = cfg["kd_weight"] * soft_target_loss(student.logits, self.targets[indices],
                                                           cfg["kd_temperature"])
        return losses
