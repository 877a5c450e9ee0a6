"""Speed switches (compute.amp / channels_last / compile) work on CPU and change only what they should."""

from __future__ import annotations

import pytest
import torch

from soteacher.train import Speed, prepare_model, train
from tests.helpers import teacher_learner, tiny_data
from tests.test_training import SOTEACHER


def _run(tiny_config, speed: Speed | None = None, compute: dict | None = None):
    data = tiny_data(tiny_config)
    learner = teacher_learner(data, SOTEACHER, seed=0)
    prepare_model(learner.model, compute or {})
    train([learner], data, epochs=1, batch_size=16, seed=0, speed=speed or Speed())
    return learner


def test_bf16_autocast_trains_with_finite_losses_and_really_changes_the_arithmetic(tiny_config):
    fp32 = _run(tiny_config)
    bf16 = _run(tiny_config, Speed(amp_bf16=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.history[0].values())
    assert not torch.equal(fp32.model.fc.weight, bf16.model.fc.weight)  # autocast was active
    assert torch.allclose(fp32.model.fc.weight, bf16.model.fc.weight, atol=0.05)


def test_channels_last_gives_the_same_training_up_to_float_reordering(tiny_config):
    nchw = _run(tiny_config)
    nhwc = _run(tiny_config, Speed(channels_last=True), {"channels_last": True})
    assert nhwc.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for (k, a), (_, b) in zip(nchw.model.state_dict().items(), nhwc.model.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x, with_features: bool = False):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.slow
def test_torch_compile_matches_eager_and_keeps_state_dict_names():
    torch.manual_seed(0)
    eager = TinyNet()
    compiled = prepare_model(TinyNet(), {"compile": True})
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix
    x = torch.randn(4, 3, 8, 8)
    for model in (eager, compiled):
        model(x).square().mean().backward()
    assert torch.allclose(eager(x), compiled(x), atol=1e-5)
    assert torch.allclose(eager.conv.weight.grad, compiled.conv.weight.grad, atol=1e-5)
