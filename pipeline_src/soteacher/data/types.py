"""What a loaded data set is: ``Split`` (the tensors of one split) and ``Data`` (its splits, normalisation
and augmentation, and the batch iterators the training loops read)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from soteacher.core.ranks import SINGLE, World
from soteacher.data.augment import random_crop_flip


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, 3, H, W) on the training device
    labels: torch.Tensor  # int64 (N,)
    pstar: torch.Tensor | None  # float (N, C) true label distribution, when known

    def __len__(self) -> int:
        return self.labels.numel()


@dataclass
class Data:
    name: str
    num_classes: int
    train: Split
    test: Split
    mean: torch.Tensor  # (1, 3, 1, 1) on the device, [0, 255] scale
    std: torch.Tensor
    crop_padding: int
    flip: bool
    val: Split | None = None  # held out from training (data.val_size); None: no validation split

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std

    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True,
                      world: World = SINGLE) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Shuffled (images, labels, sample indices); a trailing batch of one is dropped (BatchNorm). With several
        ranks, each gets its shard of every global batch, drawn and augmented as in one process; a trailing batch
        smaller than the ranks is dropped too (some rank's shard would be empty; ``train`` warns)."""
        n = len(self.train)
        order = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < max(2, world.size):
                break
            rows = world.shard(idx.numel())
            images = self.train.images[idx[rows]]
            if augment:
                images = random_crop_flip(images, self.crop_padding, self.flip, generator, rows, idx.numel())
            yield self.normalise(images), self.train.labels[idx[rows]], idx[rows]

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(split), batch_size):
            yield self.normalise(split.images[start:start + batch_size]), split.labels[start:start + batch_size]
