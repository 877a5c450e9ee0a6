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


class HintRegressor(nn.Module):
    """Maps a student feature map (C_s, H_s, W_s) to the teacher's shape (C_t, H_t, W_t), as the reference
    code's regressor (RepDistiller's and mdistiller's ``ConvReg``) does: same size → 1×1 conv; student twice
    the teacher's size → 3×3 conv with stride 2; half → 4×4 transposed conv with stride 2; then BN and, with
    ``relu``, a ReLU. Other size ratios, which the reference rejects or meets with one large kernel, are
    average-pooled (or bilinearly resized) to the teacher's size before a 1×1 conv. The convs have no bias:
    the BN that follows (in training mode) cancels it.
    """

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], relu: bool):
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = student_shape, teacher_shape
        self.resize_to: tuple[int, int] | None = None
        if (s_h, s_w) == (2 * t_h, 2 * t_w):
            self.conv: nn.Module = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1, bias=False)
        elif (2 * s_h, 2 * s_w) == (t_h, t_w):
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1, bias=False)
        else:
            self.resize_to = None if (s_h, s_w) == (t_h, t_w) else (t_h, t_w)
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_to is not None:
            x = (F.adaptive_avg_pool2d(x, self.resize_to) if x.shape[-2] >= self.resize_to[0]
                 and x.shape[-1] >= self.resize_to[1] else
                 F.interpolate(x, size=self.resize_to, mode="bilinear", align_corners=False))
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x
