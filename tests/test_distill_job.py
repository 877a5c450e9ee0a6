"""The distill job (students/job.py): what a student's metrics file reports; a staged method's init
stage (its learning rate, the speed switches)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from soteacher.students.job import init_stage, student_summary
from soteacher.study.config import validate
from tests.helpers import OPTIM, compute, student_learner, teacher_learner, tiny_data


def test_best_epoch_is_chosen_on_the_validation_split_and_only_test_is_reported():
    history = [{"epoch": 1, "test_acc": 40.0, "val_acc": 50.0, "tv_pstar_test": 0.5},
               {"epoch": 2, "test_acc": 60.0, "val_acc": 45.0, "tv_pstar_test": 0.4},  # best on test
               {"epoch": 3, "test_acc": 55.0, "val_acc": 52.0, "tv_pstar_test": 0.3}]  # best on val
    teacher = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    summary = student_summary(history, teacher, student)
    assert summary["best_chosen_on"] == "val" and summary["best_epoch"] == 3 and summary["best_acc"] == 55.0
    assert summary["last_acc"] == 55.0 and summary["last_tv_pstar_test"] == 0.3
    assert summary["agreement"] == pytest.approx(50.0)
    without_val = student_summary([{k: v for k, v in h.items() if k != "val_acc"} for h in history], teacher, student)
    assert without_val["best_chosen_on"] == "test" and without_val["best_epoch"] == 2


def _init_spec(job_compute, optim=OPTIM) -> SimpleNamespace:
    """What init_stage reads of a DistillSpec: the optimiser, the student, the data's augmentation, compute."""
    return SimpleNamespace(optim=optim, student="resnet8", data={"augment": True}, compute=job_compute)


def test_init_stage_runs_at_the_methods_init_lr_or_the_students(tiny_config, tmp_path):
    """FT's paraphraser trains at ft.init_lr (RepDistiller: 0.01 for CIFAR ResNet/WRN students); FSP has no
    init_lr and uses the student's lr."""
    data = tiny_data(tiny_config)
    teacher = teacher_learner(data, tiny_config["teacher"]["recipes"]["standard"], 0).model.eval()
    filled = validate({"distill": {"methods": {"ft": {}, "fsp": {}}}}, deep=False)["distill"]["methods"]
    assert filled["ft"]["init_lr"] == 0.01 and "init_lr" not in filled["fsp"]
    learners = [student_learner(data, teacher, name, {**filled[name], "init_epochs": 1}, 0) for name in ("ft", "fsp")]
    spec = _init_spec(compute(resume_every=0))
    histories = init_stage(learners, [lr.objective for lr in learners], [0, 0], spec, data, teacher,
                                       lambda *args: None, tmp_path)
    assert [h["lr"] for h in histories["ft"]] == [0.01]
    assert [h["lr"] for h in histories["fsp"]] == [OPTIM.lr]


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_the_init_stage_keeps_a_constant_lr_whatever_the_schedule(tiny_config, tmp_path, schedule):
    """The distillation's schedule (its milestones, its cosine over distill.epochs) is not the init stage's."""
    data = tiny_data(tiny_config)
    teacher = teacher_learner(data, tiny_config["teacher"]["recipes"]["standard"], 0).model.eval()
    cfg = {**validate({"distill": {"methods": {"fsp": {}}}}, deep=False)["distill"]["methods"]["fsp"], "init_epochs": 3}
    learners = [student_learner(data, teacher, "fsp", cfg, 0)]
    optim = dataclasses.replace(OPTIM, lr_schedule=schedule, lr_milestones=[1])
    histories = init_stage(learners, [learners[0].objective], [0], _init_spec(compute(resume_every=0), optim), data,
                           teacher, lambda *args: None, tmp_path)
    assert [h["lr"] for h in histories["fsp"]] == [OPTIM.lr] * 3


@pytest.mark.parametrize("switches", [{"amp": "bf16"}, {"channels_last": True}, {}])
def test_the_speed_switches_reach_the_init_stage(tiny_config, tmp_path, switches):
    """compute.amp and compute.channels_last apply to a staged method's init epochs as to distillation: the
    student sees channels-last inputs and runs under bf16 autocast in its init-stage forward passes."""
    data = tiny_data(tiny_config)
    teacher = teacher_learner(data, tiny_config["teacher"]["recipes"]["standard"], 0).model.eval()
    cfg = {**validate({"distill": {"methods": {"ab": {}}}}, deep=False)["distill"]["methods"]["ab"], "init_epochs": 1}
    [learner] = [student_learner(data, teacher, "ab", cfg, 0)]
    seen = []

    def record(_module, args):
        if _module.training:  # the init stage's steps, not its evaluation
            x = args[0]
            seen.append((x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                         torch.is_autocast_enabled("cpu")))

    learner.model.register_forward_pre_hook(record)
    spec = _init_spec(compute(resume_every=0, **switches))
    init_stage([learner], [learner.objective], [0], spec, data, teacher, lambda *args: None, tmp_path)
    assert seen and set(seen) == {(switches.get("channels_last", False), switches.get("amp") == "bf16")}
