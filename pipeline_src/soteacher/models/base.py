"""What every model in the zoo returns, so KD methods can read any architecture the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
