"""Several ranks: each learner's model and objective in DistributedDataParallel (``joint_steps``), optionally with
SyncBatchNorm, and the ranks' BatchNorm running statistics averaged before evaluating (``average_batchnorm``). In
one process a learner's step calls its model and objective directly."""

from __future__ import annotations

import logging

import torch
from torch import nn

from soteacher.core.ranks import World
from soteacher.models.base import ModelOutput
from soteacher.training.learner import Learner

log = logging.getLogger(__name__)


def as_output(result: torch.Tensor | ModelOutput) -> ModelOutput:
    """A model's result as a ``ModelOutput`` (a model outside the zoo may return bare logits)."""
    return result if isinstance(result, ModelOutput) else ModelOutput(result, [], [])


class _Joint(nn.Module):
    """A learner's model and objective as one module, so DistributedDataParallel averages the gradients of both
    (KD methods have parameters of their own: connectors, projection heads)."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, teacher_out: ModelOutput | None, y: torch.Tensor, idx: torch.Tensor,
                with_features: bool) -> tuple[ModelOutput, dict[str, torch.Tensor]]:
        out = as_output(self.model(x, with_features=with_features))
        return out, self.objective(out, teacher_out, y, idx)


def joint_steps(learners: list[Learner], world: World, device: torch.device, sync_bn: bool) -> list[nn.Module]:
    """What each learner's step calls: its model and objective, in DDP when there are several ranks."""
    if not world.distributed:
        return [_Joint(lr.model, lr.objective) for lr in learners]
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn and device.type != "cuda" and world.is_main:
        log.warning("compute.sync_bn has no effect on %s (PyTorch's SyncBatchNorm runs on CUDA): each rank normalises "
                    "its shard with the shard's statistics", device.type)
    out = []
    for lr in learners:
        if sync_bn and device.type == "cuda":
            # the new modules keep the old parameters and buffers, so the optimiser's references hold
            lr.model = nn.SyncBatchNorm.convert_sync_batchnorm(lr.model)
        # buffers are not synchronised each step: the objectives keep theirs identical with gathers, BatchNorm's are
        # averaged each epoch (average_batchnorm); sending them every step would send the whole consistency buffer.
        # static_graph: the same parameters take part in every step, though not all of them (a method's unused
        # connector), which DDP then learns once instead of searching the graph every step
        out.append(DistributedDataParallel(
            _Joint(lr.model, lr.objective), device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False, static_graph=True))
    return out


def average_batchnorm(model: nn.Module, world: World) -> None:
    """Average the ranks' BatchNorm running statistics (each rank normalised its own shard) before evaluating."""
    if not world.distributed:
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
            for buffer in (module.running_mean, module.running_var):
                if buffer is not None:
                    world.sum(buffer).div_(world.size)
