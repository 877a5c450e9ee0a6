"""Fashion-MNIST from its IDX files (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-*``).

IDX: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each dimension as a
big-endian uint32, then the values row-major. The files are looked for in ``data.root`` and in torchvision's
``<root>/FashionMNIST/raw``; Debian's ``dataset-fashion-mnist`` package installs them (gzipped) under
/usr/share/datasets/fashion-mnist, the default root. The md5 sums are those of the *decompressed* files,
which do not depend on how they were gzipped (Debian's .gz differ from the publisher's, their content does not).

Images are 28×28 grey; the channel is replicated to 3 so the RGB-stem CIFAR networks (adaptive pooling)
take them unchanged.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from soteacher.data.common import DataError, check_md5, md5_bytes
from soteacher.data.registry import DATASETS, published_samples

DEFAULT_ROOT = DATASETS["fashion_mnist"].default_root
MEAN, STD = DATASETS["fashion_mnist"].mean, DATASETS["fashion_mnist"].std
PREFIX = {"train": "train", "test": "t10k"}
HOW_TO_GET = ("install Debian's package (apt-get install dataset-fashion-mnist: files in "
              f"{DEFAULT_ROOT}), set data.download: true (torchvision fetches them into "
              "<data.root>/FashionMNIST/raw), or copy the four files from "
              "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into data.root")


@dataclass(frozen=True)
class Expect:
    num_classes: int | None = None  # None: not checked
    samples: dict | None = None  # split -> count
    md5: dict | None = None  # decompressed file name -> md5


PUBLISHED = Expect(
    num_classes=DATASETS["fashion_mnist"].num_classes,
    samples=published_samples("fashion_mnist"),
    md5={"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
         "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
         "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
         "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
)


def _find(root: Path, name: str) -> Path:
    tried = []
    for folder in (Path(root), Path(root) / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
    raise DataError(f"Fashion-MNIST file {name} not found; looked for {', '.join(tried)}; {HOW_TO_GET}")


def files(root: Path, split: str) -> list[Path]:
    return [_find(root, f"{PREFIX[split]}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a complete gzip file ({err}; file has {path.stat().st_size} bytes)") from None


def read_idx(path: Path, shape: tuple[int | None, ...], what: str) -> tuple[np.ndarray, str]:
    """An unsigned-byte IDX array whose dimensions must equal ``shape`` (None: any size), and its md5."""
    raw = _read_bytes(path)
    gz = " decompressed" if path.suffix == ".gz" else ""
    want = " of ".join(filter(None, [f"{shape[0] if shape[0] is not None else 'N'} {what}",
                                     "x".join(map(str, shape[1:]))]))
    if len(raw) < 4:
        raise DataError(f"{path}: expected {want}, file has {len(raw)}{gz} bytes")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim != len(shape):
        raise DataError(f"{path}: expected an unsigned-byte IDX file with {len(shape)} dimensions (magic "
                        f"0x0000080{len(shape)}), file starts with 0x{raw[:4].hex()}")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: expected {want}, file has {len(raw)}{gz} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    needed = 4 + 4 * ndim + int(np.prod(dims))
    if any(want_d is not None and d != want_d for d, want_d in zip(dims, shape)):
        raise DataError(f"{path}: expected {want}, file has {len(raw)}{gz} bytes "
                        f"(its header says {'x'.join(map(str, dims))})")
    if len(raw) != needed:
        raise DataError(f"{path}: expected {want}, file has {len(raw)}{gz} bytes "
                        f"(the header's {'x'.join(map(str, dims))} needs {needed})")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims), md5_bytes(raw)


def load_split(root: Path, split: str, expect: Expect = PUBLISHED) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 28, 28), the grey channel replicated, and int64 labels."""
    image_path, label_path = files(root, split)
    n = expect.samples.get(split) if expect.samples else None
    images, images_md5 = read_idx(image_path, (n, 28, 28), "images")
    labels, labels_md5 = read_idx(label_path, (n,), "labels")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{label_path}: expected {images.shape[0]} labels (as many as {image_path.name} has "
                        f"images), file has {labels.shape[0]}")
    if expect.num_classes is not None and labels.size and labels.max() >= expect.num_classes:
        raise DataError(f"{label_path}: labels must lie in [0, {expect.num_classes}), file has up to {labels.max()}")
    if expect.md5 is not None:
        for path, digest in ((image_path, images_md5), (label_path, labels_md5)):
            name = path.name.removesuffix(".gz")
            check_md5(path, digest, expect.md5.get(name), " (decompressed)" if path.suffix == ".gz" else "")
    grey = torch.from_numpy(images.copy())[:, None]
    return grey.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(labels.astype(np.int64))


def download(root: Path) -> None:
    try:
        files(root, "train"), files(root, "test")
        return
    except DataError:
        pass
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"could not download Fashion-MNIST into {root} ({type(err).__name__}: {err}); "
                        f"{HOW_TO_GET}") from None
