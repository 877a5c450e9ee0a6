"""Sparse evaluation (``teacher.eval_every``, ``distill.eval_every``): which epochs a job evaluates, that skipping
evaluation changes no weight, and that everything reading a history copes with epochs that hold training metrics
alone (the student's best epoch, the teacher tables and figures) and that the setting names results."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from soteacher.core import layout
from soteacher.core.specs import to_json
from soteacher.report import figures, premise
from soteacher.report.collect import TEACHER_KEYS
from soteacher.report.teachers import teachers_table
from soteacher.students.job import student_summary
from soteacher.study import config as config_mod
from soteacher.study import student_jobs, teacher_jobs
from soteacher.teachers.job import teacher_eval_epochs
from soteacher.training.loop import evaluated_epochs, train
from tests.helpers import soteacher_recipe, student_learner, subprocess_env, teacher_learner, tiny_data, tiny_raw
from tests.test_identity import folders, tiny

EVAL_KEYS = {"test_acc", "test_loss", "val_acc", "val_loss", "train_eval_acc", "tv_pstar_train", "tv_pstar_test",
             "tv_pstar_val", "kl_pstar_train", "kl_pstar_test", "kl_pstar_val"}
TRAIN_KEYS = {"train_loss", "train_ce", "train_acc", "lr", "epoch"}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def _training_part(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in EVAL_KEYS} for h in history]


def test_evaluated_epochs_every_kth_the_last_and_the_always_ones():
    assert evaluated_epochs(7, 1) == set(range(1, 8))
    assert evaluated_epochs(7, 3) == {3, 6, 7}
    assert evaluated_epochs(7, 3, [2, 4, 6, 7]) == {2, 3, 4, 6, 7}
    assert evaluated_epochs(4, 10) == {4}
    with pytest.raises(ValueError, match="eval_every"):
        evaluated_epochs(4, 0)


def test_a_teacher_evaluated_every_third_epoch_trains_to_bit_identical_weights(tiny_config):
    data = tiny_data(tiny_config, val_size=12)
    runs = []
    for eval_epochs in (None, evaluated_epochs(4, 3)):
        learner = teacher_learner(data, soteacher_recipe(), 0, epochs=4)
        train([learner], data, epochs=4, batch_size=16, seed=0, eval_epochs=eval_epochs)
        runs.append(learner)
    every, sparse = runs
    _same_weights(every.model, sparse.model)  # BatchNorm running statistics included
    assert torch.equal(every.objective.terms["consistency"].average.table,
                       sparse.objective.terms["consistency"].average.table)
    assert _training_part(every.history) == _training_part(sparse.history)
    assert [sorted(EVAL_KEYS & set(h)) != [] for h in sparse.history] == [False, False, True, True]
    assert sparse.history[2] == every.history[2] and sparse.history[3] == every.history[3]


def test_students_evaluated_every_other_epoch_train_to_bit_identical_weights(tiny_config):
    data = tiny_data(tiny_config, val_size=12)
    teacher = teacher_learner(data, soteacher_recipe(), 0).model.eval()
    runs = []
    for eval_epochs in (None, evaluated_epochs(3, 2)):
        learners = [student_learner(data, teacher, method, tiny_config["distill"]["methods"][method], 1, epochs=3)
                    for method in ("kd", "fitnet")]
        train(learners, data, epochs=3, batch_size=16, seed=1, teacher=teacher, eval_train_split=False,
              eval_epochs=eval_epochs)
        runs.append(learners)
    for every, sparse in zip(*runs):
        _same_weights(every.model, sparse.model)
        _same_weights(every.objective, sparse.objective)  # the method's own modules (FitNet's connector)
        assert _training_part(every.history) == _training_part(sparse.history)
        assert ["test_acc" in h for h in sparse.history] == [False, True, True]


def test_a_teacher_job_evaluates_every_kth_epoch_the_last_and_every_checkpoint(tiny_config):
    cfg = config_mod.validate(tiny_raw(**{"teacher.epochs": 7, "teacher.eval_every": 3,
                                          "teacher.checkpoint_every": 2}), deep=False)
    spec = teacher_jobs.teacher_spec(cfg, "resnet8", "standard", 0)
    assert spec.eval_every == 3 and spec.checkpoint_epochs == [2, 4, 6, 7]
    assert teacher_eval_epochs(spec) == {2, 3, 4, 6, 7}
    data = tiny_data(tiny_config, val_size=12)
    learner = teacher_learner(data, spec.terms, 0, epochs=7)
    train([learner], data, epochs=7, batch_size=16, seed=0, eval_epochs=teacher_eval_epochs(spec))
    for h in learner.history:
        if h["epoch"] in (2, 3, 4, 6, 7):
            assert EVAL_KEYS <= set(h), h["epoch"]
        else:
            assert set(h) == TRAIN_KEYS, h["epoch"]
    # what metrics.json's checkpoints keep (teachers.outputs.publish): evaluated entries only
    assert all("test_acc" in h and "tv_pstar_train" in h
               for h in learner.history if h["epoch"] in spec.checkpoint_epochs)


@pytest.mark.slow
def test_the_real_teacher_job_writes_evaluated_checkpoints_and_a_history_with_gaps(tmp_path):
    cfg = config_mod.validate(tiny_raw(**{"teacher.epochs": 5, "teacher.eval_every": 3,
                                          "teacher.checkpoint_every": 2}), deep=False)
    spec = teacher_jobs.teacher_spec(cfg, "resnet8", "standard", 0)
    cli, env = [sys.executable, "-m", "soteacher"], subprocess_env()
    for args in (["prepare-data", "--spec", to_json(spec)],
                 ["train-teacher", "--spec", to_json(spec), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                  "--experiment", "tiny"]):
        done = subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / spec.dir / layout.METRICS_FILE).read_text())
    assert ["test_acc" in h for h in metrics["history"]] == [False, True, True, True, True]  # 2, 3, 4 and 5
    assert set(metrics["checkpoints"]) == {"2", "4", "5"}
    assert all("test_acc" in h and "tv_pstar_train" in h for h in metrics["checkpoints"].values())


def test_the_distill_spec_carries_eval_every():
    cfg = config_mod.validate(tiny_raw(**{"distill.eval_every": 4, "distill.epochs": 9}), deep=False)
    job = next(j for j in student_jobs.student_jobs(cfg) if j["method"] == "kd")
    assert student_jobs.job_spec(cfg, job).eval_every == 4
    assert config_mod.validate(tiny_raw(), deep=False)["distill"]["eval_every"] == 1


def test_the_best_student_epoch_is_chosen_among_the_evaluated_epochs():
    history = [{"epoch": 1, "train_loss": 2.0, "train_acc": 30.0, "lr": 0.1},
               {"epoch": 2, "train_loss": 1.5, "train_acc": 40.0, "lr": 0.1, "test_acc": 50.0, "val_acc": 48.0},
               {"epoch": 3, "train_loss": 1.2, "train_acc": 50.0, "lr": 0.1},
               {"epoch": 4, "train_loss": 1.0, "train_acc": 60.0, "lr": 0.1, "test_acc": 58.0, "val_acc": 57.0},
               {"epoch": 5, "train_loss": 0.9, "train_acc": 65.0, "lr": 0.01, "test_acc": 56.0, "val_acc": 55.0}]
    summary = student_summary(history, None, torch.zeros(2, 2))
    assert summary == {"last_acc": 56.0, "best_acc": 58.0, "best_epoch": 4, "best_chosen_on": "val"}
    without_val = [{k: v for k, v in h.items() if k != "val_acc"} for h in history]
    assert student_summary(without_val, None, torch.zeros(2, 2))["best_epoch"] == 4


def _teacher_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two recipes × two teacher seeds, 6 epochs evaluated at 3 and 6 (the checkpoints) and 4 (eval_every 4):
    the frames ``collect.teacher_frames`` makes, NaN where an epoch was not evaluated."""
    rows = []
    for recipe, shift in (("standard", 0.0), ("soteacher", -0.05)):
        for seed in (0, 1):
            for epoch in range(1, 7):
                row = {"teacher": "resnet8", "recipe": recipe, "teacher_seed": seed, "epoch": epoch,
                       **dict.fromkeys(TEACHER_KEYS, math.nan), "lr": 0.1, "train_loss": 2.0 - 0.2 * epoch,
                       "train_ce": 2.0 - 0.2 * epoch, "train_acc": 40.0 + 5 * epoch}
                if epoch in (3, 4, 6):
                    tv = {3: 0.30, 4: 0.25, 6: 0.28}[epoch] + shift + 0.01 * seed
                    row.update(test_acc=60.0 + epoch + seed, val_acc=59.0 + epoch - seed, test_loss=1.0,
                               val_loss=1.0, train_eval_acc=70.0 + epoch, tv_pstar_train=tv, tv_pstar_test=tv + 0.1,
                               kl_pstar_train=2 * tv, kl_pstar_test=2 * tv + 0.1)
                rows.append(row)
    history = pd.DataFrame(rows)
    checkpoints = history[history["epoch"].isin([3, 6])].rename(columns={"epoch": "teacher_epoch"})
    checkpoints = checkpoints.assign(distilled=True)
    return checkpoints, history


def test_the_teacher_table_and_figures_build_on_a_history_with_gaps():
    checkpoints, history = _teacher_frames()
    reference = {"expected_max_pstar": {"train": 72.0}, "bayes_acc": {"test": 70.0}}
    table = teachers_table(checkpoints, history, reference, "standard").set_index("recipe")
    # the minimum of the evaluated train TVs (epoch 4), the last one (epoch 6) minus it
    assert table.loc["standard", "tv_train_min_mean"] == pytest.approx(0.255)
    assert table.loc["standard", "tv_train_turn_up_mean"] == pytest.approx(0.03)
    assert table.loc["soteacher", "tv_train_min_epoch_by_seed"] == "seed 0: 4; seed 1: 4"
    assert table.loc["standard", "teacher_epoch"] == 6
    for png in (figures.tv_curves_figure(history, checkpoints, reference), figures.teacher_curves_figure(history)):
        assert png.startswith(b"\x89PNG")
    band = figures._band(history[history["test_acc"].notna()], "test_acc")
    assert list(band["epoch"]) == [3, 4, 6]  # the line runs through the evaluated epochs alone


def test_the_premise_reads_the_checkpoint_epochs_of_a_history_with_gaps():
    _, history = _teacher_frames()
    students = pd.DataFrame([{"teacher": "resnet8", "recipe": r, "teacher_seed": s, "teacher_epoch": e,
                              "method": "kd", "student": "resnet8", "seed": 0, "teacher_acc": 60.0 + e,
                              "student_last_acc": 50.0 + e} for r in ("standard", "soteacher") for s in (0, 1)
                             for e in (3, 6)])
    points = premise.premise_points(students, history, "kd")
    assert len(points) == 8 and points["tv_pstar_train"].notna().all()


def test_eval_every_at_its_default_renames_nothing_and_otherwise_names_other_results():
    base = folders(tiny())
    assert folders(tiny(**{"teacher.eval_every": 1, "distill.eval_every": 1})) == base
    teachers = folders(tiny(**{"teacher.eval_every": 5}))
    assert teachers["data"] == base["data"] and not set(teachers["teachers"]) & set(base["teachers"])
    students = folders(tiny(**{"distill.eval_every": 5}))
    assert students["teachers"] == base["teachers"] and not set(students["students"]) & set(base["students"])
