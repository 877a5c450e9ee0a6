"""CIFAR ShuffleNetV2 (registry name ``ShuffleNetV2``).

ShuffleNetV2 1× (Ma et al., 2018) as in the CIFAR KD literature (RepDistiller's ``ShuffleV2``): a
1×1 stem to 24 channels, three stages (116/232/464 channels) each made of a down-sampling block and
3/7/3 channel-split blocks, a 1×1 conv to 1024 channels, global average pooling and a linear
classifier. Module and parameter names follow RepDistiller's ``ShuffleNetv2.py`` (``conv1``, ``bn1``,
``layer{1,2,3}.{i}.conv{1..5}/bn{1..5}``, ``conv2``, ``bn2``, ``linear``), so checkpoints in that format
load with ``strict=True``. Weights keep PyTorch's default init, as there.

A stage's pre-activation feature is its last block's output with the final ReLU of the processed
half left out. The reference returns it before the channel shuffle; here it is shuffled like the
post-ReLU feature, so ``feats[i]`` and ``preact_feats[i]`` have the same channel order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput, staged_forward
from soteacher.models.shufflenetv1 import channel_shuffle

_CONFIGS: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


class SplitBlock(nn.Module):
    """Keep half the channels, send the other half through 1×1, depthwise 3×3, 1×1; concat, shuffle."""

    def __init__(self, in_channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split_ratio = split_ratio
        c = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = int(x.shape[1] * self.split_ratio)
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        pre = self.bn3(self.conv3(out))
        out = channel_shuffle(torch.cat([x1, F.relu(pre)], 1), 2)
        preact = channel_shuffle(torch.cat([x1, pre], 1), 2)
        return out, preact


class DownBlock(nn.Module):
    """Stride-2 block: both branches see the whole input, each yields half the output channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        # left branch: depthwise 3×3 (stride 2), 1×1
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        # right branch: 1×1, depthwise 3×3 (stride 2), 1×1
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        out = channel_shuffle(torch.cat([left, right], 1), 2)
        return out, out


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 for CIFAR: 1×1 stem, three stages, 1×1 conv, global average pooling, linear."""

    def __init__(self, num_classes: int, net_size: float = 1.0):
        super().__init__()
        out_channels, num_blocks = _CONFIGS[net_size]
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_channels = 24
        self.layer1 = self._make_layer(out_channels[0], num_blocks[0])
        self.layer2 = self._make_layer(out_channels[1], num_blocks[1])
        self.layer3 = self._make_layer(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def _make_layer(self, out_channels: int, num_blocks: int) -> nn.Sequential:
        layers: list[nn.Module] = [DownBlock(self.in_channels, out_channels)]
        layers += [SplitBlock(out_channels) for _ in range(num_blocks)]
        self.in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        stages = [self.layer1, self.layer2, self.layer3]
        return staged_forward(self.bn1(self.conv1(x)), stages, self.linear, with_features,
                              head=lambda f: F.relu(self.bn2(self.conv2(f))))


def shufflenetv2(num_classes: int) -> ShuffleNetV2:
    """ShuffleNetV2 1× (116/232/464/1024 channels; RepDistiller's ``ShuffleV2``)."""
    return ShuffleNetV2(num_classes, net_size=1.0)

