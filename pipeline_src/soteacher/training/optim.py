"""SGD with momentum and L2 weight decay, and the multi-step learning-rate schedule: the recipes' optimiser.

Same arithmetic as ``torch.optim.SGD`` (no dampening, no Nesterov; its multi-tensor path) and
``torch.optim.lr_scheduler.MultiStepLR``, step for step and bit for bit (tests/test_optim.py compares
them). Not those classes themselves: the first use of a ``torch.optim`` optimiser imports ``torch._dynamo``,
1.7 s of every job's start-up, a sizeable share of the short jobs of a small study.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch

from soteacher.core.settings import Optim


class SGD:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.param_groups = [{"lr": lr, "momentum": momentum, "weight_decay": weight_decay}]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # parameters this step reached
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        if not params:
            return
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            buffers = []
            for i, grad in zip(live, grads):
                if self.momentum_buffers[i] is None:  # first step: the buffer starts as the gradient
                    self.momentum_buffers[i] = torch.clone(grad).detach()
                    buffers.append(None)
                else:
                    buffers.append(self.momentum_buffers[i])
            old = [k for k, b in enumerate(buffers) if b is not None]
            if old:
                torch._foreach_mul_([buffers[k] for k in old], group["momentum"])
                torch._foreach_add_([buffers[k] for k in old], [grads[k] for k in old], alpha=1.0)
            grads = [self.momentum_buffers[i] for i in live]
        torch._foreach_add_(params, grads, alpha=-group["lr"])

    def state_dict(self) -> dict:
        return {"lr": self.param_groups[0]["lr"], "momentum_buffers": list(self.momentum_buffers)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["momentum_buffers"]) != len(self.params):
            raise ValueError(f"optimiser state for {len(state['momentum_buffers'])} parameters, "
                             f"not {len(self.params)}")
        self.param_groups[0]["lr"] = state["lr"]
        self.momentum_buffers = [None if b is None else b.to(p.device)
                                 for b, p in zip(state["momentum_buffers"], self.params)]


class MultiStepLR:
    """Multiplies the learning rate by ``gamma`` at each milestone epoch; ``step()`` once per epoch."""

    def __init__(self, optimizer: SGD, milestones: Iterable[int], gamma: float) -> None:
        self.optimizer = optimizer
        self.milestones = Counter(milestones)
        self.gamma = gamma
        self.last_epoch = 0

    def step(self) -> None:
        self.last_epoch += 1
        if self.last_epoch in self.milestones:
            group = self.optimizer.param_groups[0]
            group["lr"] = group["lr"] * self.gamma ** self.milestones[self.last_epoch]

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch = state["last_epoch"]


def make_optimizer(params, optim: Optim, lr: float) -> tuple[SGD, MultiStepLR]:
    optimizer = SGD(params, lr=lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    return optimizer, MultiStepLR(optimizer, optim.lr_milestones, optim.lr_gamma)
