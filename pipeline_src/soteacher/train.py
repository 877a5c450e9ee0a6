"""The one training loop, for teachers and students alike.

Several *learners* (a model, its objective, optimiser and lr schedule) train in lockstep on the same
shuffled, augmented batches. When a frozen teacher is given, its forward pass runs once per batch and
its outputs go to every learner, so M students of one teacher checkpoint cost one teacher forward.
A learner's result does not depend on which other learners share the loop: each owns its parameters and
optimiser, and all randomness of a batch comes from the shared data generator (seeded by the job seed).

Per-step losses stay on the device; they are read once per epoch, so a GPU never waits on the host.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from soteacher.data import Data
from soteacher.models.base import ModelOutput

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class Learner:
    name: str
    model: nn.Module
    objective: nn.Module  # (student_out, teacher_out, labels, indices) -> {name: loss}
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(
    params, optim_cfg: dict, lr: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.SGD(params, lr=lr, momentum=optim_cfg["momentum"], weight_decay=optim_cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=optim_cfg["lr_milestones"],
                                                     gamma=optim_cfg["lr_gamma"])
    return optimizer, scheduler


def _as_output(result: torch.Tensor | ModelOutput) -> ModelOutput:
    return result if isinstance(result, ModelOutput) else ModelOutput(result, [], [])


@torch.no_grad()
def predict(model: nn.Module, data: Data, split: str, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on a data split, without augmentation."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x) for x, _ in data.eval_batches(getattr(data, split), batch_size)])
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, data: Data) -> dict[str, float]:
    """Test accuracy (%) and, when p*(x) is known, the mean total variation between softmax and p*."""
    metrics: dict[str, float] = {}
    logits = predict(model, data, "test")
    metrics["test_acc"] = (logits.argmax(1) == data.test.labels).float().mean().item() * 100
    metrics["test_loss"] = nn.functional.cross_entropy(logits, data.test.labels).item()
    for split in ("train", "test"):
        pstar = getattr(data, split).pstar
        if pstar is not None:
            probs = (logits if split == "test" else predict(model, data, "train")).softmax(1)
            metrics[f"tv_pstar_{split}"] = 0.5 * (probs - pstar).abs().sum(1).mean().item()
    return metrics


def train(
    learners: list[Learner],
    data: Data,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    teacher: nn.Module | None = None,
    augment: bool = True,
    on_epoch_end: Callable[[int, Learner, dict], None] | None = None,
) -> None:
    """Train every learner for ``epochs`` epochs on shared batches; ``on_epoch_end`` sees each epoch's metrics."""
    device = data.train.images.device
    generator = torch.Generator(device=device).manual_seed(seed)
    teacher_features = any(getattr(lr.objective, "needs_features", False) for lr in learners)
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    for epoch in range(1, epochs + 1):
        for learner in learners:
            learner.model.train()
            learner.objective.train()
        sums = [dict[str, torch.Tensor]() for _ in learners]
        correct = [torch.zeros((), device=device) for _ in learners]
        seen = 0
        for x, y, idx in data.train_batches(batch_size, generator, augment):
            teacher_out = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_out = _as_output(teacher(x, with_features=teacher_features))
            seen += y.numel()
            for k, learner in enumerate(learners):
                needs = getattr(learner.objective, "needs_features", False)
                out = _as_output(learner.model(x, with_features=needs))
                losses = learner.objective(out, teacher_out, y, idx)
                total = torch.stack(list(losses.values())).sum()
                learner.optimizer.zero_grad(set_to_none=True)
                total.backward()
                learner.optimizer.step()
                for name, value in (("loss", total), *losses.items()):
                    sums[k][name] = sums[k].get(name, 0) + value.detach() * y.numel()
                correct[k] += (out.logits.detach().argmax(1) == y).sum()
        for k, learner in enumerate(learners):
            lr = learner.optimizer.param_groups[0]["lr"]
            learner.scheduler.step()
            if hasattr(learner.objective, "end_epoch"):
                learner.objective.end_epoch(epoch)
            metrics = {f"train_{name}": (value / seen).item() for name, value in sums[k].items()}
            bad = {n: v for n, v in metrics.items() if not math.isfinite(v)}
            if bad:
                raise NonFiniteLossError(
                    f"{learner.name}: non-finite loss in epoch {epoch}: "
                    + ", ".join(f"{n}={v}" for n, v in metrics.items())
                )
            metrics["train_acc"] = correct[k].item() / seen * 100
            metrics["lr"] = lr
            metrics.update(evaluate(learner.model, data))
            metrics["epoch"] = epoch
            learner.history.append(metrics)
            log.info("%s epoch %d/%d: %s", learner.name, epoch, epochs,
                     " ".join(f"{n}={v:.4g}" for n, v in metrics.items() if n != "epoch"))
            if on_epoch_end is not None:
                on_epoch_end(epoch, learner, metrics)
