"""CIFAR ResNets (resnet8 … resnet110, resnet8x4, resnet32x4).

Module and parameter names follow the CIFAR KD reference code (RepDistiller's ``resnet.py``), so
checkpoints in that format load with ``strict=True``. The stem is a 3×3 conv, three stages of basic
blocks, global average pooling and a linear classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput, init_resnet_weights, staged_forward


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + residual
        return F.relu(preact), preact


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_filters: list[int], num_classes: int):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.layer1 = self._make_layer(num_filters[1], blocks_per_stage, stride=1)
        self.layer2 = self._make_layer(num_filters[2], blocks_per_stage, stride=2)
        self.layer3 = self._make_layer(num_filters[3], blocks_per_stage, stride=2)
        self.fc = nn.Linear(num_filters[3] * BasicBlock.expansion, num_classes)
        init_resnet_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        stages = [self.layer1, self.layer2, self.layer3]
        return staged_forward(self.bn1(self.conv1(x)), stages, self.fc, with_features)


_SLIM = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]


def _factory(depth: int, filters: list[int]):
    def build(num_classes: int) -> CifarResNet:
        return CifarResNet(depth, filters, num_classes)

    return build


# the factories named in soteacher.models.zoo
resnet8 = _factory(8, _SLIM)
resnet14 = _factory(14, _SLIM)
resnet20 = _factory(20, _SLIM)
resnet32 = _factory(32, _SLIM)
resnet44 = _factory(44, _SLIM)
resnet56 = _factory(56, _SLIM)
resnet110 = _factory(110, _SLIM)
resnet8x4 = _factory(8, _WIDE)
resnet32x4 = _factory(32, _WIDE)
