"""Per-sample moving averages of a network's predictions during training: a table q ∈ R^{N×C}, one row per training
sample, updated from the softmax of the sample's logits every time a batch visits it,

    q_i ← (1 − r_i) · q_i + r_i · softmax(z_i / T),

the rate r_i set by the rule:

* ``EpochMeanAverage`` (SoTeacher's temporal ensemble, official code): r = 1 / (1 + k) for every sample, k = 0 during
  the first epoch (the first visit copies the prediction in) and k = e + 1 once epoch e (1-based) has finished; an
  equal-weight running mean over epochs. T = 1.
* ``ExponentialAverage`` (Filter-KD, Ren, Guo & Sutherland, ICLR 2022, public code): a fixed rate α on every visit,
  r = α, the row initialised with the sample's first prediction (r = 1 on the first visit); α = 0.05, T = 1 there.

The table is a buffer: it moves with ``.to(device)`` and is saved in ``state_dict``, the resumable training state.
With several ranks each rank updates it with the predictions of the whole global batch (``world.gather``), so every
rank holds the one process's table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.core.ranks import SINGLE, World

FILTER_TABLE = "filter_table"  # Filter-KD's table: the teacher option, and its key in a teacher checkpoint


class PredictionAverage(nn.Module):
    """The table q and its update; subclasses give the rate (``rate``) and what an epoch's end changes."""

    def __init__(self, num_samples: int, num_classes: int, world: World = SINGLE, temperature: float = 1.0):
        super().__init__()
        self.world = world
        self.temperature = temperature
        self.register_buffer("table", torch.zeros(num_samples, num_classes))

    def rate(self, indices: torch.Tensor) -> torch.Tensor:
        """r for the visited samples, in the table's float32 (a 0-d tensor, or a column for per-sample rates)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, logits: torch.Tensor, indices: torch.Tensor) -> None:
        """Move the visited rows towards the batch's predictions (detached; ``indices``: this rank's samples)."""
        logits = logits.detach().float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        probs = self.world.gather(F.softmax(logits, dim=1))
        indices = self.world.gather(indices)
        # the rate in the table's float32, not the logits' dtype: under bf16 autocast (1 − r) + r ≠ 1 and the rows
        # of q would drift off the simplex over the epochs
        rate = self.rate(indices)
        self.table[indices] = (1.0 - rate) * self.table[indices] + rate * probs

    def end_epoch(self, finished_epoch: int) -> None:
        """Called after each epoch (1-based)."""


class EpochMeanAverage(PredictionAverage):
    """Equal weight to every epoch's prediction: r = 1 / (1 + k), k = 0 in the first epoch, e + 1 after epoch e."""

    def __init__(self, num_samples: int, num_classes: int, world: World = SINGLE):
        super().__init__(num_samples, num_classes, world)
        self.register_buffer("momentum_k", torch.zeros((), dtype=torch.long))

    def rate(self, indices: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + self.momentum_k.to(self.table.dtype))

    def end_epoch(self, finished_epoch: int) -> None:
        self.momentum_k.fill_(finished_epoch + 1)


class ExponentialAverage(PredictionAverage):
    """A fixed rate α on every visit, each row initialised with its sample's first prediction (Filter-KD)."""

    def __init__(self, num_samples: int, num_classes: int, alpha: float = 0.05, temperature: float = 1.0,
                 world: World = SINGLE):
        super().__init__(num_samples, num_classes, world, temperature)
        self.alpha = alpha

    def rate(self, indices: torch.Tensor) -> torch.Tensor:
        # a row of zeros is a sample not visited yet (a visited row sums to 1): rate 1 copies its prediction in
        first = self.table[indices].sum(dim=1, keepdim=True) == 0
        return torch.where(first, 1.0, self.alpha).to(self.table.dtype)
