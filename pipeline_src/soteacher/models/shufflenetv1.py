"""CIFAR ShuffleNetV1 (registry name ``ShuffleNetV1``).

ShuffleNet (Zhang et al., 2018) with 3 groups and stage widths 240/480/960 as in the CIFAR KD
literature (RepDistiller's ``ShuffleV1``): a 1×1 stem to 24 channels, three stages of grouped
bottlenecks whose first block halves the resolution and concatenates an average-pooled shortcut,
global average pooling and a linear classifier. Module and parameter names follow RepDistiller's
``ShuffleNetv1.py`` (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv{1,2,3}/bn{1,2,3}``, ``linear``), so
checkpoints in that format load with ``strict=True``. Weights keep PyTorch's default init, as there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput, staged_forward


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, g·c, H, W] -> [N, c·g, H, W]: interleave the channels of the ``groups`` groups."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBottleneck(nn.Module):
    """Grouped 1×1, channel shuffle, depthwise 3×3, grouped 1×1; add (stride 1) or concat (stride 2)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int):
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        # the stem has only 24 channels, so the first grouped conv after it is not grouped
        self.first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, kernel_size=1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.conv2 = nn.Conv2d(
            mid_planes, mid_planes, kernel_size=3, stride=stride, padding=1, groups=mid_planes, bias=False
        )
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            preact = torch.cat([out, F.avg_pool2d(x, 3, stride=2, padding=1)], 1)
        else:
            preact = out + x
        return F.relu(preact), preact


class ShuffleNetV1(nn.Module):
    """ShuffleNetV1 for CIFAR: 1×1 stem, three shuffle stages, global average pooling, linear."""

    def __init__(
        self,
        num_classes: int,
        out_planes: tuple[int, ...] = (240, 480, 960),
        num_blocks: tuple[int, ...] = (4, 8, 4),
        groups: int = 3,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._make_layer(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._make_layer(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._make_layer(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)

    def _make_layer(self, out_planes: int, num_blocks: int, groups: int) -> nn.Sequential:
        # the strided first block concatenates its input, so its branch produces the remaining channels
        layers = [ShuffleBottleneck(self.in_planes, out_planes - self.in_planes, 2, groups)]
        layers += [ShuffleBottleneck(out_planes, out_planes, 1, groups) for _ in range(1, num_blocks)]
        self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        stages = [self.layer1, self.layer2, self.layer3]
        return staged_forward(self.bn1(self.conv1(x)), stages, self.linear, with_features)


def shufflenetv1(num_classes: int) -> ShuffleNetV1:
    """ShuffleNetV1, g=3, widths 240/480/960, blocks 4/8/4 (RepDistiller's ``ShuffleV1``)."""
    return ShuffleNetV1(num_classes)

