"""What a teacher term is: one weighted part of the teacher's loss, a small module built from its recipe parameters.

A recipe (``teacher.recipes.<name>`` in the config) maps term names to their parameters; the teacher's loss is the
sum of its terms (``teachers.objective``). Each term file holds the pure loss function, its formula and source, and
the term class: ``name``, ``forward`` (the weighted loss of one batch) and ``end_epoch`` for per-epoch state.
The class also declares how its parameters read in an ablation (``report.ablation``): ``weight_param``, the parameter
whose 0 switches the term off (a recipe without the term is that point), and ``joint_params``, parameters that only
qualify another one and so lie on its axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from soteacher.core.ranks import World
from soteacher.models.base import ModelOutput


@dataclass(frozen=True)
class TeacherSetup:
    """What a term may need of the training it is part of."""

    net: nn.Module  # the teacher network (its layers: the Lipschitz penalty)
    num_samples: int  # training samples, indexed 0..N-1 (per-sample state)
    num_classes: int
    total_epochs: int  # weight schedules
    world: World  # the job's ranks: per-sample state is updated with the global batch


class TeacherTerm(nn.Module):
    name: ClassVar[str]
    weight_param: ClassVar[str | None] = None
    joint_params: ClassVar[dict[str, str]] = {}  # parameter -> the parameter it qualifies (same ablation axis)

    def __init__(self, params: dict, setup: TeacherSetup):
        """``params``: the term's parameters with the schema's defaults filled in."""
        super().__init__()
        self.params = params

    def forward(self, out: ModelOutput, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The weighted loss of one batch (``indices``: the samples' positions in the training set)."""
        raise NotImplementedError

    def end_epoch(self, finished_epoch: int) -> None:
        """After each epoch (1-based): per-epoch state (weight schedules, moving averages)."""

    @classmethod
    def axis_value(cls, params: dict, axis: str) -> object:
        """The value an ablation shows for ``params`` on the axis of parameter ``axis``."""
        return params[axis]
