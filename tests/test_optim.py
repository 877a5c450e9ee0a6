"""The recipes' optimiser (training/optim.py, torch.optim): the learning rate of every epoch under both schedules
against its closed form, in the loop too, and the optimiser and schedule carried through the resumable training
state so a resumed run ends bit-identical."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from soteacher.core.settings import Optim
from soteacher.study.config import validate
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer
from soteacher.training.state import Resume
from tests.helpers import OPTIM, soteacher_recipe, teacher_learner, tiny_data

UNIT_ROUNDOFF = 2.0**-53  # of a float64 operation


def _epoch_lrs(optim, lr: float, epochs: int) -> list[float]:
    """The lr each epoch trains at when the schedule is stepped once per epoch, as the loop does."""
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], optim, lr, epochs)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_multistep_lr_is_multiplied_by_gamma_after_each_milestone():
    optim = dataclasses.replace(OPTIM, lr_schedule="multistep", lr_milestones=[150, 180, 210], lr_gamma=0.1)
    lrs = _epoch_lrs(optim, 0.05, 240)
    for epoch, lr in enumerate(lrs, start=1):
        decays = sum(m < epoch for m in optim.lr_milestones)  # "epochs after which": epoch 151 is the first at 0.005
        # torch multiplies by gamma once per milestone, the closed form raises gamma to a power: each side rounds
        # at most decays + 1 times, a relative error of one unit roundoff each
        assert lr == pytest.approx(0.05 * 0.1**decays, rel=(2 * decays + 2) * UNIT_ROUNDOFF, abs=0), epoch


def test_multistep_without_milestones_keeps_the_lr_exactly():
    assert _epoch_lrs(dataclasses.replace(OPTIM, lr_milestones=[]), 0.05, 5) == [0.05] * 5


@pytest.mark.parametrize("epochs", [1, 3, 240])
def test_cosine_lr_follows_half_a_cosine_down_to_zero_after_the_last_epoch(epochs):
    optim = dataclasses.replace(OPTIM, lr_schedule="cosine", lr_milestones=[2])  # milestones play no part
    lrs = _epoch_lrs(optim, 0.05, epochs)
    for t, lr in enumerate(lrs):  # epoch t + 1
        closed = 0.05 * (1 + math.cos(math.pi * t / epochs)) / 2
        # torch's cosine is recursive, lr_t = lr_{t-1} · a_t / a_{t-1} with a_t = 1 + cos(π t / E): the a's telescope
        # exactly (the same expression for the same t), so what differs from the closed form is one division and one
        # multiplication per epoch and the closed form's own two roundings
        assert lr == pytest.approx(closed, rel=(2 * t + 2) * UNIT_ROUNDOFF, abs=0), t
    assert lrs[0] == 0.05 and all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    optimizer, scheduler = make_optimizer([torch.nn.Parameter(torch.zeros(1))], optim, 0.05, epochs)
    for _ in range(epochs):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0  # eta_min = 0, after the last epoch: never trained at


def test_the_loop_records_the_lr_each_epoch_trained_at(tiny_config):
    data, cosine = tiny_data(tiny_config), dataclasses.replace(OPTIM, lr_schedule="cosine")
    learner = teacher_learner(data, soteacher_recipe(), 0, epochs=3, optim=cosine)
    train([learner], data, epochs=3, batch_size=16, seed=0)
    assert [h["lr"] for h in learner.history] == _epoch_lrs(cosine, OPTIM.lr, 3)


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_optimiser_and_schedule_round_trip_through_the_training_state(tiny_config, tmp_path, schedule):
    """Stopped after epoch 2 of 4 and resumed by a fresh learner from the saved state: momentum buffers, lr and the
    schedule's position come back, and the run ends bit-identical to an uninterrupted one."""
    data = tiny_data(tiny_config)
    optim = dataclasses.replace(OPTIM, lr_schedule=schedule, lr_milestones=[3])

    def learner():
        return teacher_learner(data, soteacher_recipe(), 0, epochs=4, optim=optim)

    whole = learner()
    train([whole], data, epochs=4, batch_size=16, seed=0)
    resume = Resume(tmp_path / "state.pt")
    train([learner()], data, epochs=2, batch_size=16, seed=0, resume=resume)
    saved = torch.load(resume.path, weights_only=True)["learners"][0]
    assert saved["scheduler"]["last_epoch"] == 2
    assert all(s["momentum_buffer"] is not None for s in saved["optimizer"]["state"].values())
    resumed = learner()
    train([resumed], data, epochs=4, batch_size=16, seed=0, resume=resume)
    assert resumed.history == whole.history
    assert len({h["lr"] for h in whole.history}) == (2 if schedule == "multistep" else 4)
    for (key, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), key
    for a, b in zip(whole.optimizer.state.values(), resumed.optimizer.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert whole.scheduler.state_dict() == resumed.scheduler.state_dict()


def test_lr_by_arch_overrides_lr_for_the_architectures_it_lists():
    section = validate({"distill": {"optim": {"lr": 0.05, "lr_by_arch": {"MobileNetV2": 0.01}}}}, deep=False)
    optim = Optim(**section["distill"]["optim"])
    assert (optim.lr_of("MobileNetV2"), optim.lr_of("resnet8")) == (0.01, 0.05)
