"""SGD and MultiStepLR (teacher_side/optim.py) against torch.optim, bit for bit, resumed or not."""

from __future__ import annotations

import pytest
import torch

from soteacher.training.optim import SGD, MultiStepLR


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 5)
        self.late = torch.nn.Linear(5, 3)  # reached only from step 3: its momentum buffer starts later

    def forward(self, x, step):
        h = torch.relu(self.body(x))
        return self.late(h).sum() if step >= 3 else h.sum()


def _optimise(make, steps: int, model: torch.nn.Module, state: dict | None = None, start: int = 0):
    opt, sched = make(model)
    if state is not None:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
    lrs = []
    for step in range(start, steps):
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(step)).to(next(model.parameters()).device)
        opt.zero_grad(set_to_none=True)
        model(x, step).square().backward()
        opt.step()
        if step % 2 == 1:  # an "epoch" is two steps
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs, {"opt": opt.state_dict(), "sched": sched.state_dict()}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_sgd_and_multistep_schedule_match_torch_optim_bit_for_bit(device):
    def ours(model):
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return opt, MultiStepLR(opt, [1, 2, 2], 0.1)

    def reference(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, [1, 2, 2], 0.1)

    torch.manual_seed(0)
    a = _TwoHeads().to(device)
    b, c = _TwoHeads().to(device), _TwoHeads().to(device)
    b.load_state_dict(a.state_dict())
    c.load_state_dict(a.state_dict())
    ours_lrs, _ = _optimise(ours, 8, a)
    ref_lrs, _ = _optimise(reference, 8, b)
    assert ours_lrs == ref_lrs and ref_lrs[-1] != 0.05
    for (key, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), key
    # resuming from a saved state continues exactly
    _, state = _optimise(ours, 4, c)
    resumed_lrs, _ = _optimise(ours, 8, c, state, start=4)
    assert resumed_lrs == ours_lrs[4:]
    for (key, x), (_, y) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(x, y), key
