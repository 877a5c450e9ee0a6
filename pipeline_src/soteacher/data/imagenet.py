"""ImageNet (ILSVRC-2012) from class folders, streamed: ``<root>/train/<wnid>/*.JPEG``, ``<root>/val/<wnid>/*.JPEG``.

1.28 M images do not fit in memory as uint8 tensors, so :class:`StreamingData` decodes them in DataLoader
worker processes (pinned memory when training on a GPU) and yields the same (images, labels, sample
indices) batches as the in-memory :class:`~soteacher.data.Data`, so ``train.train`` and ``train.evaluate``
use it unchanged:

* the epoch order is ``torch.randperm(n, generator)``, as in memory;
* train: RandomResizedCrop(224) (scale 0.08-1, ratio 3/4-4/3) per image in a worker, its parameters drawn
  from a per-sample seed (one base seed per epoch from the training generator, plus the sample index),
  so results do not depend on the number of workers; then flip (and crop-with-padding, when configured) on
  the device with :func:`~soteacher.data.augment.random_crop_flip`, as in memory;
* eval: Resize(256) + CenterCrop(224).

With ``random_resized_crop=False`` the train images are decoded like eval images and all augmentation
happens on the device, which makes the batches identical to the in-memory path on the same images.
The number of workers comes from ``SOTEACHER_DATA_WORKERS`` (default: min(8, CPUs)); it never changes results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from soteacher.core.ranks import SINGLE, World
from soteacher.data.augment import random_crop_flip
from soteacher.data.common import DataError, subset_indices
from soteacher.data.registry import DATASETS, published_samples
from soteacher.data.types import Data

MEAN, STD = DATASETS["imagenet"].mean, DATASETS["imagenet"].std
FOLDERS = {"train": "train", "test": "val"}
EXTENSIONS = (".jpeg", ".jpg", ".png")
HOW_TO_GET = ("ImageNet needs a (free, registered) download from https://image-net.org: unpack ILSVRC2012_img_train "
              "into <data.root>/train/<wnid>/ and sort ILSVRC2012_img_val into <data.root>/val/<wnid>/ "
              "(e.g. with the widely used valprep.sh)")


@dataclass(frozen=True)
class Expect:
    num_classes: int | None = None  # None: not checked
    samples: dict | None = None  # split -> count; None: any


PUBLISHED = Expect(num_classes=DATASETS["imagenet"].num_classes, samples=published_samples("imagenet"))


def _classes(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def samples(root: Path, split: str, expect: Expect = PUBLISHED) -> list[tuple[str, int]]:
    """(image path, class index) of ``split``; classes are the sorted train folder names (ImageFolder order)."""
    root = Path(root)
    folder = root / FOLDERS[split]
    if not folder.is_dir():
        hint = ""
        if (root / "ILSVRC" / "Data" / "CLS-LOC").is_dir():
            hint = f" (found the Kaggle layout: set data.root to {root / 'ILSVRC' / 'Data' / 'CLS-LOC'})"
        raise DataError(f"ImageNet folder not found: {folder}{hint}; {HOW_TO_GET}")
    train_dir = root / FOLDERS["train"]
    classes = _classes(train_dir) if train_dir.is_dir() else _classes(folder)
    if expect.num_classes is not None and len(classes) != expect.num_classes:
        raise DataError(f"{train_dir}: expected {expect.num_classes} class folders, found {len(classes)}")
    here = _classes(folder)
    if here != classes:
        loose = sum(1 for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        detail = (f"it holds {loose} loose images: sort them into class folders" if loose and not here
                  else f"missing {sorted(set(classes) - set(here))[:3]}, extra {sorted(set(here) - set(classes))[:3]}")
        raise DataError(f"{folder}: expected the same {len(classes)} class folders as {train_dir} ({detail}); "
                        f"{HOW_TO_GET}")
    out: list[tuple[str, int]] = []
    for label, wnid in enumerate(classes):
        found = sorted(e.path for e in os.scandir(folder / wnid)
                       if e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS)
        if not found:
            raise DataError(f"{folder / wnid}: expected images (*.JPEG) of class {wnid}, found none")
        out += [(p, label) for p in found]
    want = expect.samples.get(split) if expect.samples else None
    if want is not None and len(out) != want:
        raise DataError(f"{folder}: expected {want} images in {len(classes)} class folders, found {len(out)}")
    return out


def files(root: Path, split: str, expect: Expect = PUBLISHED) -> list[Path]:
    return [Path(p) for p, _ in samples(root, split, expect)]


def resized_crop_box(width: int, height: int, rng: np.random.Generator, scale=(0.08, 1.0),
                     ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) exactly as torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height  # fallback: the whole image, cropped to the allowed ratio range
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class DecodedImages(torch.utils.data.Dataset):
    """Decode one image in a worker: item ``i`` (eval transform) or ``(i, base_seed)`` (RandomResizedCrop)."""

    def __init__(self, paths: Sequence[str], size: int, resize: int):
        self.paths, self.size, self.resize = list(paths), size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        index, seed = item if isinstance(item, tuple) else (item, None)
        path = self.paths[index]
        try:
            with Image.open(path) as raw:
                img = raw.convert("RGB")
        except OSError as err:
            raise DataError(f"{path}: not a readable image ({err})") from None
        if seed is None:
            img = TF.center_crop(TF.resize(img, self.resize, InterpolationMode.BILINEAR, antialias=True), self.size)
        else:
            top, left, h, w = resized_crop_box(*img.size, np.random.default_rng([seed, index]))
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], InterpolationMode.BILINEAR,
                                  antialias=True)
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1), index


class FolderImages:
    """Stands in for an in-memory split's uint8 image tensor: its ``shape`` and ``device``, no pixels."""

    def __init__(self, n: int, shape: tuple[int, int, int], device: torch.device):
        self.shape = torch.Size((n, *shape))
        self.device = torch.device(device)

    def __len__(self) -> int:
        return self.shape[0]


@dataclass
class StreamSplit:
    paths: list[str]
    images: FolderImages
    labels: torch.Tensor  # int64 (N,) on the device, in file order
    pstar: None = None

    def __len__(self) -> int:
        return len(self.paths)


def default_workers() -> int:
    return int(os.environ.get("SOTEACHER_DATA_WORKERS", min(8, len(os.sched_getaffinity(0)))))


@dataclass
class StreamingData(Data):
    """:class:`Data` whose splits are image files decoded on the fly (see the module docstring)."""

    size: int = 224
    resize: int = 256
    random_resized_crop: bool = True
    workers: int = 0
    prefetch: int = 4

    def _batches(self, split: StreamSplit, batches: list[list]) -> Iterator[tuple[torch.Tensor, ...]]:
        device = split.labels.device
        loader = torch.utils.data.DataLoader(
            DecodedImages(split.paths, self.size, self.resize), batch_sampler=batches,
            num_workers=self.workers, pin_memory=device.type == "cuda",
            prefetch_factor=self.prefetch if self.workers else None)
        for images, idx in loader:
            yield images.to(device, non_blocking=True), idx.to(device, non_blocking=True)

    def train_batches(self, batch_size: int, generator: torch.Generator, augment: bool = True,
                      world: World = SINGLE) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Shuffled (images, labels, sample indices); a trailing batch of one is dropped (BatchNorm). With several
        ranks, each decodes only its shard of every global batch."""
        order = torch.randperm(len(self.train), generator=generator, device=generator.device).tolist()
        items: list = order
        if augment and self.random_resized_crop:
            base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
            items = [(i, base) for i in order]
        batches = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
        if batches and len(batches[-1]) < max(2, world.size):  # as Data.train_batches
            batches.pop()
        sizes = [len(b) for b in batches]
        shards = [b[world.shard(len(b))] for b in batches]
        for (images, idx), size in zip(self._batches(self.train, shards), sizes):
            if augment:
                images = random_crop_flip(images, self.crop_padding, self.flip, generator, world.shard(size), size)
            yield self.normalise(images), self.train.labels[idx], idx

    def eval_batches(self, split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        positions = list(range(len(split)))
        batches = [positions[start:start + batch_size] for start in range(0, len(split), batch_size)]
        for images, idx in self._batches(split, batches):
            yield self.normalise(images), split.labels[idx]


def open_stream(name: str, root: Path, data_cfg: dict, device: torch.device, num_classes: int,
                mean: Sequence[float], std: Sequence[float], crop_padding: int = 0, flip: bool = True,
                size: int = 224, resize: int = 256, random_resized_crop: bool = True,
                expect: Expect = PUBLISHED, workers: int | None = None) -> StreamingData:
    """A :class:`StreamingData` over the class folders under ``root`` (limits from ``data_cfg``)."""
    splits = {}
    for split in ("train", "test"):
        found = samples(root, split, expect)
        keep = subset_indices(len(found), data_cfg.get(f"{split}_limit"))
        if keep is not None:
            found = [found[i] for i in keep.tolist()]
        labels = torch.tensor([label for _, label in found], dtype=torch.int64, device=device)
        splits[split] = StreamSplit([p for p, _ in found], FolderImages(len(found), (3, size, size), device), labels)
    return StreamingData(
        name=name, num_classes=num_classes, train=splits["train"], test=splits["test"],  # type: ignore[arg-type]
        mean=torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
        std=torch.tensor(std, device=device).view(1, 3, 1, 1) * 255,
        crop_padding=crop_padding, flip=flip, size=size, resize=resize, random_resized_crop=random_resized_crop,
        workers=default_workers() if workers is None else workers)
