"""The model zoo: ``build_model(name, num_classes)`` for every architecture of ``zoo.ZOO``.

Importing this package does not import torch (the names and costs are read by torch-free config checks):
each factory's module is imported when a model is first built, and ``ModelOutput`` / ``feature_shapes``
when first named.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from soteacher.models.zoo import ZOO

if TYPE_CHECKING:
    from torch import nn

    from soteacher.models.base import ModelOutput, feature_shapes


def _factory(name: str) -> Callable[[int], nn.Module]:
    arch = ZOO[name]

    def build(num_classes: int) -> nn.Module:
        return getattr(import_module(f"{__name__}.{arch.module}"), arch.factory)(num_classes)

    build.__qualname__ = f"{arch.module}.{arch.factory}"
    return build


MODELS: dict[str, Callable[[int], nn.Module]] = {name: _factory(name) for name in ZOO}


def build_model(name: str, num_classes: int) -> nn.Module:
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(sorted(MODELS))}") from None
    return factory(num_classes)


def __getattr__(name: str) -> Any:
    if name in ("ModelOutput", "feature_shapes"):  # from base, which imports torch
        return getattr(import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "ModelOutput", "build_model", "feature_shapes"]
