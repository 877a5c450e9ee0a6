"""What a KD method is: a small module that turns student and teacher outputs into named losses.

Every method shares the logit terms of the student loss,
``γ·CE(student, y) + α·KL(softmax(t/T) ‖ softmax(s/T))·T²``, and adds its own term weighted by β. The
weights come from the method's config (``ce_weight`` = γ, ``kd_weight`` = α, ``kd_temperature`` = T,
``weight`` = β). Learnable parts (connectors, projection heads) are the method's own parameters: they
are optimised with the student and saved with it. The teacher is never touched here: the training loop
runs it once per batch, in eval mode and without gradients, and hands its outputs to every student.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.data import Data
from soteacher.models.base import ModelOutput


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s KD term: KL(softmax(t/T) ‖ softmax(s/T)) averaged over the batch, times T²."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


class DistillMethod(nn.Module):
    """Base class. Subclasses set ``name``, ``needs_features`` and implement ``method_loss``; a method whose KD
    term reads transformed logits overrides ``kd_logits``. Methods with an init stage are ``StagedMethod``s
    (``init_epochs`` > 0); for all others the distill job's init stage is empty."""

    name: ClassVar[str]
    needs_features: ClassVar[bool] = False
    # False: the method never reads a teacher; it is trained once per student × seed (rule train_vanilla, with
    # teacher None), not under every checkpoint (study.student_jobs.TEACHERLESS names these methods without torch)
    needs_teacher: ClassVar[bool] = True
    init_epochs: int = 0

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int,
                 world: World = SINGLE):
        """``student``/``teacher`` are sample outputs (batch of 2) used to size connectors. ``world``: the job's ranks;
        a loss that relates the samples of a batch computes it on ``self.world.gather``-ed outputs (the global
        batch), which gives every rank one process's loss and gradient."""
        super().__init__()
        self.cfg = cfg
        self.world = world

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor | None:
        return None

    def forward(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        losses: dict[str, torch.Tensor] = {}
        if cfg["ce_weight"]:
            losses["ce"] = cfg["ce_weight"] * F.cross_entropy(student.logits, labels)
        if cfg["kd_weight"]:
            losses["kd"] = cfg["kd_weight"] * kd_loss(*self.kd_logits(student.logits, teacher.logits),
                                                      cfg["kd_temperature"])
        extra = self.method_loss(student, teacher, labels, indices)
        if extra is not None and cfg["weight"]:
            losses[self.name] = cfg["weight"] * extra
        return losses

    def kd_logits(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (student, teacher) logits the KD term compares: the networks' own."""
        return student, teacher

    def attach(self, data: Data, teacher_checkpoint: dict | None) -> None:
        """Hook the distill job calls once after construction, before ``.to(device)`` and training: the job's data and
        the loaded teacher checkpoint (None without a teacher). Methods with per-sample targets
        (``soft_targets.SoftTargetMethod``) take them from here; the others need nothing."""

    def end_epoch(self, finished_epoch: int) -> None:
        """Hook for methods with per-epoch state (warm-up schedules, memory banks)."""

    def end_init(self) -> None:
        """Called once between the init stage and distillation (staged methods set up what follows)."""
