"""What every model in the zoo returns, so KD methods can read any architecture the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelOutput:
    """Logits plus the intermediate features KD methods read.

    ``feats`` follows the convention of the CIFAR KD literature: the stem output, one entry per
    stage, and last the pooled embedding fed to the classifier. ``preact_feats`` holds the same
    tensors taken before the final ReLU of each stage (the pooled embedding is repeated).
    """

    logits: torch.Tensor
    feats: list[torch.Tensor]
    preact_feats: list[torch.Tensor]


def feature_shapes(model: torch.nn.Module, input_shape: tuple[int, ...]) -> ModelOutput:
    """Run one example through ``model`` in eval mode and return its outputs (for sizing connectors)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(torch.zeros(2, *input_shape, device=device), with_features=True)
    model.train(was_training)
    return out


def staged_forward(stem_preact: torch.Tensor, stages: Sequence[nn.Sequential], classifier: nn.Module,
                   with_features: bool, head: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> torch.Tensor | ModelOutput:
    """The forward pass shared by the stage-structured nets (ResNets, ShuffleNets).

    ReLU(stem) → stages whose blocks return (output, pre-activation) → optional ``head`` (e.g. a last 1×1
    conv) → global average pooling → classifier.
    """
    feats, preacts = [F.relu(stem_preact)], [stem_preact]
    for stage in stages:
        x = pre = feats[-1]
        for block in stage:
            x, pre = block(x)
        feats.append(x)
        preacts.append(pre)
    last = feats[-1] if head is None else head(feats[-1])
    pooled = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
    logits = classifier(pooled)
    if not with_features:
        return logits
    return ModelOutput(logits, [*feats, pooled], [*preacts, pooled])


def init_resnet_weights(net: nn.Module) -> None:
    """He (fan-out) init for convolutions, BatchNorm γ = 1 and β = 0: the ResNet families' initialisation."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
