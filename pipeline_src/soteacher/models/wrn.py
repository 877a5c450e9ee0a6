"""CIFAR WideResNets (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2).

Pre-activation WideResNet (Zagoruyko & Komodakis) as used in the CIFAR KD literature. Module and
parameter names follow RepDistiller's ``wrn.py`` (``conv1``, ``block{1,2,3}.layer.{i}``, ``bn1``,
``fc``), so checkpoints in that format load with ``strict=True``.

Because the blocks are pre-activation, a stage's output is a raw residual sum with no ReLU. As in the
reference, ``feats`` holds those sums and ``preact_feats`` holds them after the BatchNorm that the
next block (or the final ``bn1``) applies before its ReLU; the BN is computed once and reused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1×1-conv shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: nn.Conv2d | None = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor, x_bn: torch.Tensor | None = None) -> torch.Tensor:
        """``x_bn`` may carry ``self.bn1(x)`` when the caller already computed it."""
        act = F.relu(self.bn1(x) if x_bn is None else x_bn)
        out = F.relu(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(act)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One WRN stage: ``layer`` is a sequence of wide basic blocks, the first one strided."""

    def __init__(self, num_layers: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
                for i in range(num_layers)
            )
        )

    def forward(self, x: torch.Tensor, x_bn: torch.Tensor | None = None) -> torch.Tensor:
        for i, block in enumerate(self.layer):
            x = block(x, x_bn if i == 0 else None)
        return x


class WideResNet(nn.Module):
    """WRN-depth-k for CIFAR: 3×3 stem, three stages of (depth-4)/6 blocks, BN-ReLU, pool, linear."""

    def __init__(self, depth: int, num_classes: int, widen_factor: int = 1, drop_rate: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        pre1 = self.block2.layer[0].bn1(f1)
        f2 = self.block2(f1, pre1)
        pre2 = self.block3.layer[0].bn1(f2)
        f3 = self.block3(f2, pre2)
        pre3 = self.bn1(f3)
        pooled = torch.flatten(F.adaptive_avg_pool2d(F.relu(pre3), 1), 1)
        logits = self.fc(pooled)
        if not with_features:
            return logits
        return ModelOutput(logits, [f0, f1, f2, f3, pooled], [f0, pre1, pre2, pre3, pooled])


def _factory(depth: int, widen_factor: int):
    def build(num_classes: int) -> WideResNet:
        return WideResNet(depth, num_classes, widen_factor)

    return build


# the factories named in soteacher.models.zoo
wrn_16_1 = _factory(16, 1)
wrn_16_2 = _factory(16, 2)
wrn_40_1 = _factory(40, 1)
wrn_40_2 = _factory(40, 2)
