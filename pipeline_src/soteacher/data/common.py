"""Helpers shared by the real-data loaders: the error type, checksums, file summaries, subsets, decoding."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from soteacher.core.errors import DataError


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_md5(path: Path, actual: str, expected: str | None, what: str = "") -> None:
    if expected is not None and actual != expected:
        raise DataError(f"{path}: md5{what} {actual} differs from the published {expected} "
                        f"(file has {path.stat().st_size} bytes): the copy is truncated or altered; fetch it again")


def size_of(path: Path) -> int:
    return path.stat().st_size


def describe_files(paths: Sequence[Path], root: Path, max_listed: int = 16) -> dict:
    """Manifest entry for the files a split was read from: each file when few, else count + listing digest."""
    root = Path(root)
    entries = sorted((os.path.relpath(p, root), size_of(p)) for p in paths)
    listing = "".join(f"{name}\t{size}\n" for name, size in entries)
    out: dict = {
        "count": len(entries),
        "bytes": sum(size for _, size in entries),
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest()[:16],
    }
    if len(entries) <= max_listed:
        out["files"] = [{"name": name, "bytes": size} for name, size in entries]
    return out


def subset_indices(n: int, limit: int | None) -> torch.Tensor | None:
    """A fixed random subset (seed 0, kept in file order) of ``limit`` of ``n`` samples; None: all of them."""
    if limit is None or limit >= n:
        return None
    g = torch.Generator().manual_seed(0)
    return torch.randperm(n, generator=g)[:limit].sort().values


def resolve_root(data_cfg: dict, name: str, default: str | None, where: str) -> Path:
    root = data_cfg.get("root") or default
    if not root:
        raise DataError(f"data.root is not set for data set {name!r}: set it to {where}")
    return Path(root).expanduser()


def decode_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file to uint8 H×W×3 (grey and CMYK images are converted); a broken file raises DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != size:
                raise DataError(f"{path}: expected a {size[0]}x{size[1]} image, file has {img.size[0]}x{img.size[1]}")
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image ({err}; file has {size_of(path)} bytes)") from None


def decode_many(paths: Sequence[Path], size: tuple[int, int], threads: int | None = None,
                decode: Callable[[Path, tuple[int, int]], np.ndarray] = decode_rgb) -> torch.Tensor:
    """Decode equally sized images into one uint8 (N, 3, H, W) tensor, several files at a time."""
    w, h = size
    out = np.empty((len(paths), h, w, 3), dtype=np.uint8)
    threads = threads or min(8, len(os.sched_getaffinity(0)))

    def one(i: int) -> None:
        out[i] = decode(paths[i], size)

    if threads > 1 and len(paths) > 64:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(paths)), chunksize=256))
    else:
        for i in range(len(paths)):
            one(i)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
