"""The recipes' optimiser and learning-rate schedule, from a training phase's ``Optim`` settings: SGD with momentum
and L2 weight decay (``torch.optim.SGD``; no dampening, no Nesterov), its lr stepped once per epoch by
``optim.lr_schedule``: ``multistep`` multiplies it by ``lr_gamma`` after each of ``lr_milestones``
(``MultiStepLR``), ``cosine`` anneals it along half a cosine from ``lr`` towards 0 over the phase's epochs
(``CosineAnnealingLR``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR

from soteacher.core.settings import Optim


def make_optimizer(params: Iterable[torch.nn.Parameter], optim: Optim, lr: float,
                   epochs: int) -> tuple[torch.optim.SGD, LRScheduler]:
    """The optimiser over ``params`` starting at ``lr``, and its schedule for a phase of ``epochs`` epochs."""
    # foreach and fused left at torch's defaults: its multi-tensor (foreach) kernels on CUDA, one tensor at a time
    # on CPU. fused=True would change the numbers on a GPU, which no test here can check.
    optimizer = torch.optim.SGD(params, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.lr_schedule == "cosine":
        # epoch t (from 1) trains at lr (1 + cos(π (t - 1) / epochs)) / 2: eta_min = 0 is reached after the last
        # epoch, never trained at; lr_milestones and lr_gamma are not used
        return optimizer, CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    return optimizer, MultiStepLR(optimizer, optim.lr_milestones, optim.lr_gamma)
