"""CIFAR MobileNetV2, the half-width variant of the KD literature (registry name ``MobileNetV2``).

MobileNetV2 with expansion ratio 6 and width multiplier 0.5 (RepDistiller's ``mobile_half``, from
"Knowledge Distillation via Route Constrained Optimization"): a stride-2 3×3 stem, seven groups of
inverted residual blocks, a 1×1 conv to 1280 channels, global average pooling and a linear
classifier. Module and parameter names follow RepDistiller's ``mobilenetv2.py`` (``conv1``,
``blocks.{g}.{i}.conv.{0..7}``, ``conv2``, ``classifier.0``), so checkpoints in that format load with
``strict=True``.

Features are taken after block groups 1, 2, 4 and 6 as in the reference. Those outputs end in a
linear (BN, no ReLU) projection, so ``preact_feats`` equals ``feats`` there; only the stem differs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from soteacher.models.base import ModelOutput

# per block group: output channels (before the width multiplier), repeats, first stride; the first
# group uses expansion 1, the others the model's expansion ratio
_SETTING = [(16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1)]


def _conv_bn_relu(inp: int, oup: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(),
    )


class InvertedResidual(nn.Module):
    """1×1 expand, 3×3 depthwise, 1×1 linear projection; residual when shapes allow.

    ``conv`` indices: 0 conv, 1 BN, 2 ReLU, 3 depthwise conv, 4 BN, 5 ReLU, 6 conv, 7 BN. The expand
    conv is present even at expansion 1, as in the reference.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for CIFAR with expansion ``expansion`` and width multiplier ``width_mult``."""

    def __init__(self, num_classes: int, expansion: int = 6, width_mult: float = 0.5):
        super().__init__()
        input_channel = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, input_channel, 3, 2)
        self.blocks = nn.ModuleList()
        for group, (c, n, s) in enumerate(_SETTING):
            t = 1 if group == 0 else expansion
            output_channel = int(c * width_mult)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(input_channel, self.last_channel, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | ModelOutput:
        pre0 = self.conv1[1](self.conv1[0](x))
        f0 = F.relu(pre0)
        f1 = self.blocks[1](self.blocks[0](f0))
        f2 = self.blocks[2](f1)
        f3 = self.blocks[4](self.blocks[3](f2))
        f4 = self.blocks[6](self.blocks[5](f3))
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.conv2(f4), 1), 1)
        logits = self.classifier(pooled)
        if not with_features:
            return logits
        return ModelOutput(logits, [f0, f1, f2, f3, f4, pooled], [pre0, f1, f2, f3, f4, pooled])


def mobilenetv2_half(num_classes: int) -> MobileNetV2:
    """MobileNetV2, expansion 6, width 0.5 (RepDistiller's ``mobile_half``)."""
    return MobileNetV2(num_classes, expansion=6, width_mult=0.5)

