"""Methods with an initialisation stage (AB, FT, FSP), run inside the distillation job.

RepDistiller trains such methods in two phases: ``init_epochs`` epochs (30 by default) that minimise only
the method's init objective (AB: the activation-boundary loss through the connectors into the student's
feature layers; FT: the paraphraser's reconstruction of the teacher map; FSP: the FSP-matrix loss into the
student's feature layers), then the usual distillation epochs. ``distill_job.run_distill`` runs the first phase
with the shared training loop, wrapping the method in ``InitStage``, with its own SGD optimiser over the
student and method parameters at a constant lr (the method's ``init_lr`` if it has one, as FT does, else the
student's); only the parameters the init objective reaches get gradients, so only they move. Then it calls
``end_init()`` (every method has it) and runs the main phase. The teacher stays in eval mode and gradient-free
in both phases.
"""

from __future__ import annotations

import torch
from torch import nn

from soteacher.methods.base import DistillMethod
from soteacher.models.base import ModelOutput


class StagedMethod(DistillMethod):
    """A method with ``init_epochs`` (config key) epochs of ``init_loss`` before distillation."""

    needs_features = True

    @property
    def init_epochs(self) -> int:  # type: ignore[override]
        return int(self.cfg.get("init_epochs", 0))

    @property
    def init_lr(self) -> float | None:
        """The init stage's learning rate; None: the student's (the method's config may set ``init_lr``)."""
        return self.cfg.get("init_lr")

    def init_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                  indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError



class InitStage(nn.Module):
    """The init-phase objective of a ``StagedMethod``: ``{name: init_loss}``, no CE or KD term."""

    needs_features = True

    def __init__(self, method: StagedMethod):
        super().__init__()
        self.method = method

    def end_epoch(self, finished_epoch: int) -> None:
        """The init stage has no per-epoch state (the method's own schedule starts with distillation)."""

    def forward(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.method.name: self.method.init_loss(student, teacher, labels, indices)}
