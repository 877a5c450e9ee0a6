"""Speed switches (compute.amp / channels_last / compile) work on CPU and change only what they should."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from soteacher.teacher_side.loop import Speed, prepare_model, train
from tests.helpers import REPO, soteacher_recipe, teacher_learner, tiny_data


def _run(tiny_config, speed: Speed | None = None, compute: dict | None = None):
    data = tiny_data(tiny_config)
    learner = teacher_learner(data, soteacher_recipe(), seed=0)
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


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_deterministic_setup_sets_torch_flags_without_importing_inductor():
    # torch.use_deterministic_algorithms imports torch._inductor (1.6 s per job); devices.setup sets the same flags
    flags = _python(
        "import sys, torch\n"
        "from soteacher.common import devices\n"
        "devices.setup({'threads': 1, 'deterministic': True, 'device': 'cpu'})\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " 'torch._inductor' in sys.modules)")
    assert flags == "True True False"


def test_compiling_a_model_carries_determinism_over_to_inductor():
    flags = _python(
        "import torch\n"
        "from soteacher.common import devices\n"
        "from soteacher.teacher_side.loop import prepare_model\n"
        "devices.setup({'threads': 1, 'deterministic': True, 'device': 'cpu'})\n"
        "prepare_model(torch.nn.Linear(2, 2), {'compile': True})\n"
        "import torch._inductor.config as c\n"
        "print(c.deterministic)")
    assert flags == "True"


def test_commands_without_training_do_not_import_torch(tmp_path):
    # init-tracking, and the config check Snakemake runs at start-up (the aggregate job's too)
    loaded = _python(
        "import sys\n"
        "from soteacher.common import config\n"
        "from soteacher.cli import main\n"
        f"main(['init-tracking', '--experiment', 'x', '--tracking-uri', 'sqlite:///{tmp_path}/m.db'])\n"
        f"config.load({str(REPO / 'config/config.yaml')!r}, deep=False)\n"
        "print('torch' in sys.modules)")
    assert loaded.splitlines()[-1] == "False"
