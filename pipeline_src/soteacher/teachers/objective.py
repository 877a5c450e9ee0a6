"""The teacher's loss: the sum of its recipe's terms (``teachers.terms``), e.g. CE + λ_LR · LipschitzPenalty +
λ_CR(e) · Consistency for SoTeacher, CE alone for the standard teacher."""

from __future__ import annotations

import torch
from torch import nn

from soteacher.core.ranks import SINGLE, World
from soteacher.models.base import ModelOutput
from soteacher.teachers.terms import TERMS, TeacherSetup
from soteacher.training.averages import ExponentialAverage


class TeacherObjective(nn.Module):
    needs_features = False

    def __init__(self, net: nn.Module, terms: dict[str, dict], num_samples: int, num_classes: int,
                 total_epochs: int, world: World = SINGLE, filter_table: dict | None = None):
        """``terms``: a recipe, term name -> its parameters with the schema's defaults filled in. ``filter_table``
        (``teacher.filter_table``: alpha, temperature): also record Filter-KD's per-sample moving average of the
        predictions, ``self.filter_table.table``; it adds no loss and changes no weight. Held here so that it is a
        buffer of the objective, saved in the resumable training state."""
        super().__init__()
        unknown = sorted(set(terms) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown teacher terms {unknown}; registered: {', '.join(TERMS)}")
        setup = TeacherSetup(net, num_samples, num_classes, total_epochs, world)
        # registry order, not the recipe's: the loop sums the losses in this order, so the sum's rounding does not
        # depend on how a config lists its terms
        self.terms = nn.ModuleDict({name: cls(terms[name], setup) for name, cls in TERMS.items() if name in terms})
        self.filter_table = None if filter_table is None else ExponentialAverage(
            num_samples, num_classes, alpha=filter_table["alpha"], temperature=filter_table["temperature"], world=world)

    def forward(self, out: ModelOutput, teacher: ModelOutput | None, labels: torch.Tensor,
                indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term's weighted loss under its name (``train_<name>`` in the history)."""
        if self.filter_table is not None:
            self.filter_table.update(out.logits, indices)  # detached: no gradient flows through the table
        return {name: term(out, labels, indices) for name, term in self.terms.items()}

    def end_epoch(self, finished_epoch: int) -> None:
        for term in self.terms.values():
            term.end_epoch(finished_epoch)
