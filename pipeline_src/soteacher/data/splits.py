"""Reading the splits a config asks for, shared by ``prepare`` and ``load``: where the raw data lives, the
data.{train,test}_limit subsets and the validation split held out of train (data.val_size, data.val_seed)."""

from __future__ import annotations

from pathlib import Path

import torch

from soteacher.data.common import DataError, resolve_root, subset_indices
from soteacher.data.registry import DATASETS


def raw_root(name: str, data_cfg: dict) -> Path:
    """data.root, or the data set's default; an error says what it must hold."""
    spec = DATASETS[name]
    return resolve_root(data_cfg, name, spec.default_root, spec.where)


def val_count(data_cfg: dict) -> int:
    return int(data_cfg.get("val_size") or 0)


def val_indices(n: int, val_size: int, val_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, kept) indices of ``n`` training samples, both in file order: ``val_size`` drawn with ``val_seed``."""
    if val_size >= n:
        raise DataError(f"data.val_size={val_size} must be smaller than the {n} training samples "
                        "(after data.train_limit): nothing would be left to train on")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(val_seed))
    return order[:val_size].sort().values, order[val_size:].sort().values


def read_real(name: str, data_cfg: dict, root: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Verified uint8 images and labels of the splits, cut to data.{train,test}_limit, with data.val_size
    samples of train held out as val; also the sizes each split was drawn from."""
    spec = DATASETS[name]
    tensors, available = {}, {}
    for split in ("train", "test"):
        images, labels = spec.load_split(root, split)
        available[split] = labels.numel()
        keep = subset_indices(labels.numel(), data_cfg.get(f"{split}_limit"))
        if keep is not None:
            images, labels = images[keep], labels[keep]
        tensors[f"{split}_images"], tensors[f"{split}_labels"] = images, labels
    n_val = val_count(data_cfg)
    if n_val > 0:
        # held out after train_limit, so a limited run still validates on samples it never trains on
        images, labels = tensors["train_images"], tensors["train_labels"]
        held, kept = val_indices(labels.numel(), n_val, int(data_cfg.get("val_seed") or 0))
        available["val"] = labels.numel()  # val is drawn from the (limited) training split
        tensors["val_images"], tensors["val_labels"] = images[held], labels[held]
        tensors["train_images"], tensors["train_labels"] = images[kept], labels[kept]
    return tensors, available


def split_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The splits present in ``tensors``, in the order train, test, val."""
    return [split for split in ("train", "test", "val") if f"{split}_labels" in tensors]


def refuse_streamed_val(name: str, data_cfg: dict) -> None:
    if DATASETS[name].open_stream is not None and val_count(data_cfg) > 0:
        raise DataError(f"data.val_size is not supported for {name} (streamed): set it to 0")
