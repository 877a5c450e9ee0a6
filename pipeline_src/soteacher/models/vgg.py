"""CIFAR VGGs with BatchNorm (vgg8, vgg11, vgg13, vgg16, vgg19).

The CIFAR variant used in the KD literature: five conv blocks (``block0`` … ``block4``), max pooling
between the first four, the fully connected head replaced by global average pooling and a single
``classifier`` layer. Module and parameter names follow RepDistiller's ``vgg.py`` (the ``*_bn``
builders), so checkpoints in that format load with ``strict=True``.

Each block is conv(bias)-BN-ReLU repeated, with its last ReLU applied outside the block so the
pre-activation stage output is available. As in the reference, the max pool between ``block3`` and
``block4`` is only used for large inputs (the reference uses it for 64×64; here for height ≥ 64).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput

_CFGS: dict[int, list[list[int]]] = {  # depth -> conv widths per block
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _make_block(widths: list[int], in_channels: int) -> nn.Sequential:
    """conv3×3-BN-ReLU per width, without the final ReLU (indices: conv 3i, BN 3i+1, ReLU 3i+2)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """VGG-BN for CIFAR: five conv blocks, global average pooling, one linear classifier."""

    def __init__(self, cfg: list[list[int]], num_classes: int):
        super().__init__()
        self.block0 = _make_block(cfg[0], 3)
        self.block1 = _make_block(cfg[1], cfg[0][-1])
        self.block2 = _make_block(cfg[2], cfg[1][-1])
        self.block3 = _make_block(cfg[3], cfg[2][-1])
        self.block4 = _make_block(cfg[4], cfg[3][-1])
        self.classifier = nn.Linear(cfg[4][-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        large_input = x.shape[2] >= 64
        pre0 = self.block0(x)
        f0 = F.relu(pre0)
        pre1 = self.block1(F.max_pool2d(f0, 2))
        f1 = F.relu(pre1)
        pre2 = self.block2(F.max_pool2d(f1, 2))
        f2 = F.relu(pre2)
        pre3 = self.block3(F.max_pool2d(f2, 2))
        f3 = F.relu(pre3)
        pre4 = self.block4(F.max_pool2d(f3, 2) if large_input else f3)
        f4 = F.relu(pre4)
        pooled = torch.flatten(F.adaptive_avg_pool2d(f4, 1), 1)
        logits = self.classifier(pooled)
        if not with_features:
            return logits
        return ModelOutput(logits, [f0, f1, f2, f3, f4, pooled], [pre0, pre1, pre2, pre3, pre4, pooled])


def _factory(cfg: list[list[int]]):
    def build(num_classes: int) -> VGG:
        return VGG(cfg, num_classes)

    return build


# the factories named in soteacher.models.zoo
vgg8 = _factory(_CFGS[8])
vgg11 = _factory(_CFGS[11])
vgg13 = _factory(_CFGS[13])
vgg16 = _factory(_CFGS[16])
vgg19 = _factory(_CFGS[19])
