"""CIFAR-100 in torchvision's python-pickle layout: ``<root>/cifar-100-python/{train,test,meta}``.

Each split file is a pickled dict with ``b"data"`` (uint8 N×3072: the R, G and B 32×32 planes) and
``b"fine_labels"``; ``meta`` holds ``b"fine_label_names"``. The md5 sums are the ones torchvision checks
(the archive's members). Pickles are read with an unpickler that only rebuilds numpy arrays, so a doctored
file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from soteacher.data.common import DataError, check_md5, md5_bytes
from soteacher.data.registry import DATASETS, published_samples

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MEAN, STD = DATASETS["cifar100"].mean, DATASETS["cifar100"].std


@dataclass(frozen=True)
class Expect:
    num_classes: int | None = None  # None: not checked
    samples: dict | None = None  # split -> count; None: any
    md5: dict | None = None  # file name -> md5; None: not checked


PUBLISHED = Expect(
    num_classes=DATASETS["cifar100"].num_classes,
    samples=published_samples("cifar100"),
    md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
         "meta": "7973b15100ade9c7d40fb424638fde48"},
)

HOW_TO_GET = (f"set data.download: true (torchvision fetches and checks {URL}), or download and unpack it "
              f"yourself so that <data.root>/{FOLDER}/ holds train, test and meta")


class _ArrayUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def _unpickle(path: Path, raw: bytes) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a broken file
        raise DataError(f"{path}: not a readable CIFAR-100 pickle ({type(err).__name__}: {err}; "
                        f"file has {len(raw)} bytes)") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def files(root: Path, split: str) -> list[Path]:
    return [_path(root, split), _path(root, "meta")]


def _path(root: Path, name: str) -> Path:
    path = Path(root) / FOLDER / name
    if path.is_file():
        return path
    hint = ""
    loose = [Path(root) / n for n in ("train", "test", "meta") if (Path(root) / n).is_file()]
    if loose:
        hint = f" (found {loose[0]}: data.root must be the folder that contains {FOLDER}/)"
    elif (Path(root) / ARCHIVE).is_file():
        hint = f" (found the archive {Path(root) / ARCHIVE}: unpack it there, or set data.download: true)"
    raise DataError(f"CIFAR-100 file not found: {path}{hint}; {HOW_TO_GET}")


def _read(root: Path, name: str) -> tuple[Path, dict, str]:
    path = _path(root, name)
    raw = path.read_bytes()
    return path, _unpickle(path, raw), md5_bytes(raw)


def load_split(root: Path, split: str, expect: Expect = PUBLISHED) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 fine labels of ``split`` (train or test)."""
    meta_path, meta, meta_md5 = _read(root, "meta")
    names = meta.get("fine_label_names")
    if names is None:
        raise DataError(f"{meta_path}: no 'fine_label_names' entry (keys: {sorted(meta)})")
    if expect.num_classes is not None and len(names) != expect.num_classes:
        raise DataError(f"{meta_path}: expected {expect.num_classes} fine label names, file has {len(names)}")
    path, obj, split_md5 = _read(root, split)
    if "data" not in obj or "fine_labels" not in obj:
        raise DataError(f"{path}: expected keys b'data' and b'fine_labels', file has {sorted(obj)}")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["fine_labels"])
    want = expect.samples.get(split) if expect.samples else None
    n = want if want is not None else len(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != n:
        raise DataError(f"{path}: expected {n} images of 3x32x32 uint8 (data {n}x3072), "
                        f"file has data {data.dtype} {'x'.join(map(str, data.shape))}")
    if labels.shape != (n,):
        raise DataError(f"{path}: expected {n} fine labels, file has {labels.size}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"{path}: fine labels must lie in [0, {len(names)}), file has [{labels.min()}, {labels.max()}]")
    if expect.md5 is not None:  # after the layout checks, whose messages say more about a wrong file
        check_md5(meta_path, meta_md5, expect.md5.get("meta"))
        check_md5(path, split_md5, expect.md5.get(split))
    images = torch.from_numpy(data.reshape(n, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def download(root: Path) -> None:
    """Fetch with torchvision (it checks the archive's md5 and unpacks it under ``root``)."""
    if all((Path(root) / FOLDER / name).is_file() for name in ("train", "test", "meta")):
        return
    from torchvision.datasets import CIFAR100

    try:
        CIFAR100(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - no network, bad mirror, disk full: all end the same way
        raise DataError(f"could not download CIFAR-100 into {root} ({type(err).__name__}: {err}); without "
                        f"internet, copy {ARCHIVE} (md5 eb9058c3a382ffc7106e4002c42a8d85) from {URL} to {root}/ "
                        f"and unpack it there so that {Path(root) / FOLDER}/ holds train, test and meta") from None
