"""The planner (study/plan.py): job counts per rule, warnings, compute estimates, --measure."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from soteacher.study import config as config_mod
from soteacher.study import plan
from tests.helpers import REPO, TINY_CONFIG, tiny_raw


def test_plan_counts_and_warnings():
    cfg = config_mod.validate(tiny_raw())
    result = plan.make_plan(cfg)
    assert result.jobs == {"prepare_data": 1, "train_teacher": 2, "distill": 4, "aggregate": 1}
    assert not result.warnings
    cfg = config_mod.validate(tiny_raw(**{"distill.group_methods": False}))
    assert plan.make_plan(cfg).jobs["distill"] == 8
    huge = config_mod.validate(tiny_raw(**{"distill.seeds": list(range(300))}), deep=False)
    assert any("huge study" in w and "jobs" in w for w in plan.make_plan(huge).warnings)
    big = config_mod.load(REPO / "config/paper/cifar100_table.yaml", deep=False)
    assert any("GPU" in w for w in plan.make_plan(big).warnings)


def test_plan_scales_with_data_and_epochs():
    small = plan.make_plan(config_mod.validate(tiny_raw()))
    longer = plan.make_plan(config_mod.validate(tiny_raw(**{"teacher.epochs": 4, "teacher.checkpoint_every": 2})))
    assert longer.cpu_hours["train_teacher"] > small.cpu_hours["train_teacher"]


def test_plan_charges_the_test_forward_on_evaluated_epochs_only():
    every = plan.make_plan(config_mod.validate(tiny_raw(**{"teacher.epochs": 9, "teacher.checkpoint_every": 9,
                                                           "distill.epochs": 9})))
    sparse = plan.make_plan(config_mod.validate(tiny_raw(**{"teacher.epochs": 9, "teacher.checkpoint_every": 9,
                                                            "teacher.eval_every": 3, "distill.epochs": 9,
                                                            "distill.eval_every": 3})))
    for rule in ("train_teacher", "distill"):
        assert sparse.cpu_hours[rule] < every.cpu_hours[rule]


@pytest.mark.slow
def test_plan_cli_and_measure(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soteacher", "plan", str(TINY_CONFIG), "--measure", "--steps", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    for rule in ("prepare_data", "train_teacher", "distill", "aggregate"):
        assert re.search(rf"^\s+{rule}\s+\d+$", out.stdout, re.M), out.stdout
    assert "cpu (measured here" in out.stdout


def test_plan_counts_the_registry_sizes():
    from soteacher.data import DATASETS

    cfg = config_mod.validate({"data": {"dataset": "tiny_imagenet"}}, deep=False)
    assert plan.data_sizes(cfg) == DATASETS["tiny_imagenet"].full_size == (100_000, 10_000)
    # limits cut the full sizes; val_size is held out of the (limited) training split
    cfg = config_mod.validate({"data": {"dataset": "cifar100", "train_limit": 1000, "test_limit": 500,
                                        "val_size": 100}}, deep=False)
    assert plan.data_sizes(cfg) == (900, 500)


def test_plan_of_multi_rank_jobs_divides_the_wall_clock_and_counts_every_card():
    one = plan.make_plan(config_mod.validate(tiny_raw()))
    assert one.cards == {"train_teacher": 1, "distill": 1} and not one.multi_rank
    for part in ("train_teacher", "distill", "total"):
        assert one.wall_hours[part] == pytest.approx(one.device_hours[part])
        assert one.gpu_hours[part] == pytest.approx(one.device_hours[part])
    assert "cards" not in plan.render(one)  # one-card studies print what they always printed

    four = plan.make_plan(config_mod.validate(tiny_raw(**{"compute.gpus_per_job": 2, "compute.nodes_per_job": 2})))
    assert four.cards == {"train_teacher": 4, "distill": 4}
    assert four.device_hours == one.device_hours  # the same work
    startup = {"train_teacher": 2 * plan.JOB_OVERHEAD_S / 3600, "distill": 4 * plan.JOB_OVERHEAD_S / 3600}
    for rule, overhead in startup.items():
        work = one.device_hours[rule] - overhead
        assert four.wall_hours[rule] == pytest.approx(work / 4 + overhead)  # linear scaling, start-up not divided
        assert four.gpu_hours[rule] == pytest.approx(work + 4 * overhead)  # start-up paid on every card
    text = plan.render(four)
    assert re.search(r"^\s+train_teacher\s+4\s", text, re.M) and "assumes linear scaling" in text, text
    assert plan.header_comment(four).endswith(f"~{four.gpu_hours['total']:.1f} GPU-hours estimated, 4 GPUs per job")
