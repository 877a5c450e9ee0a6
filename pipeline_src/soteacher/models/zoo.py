"""The model zoo's one table: each architecture's name, where its factory lives, and its measured cost.

Importable without torch (nothing here imports it): config checks run in Snakemake's start-up, the
aggregate job and the planner, which need the names and costs but not the models.
``soteacher.models`` builds ``MODELS`` and ``build_model`` from this table; the planner
(``soteacher.study.plan``) reads the costs. Adding a model = its factory in a module here + one row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    module: str  # under soteacher.models
    factory: str  # the module's callable num_classes -> nn.Module
    # (train-step seconds per image, forward seconds per image, side of the square input measured at), one
    # CPU thread, batch 64, with `plan --measure --device cpu` (see soteacher/study/plan.py)
    cpu_cost: tuple[float, float, int]


ZOO: dict[str, Arch] = {
    "resnet8": Arch("resnet_cifar", "resnet8", (0.002, 0.00052, 32)),
    "resnet14": Arch("resnet_cifar", "resnet14", (0.0042, 0.0012, 32)),
    "resnet20": Arch("resnet_cifar", "resnet20", (0.0058, 0.0016, 32)),
    "resnet32": Arch("resnet_cifar", "resnet32", (0.0092, 0.0032, 32)),
    "resnet44": Arch("resnet_cifar", "resnet44", (0.012, 0.0037, 32)),
    "resnet56": Arch("resnet_cifar", "resnet56", (0.016, 0.0049, 32)),
    "resnet110": Arch("resnet_cifar", "resnet110", (0.035, 0.01, 32)),
    "resnet8x4": Arch("resnet_cifar", "resnet8x4", (0.019, 0.006, 32)),
    "resnet32x4": Arch("resnet_cifar", "resnet32x4", (0.1, 0.03, 32)),
    "ResNet18": Arch("resnet_imagenet", "resnet18", (0.26, 0.07, 64)),
    "ResNet34": Arch("resnet_imagenet", "resnet34", (0.11, 0.03, 32)),
    "ResNet50": Arch("resnet_imagenet", "resnet50", (0.21, 0.057, 32)),
    # the ImageNet-stem nets at 112 px, batch 16 (`measure(..., (3, 112, 112), batch=16)`, machine shared)
    "ResNet18_imagenet": Arch("resnet_imagenet", "resnet18_imagenet", (0.067, 0.022, 112)),
    "ResNet34_imagenet": Arch("resnet_imagenet", "resnet34_imagenet", (0.13, 0.036, 112)),
    "ResNet50_imagenet": Arch("resnet_imagenet", "resnet50_imagenet", (0.15, 0.048, 112)),
    "wrn_16_1": Arch("wrn", "wrn_16_1", (0.0035, 0.0011, 32)),
    "wrn_16_2": Arch("wrn", "wrn_16_2", (0.011, 0.003, 32)),
    "wrn_40_1": Arch("wrn", "wrn_40_1", (0.012, 0.0035, 32)),
    "wrn_40_2": Arch("wrn", "wrn_40_2", (0.041, 0.011, 32)),
    "vgg8": Arch("vgg", "vgg8", (0.011, 0.0035, 32)),
    "vgg11": Arch("vgg", "vgg11", (0.028, 0.0076, 32)),
    "vgg13": Arch("vgg", "vgg13", (0.033, 0.0093, 32)),
    "vgg16": Arch("vgg", "vgg16", (0.052, 0.013, 32)),
    "vgg19": Arch("vgg", "vgg19", (0.051, 0.015, 32)),
    "MobileNetV2": Arch("mobilenetv2", "mobilenetv2_half", (0.0051, 0.001, 32)),
    "ShuffleNetV1": Arch("shufflenetv1", "shufflenetv1", (0.019, 0.007, 32)),
    "ShuffleNetV2": Arch("shufflenetv2", "shufflenetv2", (0.012, 0.0035, 32)),
}

ARCHITECTURES: tuple[str, ...] = tuple(ZOO)
