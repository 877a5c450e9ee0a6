"""The model zoo: ``build_model(name, num_classes)`` for every registered architecture."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from soteacher.common.archs import ARCHITECTURES
from soteacher.teacher_side.models.base import ModelOutput, feature_shapes
from soteacher.teacher_side.models.mobilenetv2 import MOBILENETS
from soteacher.teacher_side.models.resnet_cifar import RESNETS
from soteacher.teacher_side.models.resnet_imagenet import IMAGENET_RESNETS
from soteacher.teacher_side.models.shufflenetv1 import SHUFFLENETV1
from soteacher.teacher_side.models.shufflenetv2 import SHUFFLENETV2
from soteacher.teacher_side.models.vgg import VGGS
from soteacher.teacher_side.models.wrn import WRNS

MODELS: dict[str, Callable[[int], nn.Module]] = {
    **RESNETS,
    **IMAGENET_RESNETS,
    **WRNS,
    **VGGS,
    **MOBILENETS,
    **SHUFFLENETV1,
    **SHUFFLENETV2,
}
if set(MODELS) != set(ARCHITECTURES):  # a new model must be named in soteacher/common/archs.py too (config checks)
    raise ImportError(f"soteacher.common.archs.ARCHITECTURES and the model registry differ: "
                      f"{sorted(set(MODELS) ^ set(ARCHITECTURES))}")


def build_model(name: str, num_classes: int) -> nn.Module:
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(sorted(MODELS))}") from None
    return factory(num_classes)


__all__ = ["MODELS", "ModelOutput", "build_model", "feature_shapes"]
