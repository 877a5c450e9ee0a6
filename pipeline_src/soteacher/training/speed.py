"""The config's speed switches (``compute.amp``, ``channels_last``, ``compile``): how the loop runs forward passes
(``Speed``) and how a model is prepared before training (``prepare_model``). Off by default: exact fp32 numbers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from soteacher.core.settings import Compute


@dataclass(frozen=True)
class Speed:
    """Speed switches from the config's ``compute`` section; off by default (exact fp32 numbers)."""

    amp_bf16: bool = False  # bf16 autocast for forward passes and losses (GPU; CPU autocast works too)
    channels_last: bool = False  # NHWC inputs and weights (tensor cores like them)

    @classmethod
    def from_compute(cls, compute: Compute) -> Speed:
        return cls(amp_bf16=compute.amp == "bf16", channels_last=compute.channels_last)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.amp_bf16 else contextlib.nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


EXACT = Speed()  # every switch off


def prepare_model(model: nn.Module, compute: Compute) -> nn.Module:
    """Apply ``compute.channels_last`` and ``compute.compile`` to a model (its state_dict keys are unchanged)."""
    if compute.channels_last:
        model.to(memory_format=torch.channels_last)
    if compute.compile:
        import torch._inductor.config as inductor_config

        # what torch.use_deterministic_algorithms would have set (devices.use_deterministic_algorithms skips it)
        inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
        model.forward = torch.compile(model.forward)
    return model
