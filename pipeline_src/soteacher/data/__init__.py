"""Data sets: the registry, preparation (verification + manifest) and the in-memory, on-device batch iterator.

Real data sets are read from ``data.root`` in their distributed formats (one module each: cifar100,
tiny_imagenet, fashion_mnist, imagenet). The small ones become uint8 tensors (N, 3, H, W) held on the
training device and augmented there in batches (``augment.py``); ImageNet streams from disk
(``imagenet.StreamingData``) behind the same batch interface.

Modules: ``registry`` (``DATASETS``: each data set's facts), ``types`` (``Data``, ``Split``), ``splits``
(limits and the validation hold-out), ``manifest``, ``preparation`` (``prepare``), ``loading`` (``load``).
This package is their public face. Importing it does not import torch (config checks read ``DATASETS``
in Snakemake's start-up): ``Data``, ``Split``, ``load`` and ``prepare`` are imported when first named.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from soteacher.core.errors import DataError
from soteacher.data.registry import DATASETS, DatasetSpec

if TYPE_CHECKING:
    from soteacher.data.loading import load
    from soteacher.data.preparation import prepare
    from soteacher.data.types import Data, Split

_LAZY = {"Data": "types", "Split": "types", "load": "loading", "prepare": "preparation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASETS", "Data", "DataError", "DatasetSpec", "Split", "load", "prepare"]
