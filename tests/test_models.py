"""The model zoo: parameter counts, forward/feature conventions and RepDistiller-compatible names."""

from __future__ import annotations

import importlib
from functools import cache

import pytest
import torch
from torch import nn

from soteacher.models import MODELS, ModelOutput, build_model
from soteacher.models.zoo import ZOO

torch.set_num_threads(1)

# millions of parameters at num_classes=100, as reported for the CIFAR-100 KD model zoo
PARAM_COUNTS_M = {
    "resnet8": 0.084,
    "resnet20": 0.278,
    "resnet32": 0.473,
    "resnet56": 0.862,
    "resnet110": 1.737,
    "resnet8x4": 1.234,
    "resnet32x4": 7.434,
    "wrn_16_1": 0.181,
    "wrn_16_2": 0.703,
    "wrn_40_1": 0.570,
    "wrn_40_2": 2.255,
    "vgg8": 3.965,
    "vgg13": 9.462,
    "MobileNetV2": 0.813,
    "ShuffleNetV1": 0.949,
    "ShuffleNetV2": 1.356,
    "ResNet50": 23.705,
}

NEW_MODELS = [
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "MobileNetV2", "ShuffleNetV1", "ShuffleNetV2",
    "ResNet18", "ResNet34", "ResNet50", "ResNet18_imagenet", "ResNet34_imagenet", "ResNet50_imagenet",
]  # fmt: skip

# a second input size per model (besides 32); 64 exercises VGG's extra pooling for large inputs
OTHER_SIZE = {"vgg8": 64, "MobileNetV2": 28, "ShuffleNetV1": 28, "wrn_16_1": 28}

# state_dict keys (and shapes) read off RepDistiller's models/*.py at num_classes=100; None = must be absent
REFERENCE_KEYS: dict[str, dict[str, tuple[int, ...] | None]] = {
    "wrn_16_1": {
        "conv1.weight": (16, 3, 3, 3),
        "block1.layer.0.bn1.weight": (16,),
        "block1.layer.0.conv1.weight": (16, 16, 3, 3),
        "block1.layer.0.convShortcut.weight": None,
        "block2.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block3.layer.1.conv2.weight": (64, 64, 3, 3),
        "bn1.running_var": (64,),
        "fc.weight": (100, 64),
    },
    "wrn_40_2": {
        "block1.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block3.layer.5.conv2.weight": (128, 128, 3, 3),
        "fc.weight": (100, 128),
    },
    "vgg8": {
        "block0.0.weight": (64, 3, 3, 3),
        "block0.0.bias": (64,),
        "block0.1.running_mean": (64,),
        "block0.3.weight": None,
        "block4.1.weight": (512,),
        "classifier.weight": (100, 512),
    },
    "vgg13": {"block0.3.weight": (64, 64, 3, 3), "block0.4.num_batches_tracked": (), "block4.4.bias": (512,)},
    "MobileNetV2": {
        "conv1.0.weight": (16, 3, 3, 3),
        "conv1.1.weight": (16,),
        "blocks.0.0.conv.0.weight": (16, 16, 1, 1),
        "blocks.0.0.conv.3.weight": (16, 1, 3, 3),
        "blocks.6.0.conv.7.running_var": (160,),
        "conv2.0.weight": (1280, 160, 1, 1),
        "classifier.0.weight": (100, 1280),
    },
    "ShuffleNetV1": {
        "conv1.weight": (24, 3, 1, 1),
        "bn1.weight": (24,),
        "layer1.0.conv1.weight": (54, 24, 1, 1),
        "layer1.0.conv3.weight": (216, 18, 1, 1),
        "layer2.0.conv1.weight": (60, 80, 1, 1),
        "layer3.3.bn3.num_batches_tracked": (),
        "linear.weight": (100, 960),
    },
    "ShuffleNetV2": {
        "layer1.0.conv1.weight": (24, 1, 3, 3),
        "layer1.0.conv5.weight": (58, 58, 1, 1),
        "layer1.3.conv3.weight": (58, 58, 1, 1),
        "layer2.7.bn3.weight": (116,),
        "layer3.3.conv2.weight": (232, 1, 3, 3),
        "conv2.weight": (1024, 464, 1, 1),
        "bn2.weight": (1024,),
        "linear.weight": (100, 1024),
    },
    "ResNet18": {
        "layer1.0.shortcut.0.weight": None,
        "layer2.0.shortcut.0.weight": (128, 64, 1, 1),
        "layer2.0.shortcut.1.running_mean": (128,),
        "linear.weight": (100, 512),
    },
    "ResNet50": {
        "conv1.weight": (64, 3, 3, 3),
        "layer1.0.shortcut.0.weight": (256, 64, 1, 1),
        "layer1.0.shortcut.1.running_mean": (256,),
        "layer1.1.shortcut.0.weight": None,
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "linear.weight": (100, 2048),
    },
}

# total state_dict entries of the reference models (parameters + BN buffers)
REFERENCE_KEY_COUNTS = {
    "wrn_16_1": 82, "wrn_40_2": 227, "vgg8": 37, "vgg13": 72, "MobileNetV2": 320,
    "ShuffleNetV1": 296, "ShuffleNetV2": 338, "ResNet18": 122, "ResNet50": 320,
}  # fmt: skip


@cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, 100).eval()


def _classifier(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    return linears[0]


def test_all_new_models_registered():
    assert set(NEW_MODELS) <= set(MODELS)


def test_zoo_rows_name_a_factory_and_a_measured_cost():
    for name, arch in ZOO.items():
        module = importlib.import_module(f"soteacher.models.{arch.module}")
        assert callable(getattr(module, arch.factory)), name
        train, forward, side = arch.cpu_cost  # the planner's per-image seconds and the side measured at
        assert train > forward > 0 and side in (32, 64, 112), name


def test_unknown_architecture_lists_the_zoo():
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet9'; allowed: MobileNetV2, .*wrn_40_2$"):
        build_model("resnet9", 10)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS_M))
def test_parameter_count(name: str):
    n = sum(p.numel() for p in _model(name).parameters())
    assert round(n / 1e6, 3) == PARAM_COUNTS_M[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_and_features(name: str):
    model = _model(name)
    fc = _classifier(model)
    for size in (32, OTHER_SIZE.get(name, 16)):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            logits = model(x)
            out = model(x, with_features=True)
        assert logits.shape == (2, 100)
        assert isinstance(out, ModelOutput)
        torch.testing.assert_close(out.logits, logits)
        assert len(out.feats) == len(out.preact_feats) >= 5
        assert out.feats[-1].shape == (2, fc.in_features)
        torch.testing.assert_close(fc(out.feats[-1]), logits)
        assert out.preact_feats[-1] is out.feats[-1]
        for f, p in zip(out.feats[:-1], out.preact_feats[:-1]):
            assert f.dim() == 4 and f.shape[0] == 2
            assert p.shape == f.shape


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_imagenet_stem_resnets_are_torchvisions(depth: int):
    """``ResNet<d>_imagenet`` is torchvision's ``resnet<d>``: its weights load strictly and give the same logits,
    and the 7×7/2 conv + max pool put the first stage at 56×56 for a 224 px input."""
    import torchvision

    torch.manual_seed(0)
    reference = getattr(torchvision.models, f"resnet{depth}")(num_classes=100).eval()
    model = build_model(f"ResNet{depth}_imagenet", 100).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        out = model(x, with_features=True)
    assert torch.equal(out.logits, expected)
    assert [f.shape[-1] for f in out.feats[:-1]] == [56, 56, 28, 14, 7]
    cifar_stem = build_model(f"ResNet{depth}", 100)
    assert cifar_stem(torch.randn(1, 3, 32, 32), with_features=True).feats[1].shape[-1] == 32


@pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
def test_reference_state_dict_keys(name: str):
    sd = _model(name).state_dict()
    assert len(sd) == REFERENCE_KEY_COUNTS[name]
    for key, shape in REFERENCE_KEYS[name].items():
        if shape is None:
            assert key not in sd
        else:
            assert tuple(sd[key].shape) == shape, key


def test_preact_is_before_final_relu():
    """Where a stage ends in a ReLU, feats are the ReLU of preact_feats (stem included)."""
    x = torch.randn(2, 3, 32, 32)
    for name in ("ResNet18", "ResNet50", "ShuffleNetV1", "ShuffleNetV2", "vgg8", "MobileNetV2"):
        with torch.no_grad():
            out = _model(name)(x, with_features=True)
        # MobileNetV2 stages end in a linear projection: there the ReLU applies to the stem only
        stages = 1 if name == "MobileNetV2" else len(out.feats) - 1
        for f, p in zip(out.feats[:stages], out.preact_feats[:stages]):
            assert (p < 0).any()
            torch.testing.assert_close(f, torch.relu(p))


def test_wrn_preact_is_bn_of_stage_output():
    """WRN stages end in a raw residual sum; preact is that sum after the following BN (as in RepDistiller)."""
    model = _model("wrn_16_2")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32), with_features=True)
        torch.testing.assert_close(out.preact_feats[1], model.block2.layer[0].bn1(out.feats[1]))
        torch.testing.assert_close(out.preact_feats[3], model.bn1(out.feats[3]))


def test_strict_load_round_trip():
    """A state_dict saved from one instance loads strictly into a fresh one and reproduces its outputs."""
    x = torch.randn(2, 3, 32, 32)
    for name in ("wrn_16_1", "MobileNetV2"):
        src = _model(name)
        dst = build_model(name, 100).eval()
        dst.load_state_dict(src.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(dst(x), src(x))
