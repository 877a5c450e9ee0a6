"""Evaluating a model after an epoch: its logits on a split (``predict``) and the per-split measures the loop
records (``evaluate``: accuracy, loss, TV and KL to p* where it is known)."""

from __future__ import annotations

import torch
from torch import nn

from soteacher.data import Data
from soteacher.training.metrics import accuracy, kl_from, tv_to


@torch.no_grad()
def predict(model: nn.Module, data: Data, split: str, batch_size: int = 500) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) on a data split, without augmentation."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x) for x, _ in data.eval_batches(getattr(data, split), batch_size)])
    model.train(was_training)
    return logits


def evaluate(model: nn.Module, data: Data, train_split: bool = True) -> dict[str, float]:
    """Accuracy (%) and loss on the test and validation splits; where p*(x) is known, the mean TV and
    KL(p* ‖ softmax) to it per split. ``train_split``: also evaluate the training split (without augmentation,
    as for test: ``train_eval_acc``, and its distance to p*), one more forward pass over it when p* is known."""
    metrics: dict[str, float] = {}
    splits = [("test", data.test), ("val", data.val)]
    if train_split and data.train.pstar is not None:
        splits.append(("train", data.train))
    for name, split in splits:
        if split is None:
            continue
        logits = predict(model, data, name)
        if name == "train":
            metrics["train_eval_acc"] = accuracy(logits, split.labels)
        else:
            metrics[f"{name}_acc"] = accuracy(logits, split.labels)
            metrics[f"{name}_loss"] = nn.functional.cross_entropy(logits, split.labels).item()
        if split.pstar is not None:
            metrics[f"tv_pstar_{name}"] = tv_to(logits, split.pstar)
            metrics[f"kl_pstar_{name}"] = kl_from(split.pstar, logits)
    return metrics
