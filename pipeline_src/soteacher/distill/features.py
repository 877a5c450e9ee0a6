"""Shared feature plumbing for feature-based methods: which maps to pair and how to bring them to one size.

Conventions follow the CIFAR KD reference code (RepDistiller): "stages" are ``feats[1:-1]`` (every stage
output, without the stem and the pooled vector); when a student and a teacher have a different number of
stages, the first ones are paired (``zip``); when two paired maps differ in spatial size, the larger one
is average-pooled to the smaller one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput


def pool_to_common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two feature maps to the spatial size of the smaller (per axis)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if tuple(a.shape[-2:]) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if tuple(b.shape[-2:]) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


def stage_pairs(student: ModelOutput, teacher: ModelOutput,
                preact: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student, teacher) stage maps, ``feats[1:-1]`` zipped; ``preact`` reads the pre-ReLU maps."""
    s = (student.preact_feats if preact else student.feats)[1:-1]
    t = (teacher.preact_feats if preact else teacher.feats)[1:-1]
    return list(zip(s, t))


def check_stage_pairs(name: str, student: ModelOutput, teacher: ModelOutput, preact: bool = False) -> list:
    """``stage_pairs`` on sample outputs, raising ValueError when there is nothing convolutional to pair."""
    pairs = stage_pairs(student, teacher, preact)
    if not pairs or any(s.dim() != 4 or t.dim() != 4 for s, t in pairs):
        raise ValueError(f"{name} needs convolutional stage feature maps (feats[1:-1]) in both networks")
    return pairs


class LinearEmbed(nn.Module):
    """Flatten and project to ``dim`` (optionally L2-normalised): the embedding heads of CC and CRD."""

    def __init__(self, in_features: int, dim: int, normalize: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_features, dim)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.flatten(1))
        return F.normalize(x, dim=1) if self.normalize else x
