"""Data sets: registry, preparation (verification + manifest) and the in-memory, on-device batch iterator.

Real data sets are read from ``data.root`` in their distributed formats (one module each: cifar100,
tiny_imagenet, fashion_mnist, imagenet). The small ones become uint8 tensors (N, 3, H, W) held on the
training device and augmented there in batches (``augment.py``); ImageNet streams from disk
(``imagenet.StreamingData``) behind the same batch interface.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from soteacher.teacher_side.data import cifar100, fashion_mnist, tiny_imagenet
from soteacher.teacher_side.data.augment import random_crop_flip
from soteacher.teacher_side.data.common import DataError, describe_files, resolve_root, subset_indices

__all__ = ["DATASETS", "Data", "DataError", "DatasetSpec", "Split", "load", "prepare"]


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


def _imagenet_files(root: Path, split: str) -> list[Path]:
    from soteacher.teacher_side.data import imagenet

    return imagenet.files(root, split)


def _imagenet_stream(name: str, root: Path, data_cfg: dict, device: torch.device) -> Data:
    from soteacher.teacher_side.data import imagenet

    spec = DATASETS[name]
    return imagenet.open_stream(name, root, data_cfg, device, spec.num_classes, spec.mean, spec.std,
                                crop_padding=spec.crop_padding, flip=spec.flip)


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(num_classes=None, crop_padding=2, flip=True),
    # CIFAR recipe (CRD / SoTeacher): RandomCrop(32, padding=4) + RandomHorizontalFlip
    "cifar100": DatasetSpec(
        num_classes=100, crop_padding=4, flip=True, load_split=cifar100.load_split, mean=cifar100.MEAN,
        std=cifar100.STD, image_shape=(3, 32, 32), files=cifar100.files, download=cifar100.download,
        where=f"the folder that contains {cifar100.FOLDER}/"),
    # RandomCrop(64, padding=4) + RandomHorizontalFlip; the labelled val split is the test split
    "tiny_imagenet": DatasetSpec(
        num_classes=200, crop_padding=4, flip=True, load_split=tiny_imagenet.load_split, mean=tiny_imagenet.MEAN,
        std=tiny_imagenet.STD, image_shape=(3, 64, 64), files=tiny_imagenet.files,
        where=f"the {tiny_imagenet.FOLDER} folder (wnids.txt, train/, val/) or its parent"),
    # 28×28 grey, replicated to RGB; RandomCrop(28, padding=4) + flip: the background is black, so zero
    # padding looks like background, and a 4-pixel shift is the CIFAR recipe's (1/7 of the side here)
    "fashion_mnist": DatasetSpec(
        num_classes=10, crop_padding=4, flip=True, load_split=fashion_mnist.load_split, mean=fashion_mnist.MEAN,
        std=fashion_mnist.STD, image_shape=(3, 28, 28), files=fashion_mnist.files, download=fashion_mnist.download,
        default_root=fashion_mnist.DEFAULT_ROOT, where="the folder holding the four IDX files"),
    # RandomResizedCrop(224) in loader workers + flip on the device; eval Resize(256) + CenterCrop(224)
    "imagenet": DatasetSpec(
        num_classes=1000, crop_padding=0, flip=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        image_shape=(3, 224, 224), files=_imagenet_files, open_stream=_imagenet_stream,
        where="the folder holding train/<wnid>/ and val/<wnid>/"),
}

TENSORS_FILE = "tensors.pt"
MANIFEST_FILE = "manifest.json"


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def _root(name: str, data_cfg: dict) -> Path:
    spec = DATASETS[name]
    return resolve_root(data_cfg, name, spec.default_root, spec.where)


def _val_size(data_cfg: dict) -> int:
    return int(data_cfg.get("val_size") or 0)


def val_indices(n: int, val_size: int, val_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, kept) indices of ``n`` training samples, both in file order: ``val_size`` drawn with ``val_seed``."""
    if val_size >= n:
        raise DataError(f"data.val_size={val_size} must be smaller than the {n} training samples "
                        "(after data.train_limit): nothing would be left to train on")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(val_seed))
    return order[:val_size].sort().values, order[val_size:].sort().values


def _read_real(name: str, data_cfg: dict, root: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
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
    val_size = _val_size(data_cfg)
    if val_size > 0:
        # held out after train_limit, so a limited run still validates on samples it never trains on
        images, labels = tensors["train_images"], tensors["train_labels"]
        held, kept = val_indices(labels.numel(), val_size, int(data_cfg.get("val_seed") or 0))
        available["val"] = labels.numel()  # val is drawn from the (limited) training split
        tensors["val_images"], tensors["val_labels"] = images[held], labels[held]
        tensors["train_images"], tensors["train_labels"] = images[kept], labels[kept]
    return tensors, available


def _splits(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [split for split in ("train", "test", "val") if f"{split}_labels" in tensors]


def _refuse_streamed_val(name: str, data_cfg: dict) -> None:
    if DATASETS[name].open_stream is not None and _val_size(data_cfg) > 0:
        raise DataError(f"data.val_size is not supported for {name} (streamed): set it to 0")


def prepare(data_cfg: dict, out_dir: Path) -> dict:
    """Generate (synthetic) or verify (real data) a data set and write its manifest.

    Real data is checked as it is read (layout, file sizes, sample and class counts, image sizes, and the
    published md5 sums where there are some); the manifest lists the files read and the sha256 of the
    arrays, which every later ``load`` compares against.
    """
    name = data_cfg["dataset"]
    spec = DATASETS[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"dataset": name}
    if name == "synthetic":
        from soteacher.teacher_side.data.synthetic import generate

        tensors = generate(data_cfg["synthetic"], val_size=_val_size(data_cfg))
        tmp = out_dir / (TENSORS_FILE + ".tmp")
        torch.save(tensors, tmp)
        tmp.replace(out_dir / TENSORS_FILE)
        available = {split: tensors[f"{split}_labels"].numel() for split in _splits(tensors)}
    else:
        root = _root(name, data_cfg)
        manifest.update(root=str(root.resolve()), num_classes=spec.num_classes)
        _refuse_streamed_val(name, data_cfg)  # before a download, not after
        if data_cfg.get("download") and spec.download is not None:
            spec.download(root)
        if spec.open_stream is not None:
            return _prepare_stream(name, data_cfg, root, out_dir, manifest)
        tensors, available = _read_real(name, data_cfg, root)
    manifest["splits"] = {
        split: {
            "samples": int(tensors[f"{split}_labels"].numel()),
            "available": int(available[split]),
            "image_shape": list(tensors[f"{split}_images"].shape[1:]),
            "classes": int(tensors[f"{split}_labels"].max()) + 1,
            "images_sha256": _digest(tensors[f"{split}_images"]),
            "labels_sha256": _digest(tensors[f"{split}_labels"]),
            # real data: val is read from the training files
            **({"files": describe_files(spec.files(root, "test" if split == "test" else "train"), root)}
               if spec.files else {}),
        }
        for split in _splits(tensors)
    }
    if "val" in manifest["splits"] and name != "synthetic":
        manifest["splits"]["val"].update(drawn_from="train", val_seed=int(data_cfg.get("val_seed") or 0))
    if name == "synthetic":
        from soteacher.teacher_side.data.synthetic import bayes_reference

        # p*(x) is known: the Bayes-optimal classifier's scores per split, to read the nets' accuracies against
        refs = {split: bayes_reference(tensors[f"{split}_pstar"], tensors[f"{split}_labels"])
                for split in _splits(tensors)}
        manifest["reference"] = {key: {split: ref[key] for split, ref in refs.items()}
                                 for key in ("bayes_acc", "expected_max_pstar")}
    _write_manifest(out_dir, manifest)
    return manifest


def _prepare_stream(name: str, data_cfg: dict, root: Path, out_dir: Path, manifest: dict) -> dict:
    data = DATASETS[name].open_stream(name, root, data_cfg, torch.device("cpu"))
    manifest["splits"] = {}
    for split in ("train", "test"):
        s = getattr(data, split)
        manifest["splits"][split] = {
            "samples": len(s),
            "image_shape": list(data.image_shape),
            "classes": int(s.labels.max()) + 1,
            "labels_sha256": _digest(s.labels),
            "files": describe_files([Path(p) for p in s.paths], root),
        }
    _write_manifest(out_dir, manifest)
    return manifest


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out_dir / MANIFEST_FILE)


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
        have = tensors["val_labels"].numel() if "val_labels" in tensors else 0
        if have != _val_size(data_cfg):
            raise DataError(f"prepared synthetic data at {path} has {have} validation samples, data.val_size is "
                            f"{_val_size(data_cfg)}; run `python -m soteacher prepare-data` again")
    elif spec.open_stream is not None:
        _refuse_streamed_val(name, data_cfg)
        return spec.open_stream(name, _root(name, data_cfg), data_cfg, device)
    else:
        tensors, _ = _read_real(name, data_cfg, _root(name, data_cfg))
        _check_manifest(data_dir / MANIFEST_FILE, tensors)
    splits = {
        split: Split(
            tensors[f"{split}_images"].to(device),
            tensors[f"{split}_labels"].to(device),
            tensors[f"{split}_pstar"].to(device) if f"{split}_pstar" in tensors else None,
        )
        for split in _splits(tensors)
    }
    if spec.mean is None:  # from the training split only: val and test stay unseen
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
        val=splits.get("val"),
    )


def _check_manifest(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The arrays must be the ones ``prepare`` verified (when it has run): the data must not change under a study."""
    if not path.is_file():
        return
    splits = json.loads(path.read_text()).get("splits", {})
    for split, info in splits.items():
        for kind in ("images", "labels"):
            want, key = info.get(f"{kind}_sha256"), f"{split}_{kind}"
            if want is not None and key in tensors and _digest(tensors[key]) != want:
                raise DataError(f"the {split} {kind} read now differ from those recorded in {path} "
                                f"(sha256 {want}): the data or data.*_limit changed; run prepare-data again")
