"""The data sets: one ``DatasetSpec`` per name, the one place for each data set's facts.

Importable without torch (config checks fill the schema's ``data.dataset`` choices from ``DATASETS`` and the
planner reads ``full_size``): the readers (cifar100.py, …) are imported when first called, and they take
their published counts and normalisation constants from their entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from soteacher.data.types import Data


@dataclass(frozen=True)
class DatasetSpec:
    num_classes: int | None  # None: read from the data (synthetic)
    crop_padding: int  # RandomCrop(H, padding) on the device; 0: none
    flip: bool
    # (root, split) -> (uint8 images N×3×H×W, int64 labels), verified; None for generated or streamed data
    load_split: Callable[[Path, str], tuple[torch.Tensor, torch.Tensor]] | None = None
    # mean / std per channel on the [0, 1] scale; None: computed from the training split
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    image_shape: tuple[int, int, int] | None = None  # network input (C, H, W); None: from the config (synthetic)
    files: Callable[[Path, str], list[Path]] | None = None  # (root, split) -> files read, for the manifest
    download: Callable[[Path], None] | None = None  # fetch into root (data.download: true)
    default_root: str | None = None  # used when data.root is null
    where: str = ""  # what data.root must hold, for error messages
    # (name, root, data_cfg, device) -> Data that streams from disk (ImageNet); None: held in memory
    open_stream: Callable[..., Data] | None = None
    # (train, test) samples of the full published data set (the readers check them; the planner counts
    # them); None: from the config (synthetic)
    full_size: tuple[int, int] | None = None
    pstar: bool = False  # the data carry p*(x) for every sample (what the oracle student distils from)


def _reader(module: str, attr: str) -> Callable[..., Any]:
    """``module.attr`` of this package, imported on the first call (the readers import torch)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(import_module(f"{__package__}.{module}"), attr)(*args, **kwargs)

    call.__qualname__ = f"{module}.{attr}"
    return call


def _imagenet_stream(name: str, root: Path, data_cfg: dict, device: torch.device) -> Data:
    spec = DATASETS[name]
    return _reader("imagenet", "open_stream")(name, root, data_cfg, device, spec.num_classes, spec.mean, spec.std,
                                              crop_padding=spec.crop_padding, flip=spec.flip)


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(num_classes=None, crop_padding=2, flip=True, pstar=True),
    # CIFAR recipe (CRD / SoTeacher): RandomCrop(32, padding=4) + RandomHorizontalFlip; mean / std: the CRD /
    # SoTeacher code constants
    "cifar100": DatasetSpec(
        num_classes=100, crop_padding=4, flip=True, load_split=_reader("cifar100", "load_split"),
        mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761), image_shape=(3, 32, 32),
        files=_reader("cifar100", "files"), download=_reader("cifar100", "download"),
        where="the folder that contains cifar-100-python/", full_size=(50_000, 10_000)),
    # RandomCrop(64, padding=4) + RandomHorizontalFlip; the labelled val split is the test split
    "tiny_imagenet": DatasetSpec(
        num_classes=200, crop_padding=4, flip=True, load_split=_reader("tiny_imagenet", "load_split"),
        mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262), image_shape=(3, 64, 64),
        files=_reader("tiny_imagenet", "files"),
        where="the tiny-imagenet-200 folder (wnids.txt, train/, val/) or its parent", full_size=(100_000, 10_000)),
    # 28×28 grey, replicated to RGB; RandomCrop(28, padding=4) + flip: the background is black, so zero
    # padding looks like background, and a 4-pixel shift is the CIFAR recipe's (1/7 of the side here);
    # mean / std: the train split's pixel mean / std on [0, 1], replicated to 3 channels
    "fashion_mnist": DatasetSpec(
        num_classes=10, crop_padding=4, flip=True, load_split=_reader("fashion_mnist", "load_split"),
        mean=(0.2860, 0.2860, 0.2860), std=(0.3530, 0.3530, 0.3530), image_shape=(3, 28, 28),
        files=_reader("fashion_mnist", "files"), download=_reader("fashion_mnist", "download"),
        default_root="/usr/share/datasets/fashion-mnist", where="the folder holding the four IDX files",
        full_size=(60_000, 10_000)),
    # RandomResizedCrop(224) in loader workers + flip on the device; eval Resize(256) + CenterCrop(224)
    "imagenet": DatasetSpec(
        num_classes=1000, crop_padding=0, flip=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        image_shape=(3, 224, 224), files=_reader("imagenet", "files"), open_stream=_imagenet_stream,
        where="the folder holding train/<wnid>/ and val/<wnid>/", full_size=(1_281_167, 50_000)),
}


def published_samples(name: str) -> dict[str, int]:
    """{"train": n, "test": n} of the full data set, for the readers' checks."""
    train, test = DATASETS[name].full_size  # type: ignore[misc]
    return {"train": train, "test": test}
