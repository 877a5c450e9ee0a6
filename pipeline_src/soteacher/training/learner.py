"""A learner: a model with its objective, optimiser and lr schedule, and the history of its epochs; and the
``Objective`` protocol every learner's loss follows (a teacher's objective, a KD method, a staged method's init
stage). The loop (``loop``), its saved state (``state``) and its ranks (``parallel``) all handle learners."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from soteacher.models.base import ModelOutput


class Objective(Protocol):
    """What the loop asks of a learner's loss (a teacher's objective, a KD method, a staged method's init stage):
    an ``nn.Module`` called on the learner's output, the teacher's (None without a teacher), the labels and the
    sample indices, returning named loss terms that the loop sums."""

    needs_features: bool  # the loop then runs the learner (and the teacher) with ``with_features=True``

    def __call__(self, out: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                 indices: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def end_epoch(self, finished_epoch: int) -> None:
        """Per-epoch state (ramped weights, temporal ensembles, memory banks) after each epoch."""

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


@dataclass
class Learner:
    name: str
    model: nn.Module
    objective: Objective
    optimizer: Optimizer
    scheduler: LRScheduler  # stepped once per epoch
    history: list[dict] = field(default_factory=list)
