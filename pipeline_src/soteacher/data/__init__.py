"""Data sets: registry, preparation (manifest) and the in-memory, on-device batch iterator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from soteacher.data.augment import random_crop_flip


class DataError(RuntimeError):
    """A data set is missing, partial or malformed; the message says where and what was expected."""


@dataclass(frozen=True)
class DatasetSpec:
    num_classes: int | None  # None: read from the data (synthetic)
    crop_padding: int
    flip: bool
    # (root, split) -> (uint8 images N×3×H×W, int64 labels); None for generated data
    load_split: Callable[[Path, str], tuple[torch.Tensor, torch.Tensor]] | None = None
    # mean / std per channel on the [0, 1] scale; None: computed from the training split
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(num_classes=None, crop_padding=2, flip=True),
}

TENSORS_FILE = "tensors.pt"
MANIFEST_FILE = "manifest.json"


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def prepare(data_cfg: dict, out_dir: Path) -> dict:
    """Materialise or verify a data set and write its manifest (and, for synthetic data, its tensors)."""
    name = data_cfg["dataset"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if name == "synthetic":
        from soteacher.data.synthetic import generate

        tensors = generate(data_cfg["synthetic"])
        tmp = out_dir / (TENSORS_FILE + ".tmp")
        torch.save(tensors, tmp)
        tmp.replace(out_dir / TENSORS_FILE)
    else:
        spec = DATASETS[name]
        root = Path(data_cfg["root"] or "")
        tensors = {}
        for split in ("train", "test"):
            images, labels = spec.load_split(root, split)
            tensors[f"{split}_images"], tensors[f"{split}_labels"] = images, labels
    manifest = {
        "dataset": name,
        "splits": {
            split: {
                "samples": int(tensors[f"{split}_labels"].numel()),
                "image_shape": list(tensors[f"{split}_images"].shape[1:]),
                "classes": int(tensors[f"{split}_labels"].max()) + 1,
                "images_sha256": _digest(tensors[f"{split}_images"]),
                "labels_sha256": _digest(tensors[f"{split}_labels"]),
            }
            for split in ("train", "test")
        },
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std

    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Shuffled (images, labels, sample indices); a trailing batch of one is dropped (BatchNorm)."""
        n = len(self.train)
        order = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < 2:
                break
            images = self.train.images[idx]
            if augment:
                images = random_crop_flip(images, self.crop_padding, self.flip, generator)
            yield self.normalise(images), self.train.labels[idx], idx

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(split), batch_size):
            yield self.normalise(split.images[start:start + batch_size]), split.labels[start:start + batch_size]


def load(data_cfg: dict, data_dir: Path, device: torch.device) -> Data:
    """Load a prepared data set onto ``device``; errors say where the data was looked for."""
    name = data_cfg["dataset"]
    spec = DATASETS[name]
    if name == "synthetic":
        path = data_dir / TENSORS_FILE
        if not path.is_file():
            raise DataError(f"prepared synthetic data not found at {path}; run `python -m soteacher prepare-data`")
        tensors = torch.load(path, weights_only=True)
    else:
        tensors, root = {}, Path(data_cfg["root"] or "")
        for split in ("train", "test"):
            tensors[f"{split}_images"], tensors[f"{split}_labels"] = spec.load_split(root, split)
    splits = {
        split: Split(
            tensors[f"{split}_images"].to(device),
            tensors[f"{split}_labels"].to(device),
            tensors[f"{split}_pstar"].to(device) if f"{split}_pstar" in tensors else None,
        )
        for split in ("train", "test")
    }
    if spec.mean is None:
        train = splits["train"].images.float() / 255
        mean = tuple(train.mean(dim=(0, 2, 3)).tolist())
        std = tuple(train.std(dim=(0, 2, 3)).tolist())
    else:
        mean, std = spec.mean, spec.std
    num_classes = spec.num_classes or int(tensors["train_pstar"].shape[1])
    return Data(
        name=name,
        num_classes=num_classes,
        train=splits["train"],
        test=splits["test"],
        mean=torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
        std=torch.tensor(std, device=device).view(1, 3, 1, 1) * 255,
        crop_padding=spec.crop_padding,
        flip=spec.flip,
    )
