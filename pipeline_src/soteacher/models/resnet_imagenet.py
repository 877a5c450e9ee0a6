"""The four-stage ResNets of He et al. (64/128/256/512 base widths, basic or bottleneck blocks), two stems.

* ``ResNet18/34/50``: the 7×7 stride-2 stem and max pool replaced by a single 3×3 stride-1 conv, as in the
  CIFAR KD literature (for 32–64 px inputs). Module and parameter names follow RepDistiller's ``resnetv2.py``
  (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv*/bn*/shortcut``, ``linear``), so checkpoints in that format load
  with ``strict=True``.
* ``ResNet18/34/50_imagenet``: the ImageNet original (7×7 stride-2 conv, 3×3 stride-2 max pool), the nets of
  the ImageNet KD anchors (CRD, mdistiller). Names follow torchvision's ``resnet18/34/50`` (``downsample``,
  ``fc``), so torchvision's published weights load with ``strict=True`` (``teacher.imports``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput, init_resnet_weights, staged_forward


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Identity (empty) or 1×1-conv + BN projection when the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (registered as ``shortcut_name``: checkpoint names differ)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut_name: str = "shortcut"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut_name = shortcut_name
        self.add_module(shortcut_name, _shortcut(in_planes, planes * self.expansion, stride))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + self._modules[self.shortcut_name](x)
        return F.relu(preact), preact


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, with a residual connection."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut_name: str = "shortcut"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut_name = shortcut_name
        self.add_module(shortcut_name, _shortcut(in_planes, planes * self.expansion, stride))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        preact = self.bn3(self.conv3(out)) + self._modules[self.shortcut_name](x)
        return F.relu(preact), preact


class ResNet(nn.Module):
    """Four-stage ResNet: a 3×3 stride-1 stem and no max pool (small inputs), or with ``imagenet_stem`` the
    7×7 stride-2 conv and max pool of the original, with torchvision's module names."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        num_blocks: list[int],
        num_classes: int,
        zero_init_residual: bool = False,
        imagenet_stem: bool = False,
    ):
        super().__init__()
        self.in_planes = 64
        self.shortcut_name = "downsample" if imagenet_stem else "shortcut"
        if imagenet_stem:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.classifier_name = "fc" if imagenet_stem else "linear"
        self.add_module(self.classifier_name, nn.Linear(512 * block.expansion, num_classes))
        init_resnet_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            layers.append(block(self.in_planes, planes, stride if i == 0 else 1, self.shortcut_name))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        # max pool before the stem's ReLU: the two commute exactly, and staged_forward applies the ReLU
        stem_preact = self.maxpool(self.bn1(self.conv1(x)))
        return staged_forward(stem_preact, stages, self._modules[self.classifier_name], with_features)


def _factory(block: type[BasicBlock | Bottleneck], num_blocks: list[int], imagenet_stem: bool = False):
    def build(num_classes: int) -> ResNet:
        return ResNet(block, num_blocks, num_classes, imagenet_stem=imagenet_stem)

    return build


# the factories named in soteacher.models.zoo (ResNet18 … ResNet50_imagenet)
resnet18 = _factory(BasicBlock, [2, 2, 2, 2])
resnet34 = _factory(BasicBlock, [3, 4, 6, 3])
resnet50 = _factory(Bottleneck, [3, 4, 6, 3])
resnet18_imagenet = _factory(BasicBlock, [2, 2, 2, 2], imagenet_stem=True)
resnet34_imagenet = _factory(BasicBlock, [3, 4, 6, 3], imagenet_stem=True)
resnet50_imagenet = _factory(Bottleneck, [3, 4, 6, 3], imagenet_stem=True)
