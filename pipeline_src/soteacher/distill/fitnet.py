"""FitNet (Romero et al. 2015): regress a teacher hint layer from a student layer through a connector.

Loss: mean squared error between ``connector(student.feats[hint_layer])`` and
``teacher.feats[hint_layer]``. The connector is a 3×3 conv + BN + ReLU to the teacher's channel count;
when the spatial sizes differ, the student map is average-pooled (or bilinearly resized) to the
teacher's size first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.distill.base import DistillMethod
from soteacher.models.base import ModelOutput


def fitnet_loss(student_hint: torch.Tensor, teacher_hint: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student_hint, teacher_hint)


def match_spatial(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvConnector(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, out_size: tuple[int, int]):
        super().__init__()
        self.out_size = out_size
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(match_spatial(x, self.out_size))))


class FitNet(DistillMethod):
    name = "fitnet"
    needs_features = True

    def __init__(self, cfg: dict, student: ModelOutput, teacher: ModelOutput, num_samples: int):
        super().__init__(cfg, student, teacher, num_samples)
        layer = cfg["hint_layer"]
        s, t = student.feats[layer], teacher.feats[layer]
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError(f"fitnet.hint_layer={layer} must name a convolutional feature map")
        self.connector = ConvConnector(s.shape[1], t.shape[1], tuple(t.shape[-2:]))

    def method_loss(self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor,
                    indices: torch.Tensor) -> torch.Tensor:
        layer = self.cfg["hint_layer"]
        return fitnet_loss(self.connector(student.feats[layer]), teacher.feats[layer])
