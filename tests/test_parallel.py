"""Several ranks (training/parallel.py): what runs without a process group. The ranks themselves run in
tests/test_ranks.py (two gloo processes under torchrun)."""

from __future__ import annotations

import torch

from soteacher.core.ranks import World
from soteacher.training.loop import job_options
from soteacher.training.parallel import joint_steps
from tests.helpers import OPTIM, compute


def test_sync_bn_reaches_the_loop_and_on_cpu_warns_that_it_has_no_effect(caplog):
    assert job_options(OPTIM, True, compute(sync_bn=True))["sync_bn"] is True
    with caplog.at_level("WARNING", logger="soteacher.training.parallel"):
        # no learners: the warning comes before any model is wrapped (which would need a process group)
        assert joint_steps([], World(rank=0, size=2), torch.device("cpu"), sync_bn=True) == []
    assert "compute.sync_bn has no effect on cpu" in caplog.text
