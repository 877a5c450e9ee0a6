"""Students with soft targets by training index (methods/soft_targets.py): the p*-oracle (targets p*(x_i)) and
Filter-KD (targets: the teacher's moving-average table, recorded while the teacher trains); their config checks and
how the study plans them (the oracle is teacherless: one run per student × seed, like vanilla)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soteacher.methods import METHODS
from soteacher.methods.soft_targets import soft_target_loss
from soteacher.models import ModelOutput, build_model, feature_shapes
from soteacher.students.job import build_method
from soteacher.study import config as config_mod
from soteacher.study import student_jobs as jobs
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.averages import FILTER_TABLE
from soteacher.training.learner import Learner
from soteacher.training.loop import train
from soteacher.training.optim import make_optimizer
from soteacher.training.state import seed_everything
from tests.helpers import OPTIM, copy_workflow, dry_run_jobs, standard_recipe, tiny_data, tiny_raw

F64_EPS = torch.finfo(torch.float64).eps
F32_EPS = torch.finfo(torch.float32).eps
S = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.8, -1.2]], dtype=torch.float64)
Q = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]], dtype=torch.float64)  # a zero entry: 0·log 0 = 0
Y = torch.tensor([2, 0])


def _out(logits: torch.Tensor) -> ModelOutput:
    return ModelOutput(logits, [], [])


def _cfg(name: str, **overrides) -> dict:
    return {**config_mod.defaults_at("distill", "methods", name), **overrides}


# ---------------------------------------------------------------- the loss, by hand


@pytest.mark.parametrize("temp", [1.0, 2.0])
def test_soft_target_loss_by_hand(temp: float):
    """mean over rows of Σ_c q_c·log(q_c / softmax(s/T)_c), times T²; the temperature softens the student only."""
    expected = 0.0
    for s_row, q_row in zip(S.numpy(), Q.numpy()):
        z = s_row / temp
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        expected += sum(q * math.log(q / pc) for q, pc in zip(q_row, p) if q > 0)
    expected = expected / 2 * temp**2
    # a few dozen float64 roundings of numbers of order 1
    assert soft_target_loss(S, Q, temp).item() == pytest.approx(expected, rel=64 * F64_EPS)


@pytest.mark.parametrize("name", ["oracle", "filter_kd"])
def test_soft_target_methods_weigh_the_loss_and_never_read_the_teacher(name: str):
    cfg = _cfg(name, ce_weight=0.25, kd_temperature=2.0)
    method = METHODS[name](cfg, _out(S), None, 4)
    table = torch.zeros(4, 3, dtype=torch.float64)
    table[[3, 1]] = Q
    method.set_targets(table)
    indices = torch.tensor([3, 1])
    losses = method(_out(S), None, Y, indices)
    assert set(losses) == {"ce", "kd"}
    assert losses["ce"].item() == pytest.approx(0.25 * F.cross_entropy(S, Y).item(), rel=16 * F64_EPS)
    # the table is held in float32: its rows are Q rounded to float32
    want = cfg["kd_weight"] * soft_target_loss(S, Q.float().double(), 2.0).item()
    assert losses["kd"].item() == pytest.approx(want, rel=64 * F64_EPS)
    teacher = _out(torch.randn(2, 3, dtype=torch.float64))
    assert all(torch.equal(v, losses[k]) for k, v in method(_out(S), teacher, Y, indices).items())
    defaults = _cfg(name)
    assert defaults["ce_weight"] == 0.0 and defaults["kd_temperature"] == 1.0
    assert defaults["kd_weight"] == {"oracle": 1.0, "filter_kd": 2.0}[name]


def test_a_wrong_target_table_is_refused_in_words():
    method = METHODS["oracle"](_cfg("oracle"), _out(S), None, 4)
    with pytest.raises(ValueError, match=r"oracle: the target table is \(3, 3\), the training split needs \(4, 3\)"):
        method.set_targets(torch.full((3, 3), 1 / 3))
    with pytest.raises(RuntimeError, match="oracle: no target table"):
        method(_out(S), None, Y, torch.tensor([0, 1]))


# ---------------------------------------------------------------- targets through the job's construction path


def _study(**changes) -> dict:
    return config_mod.validate(tiny_raw(**changes), deep=False)


def test_the_oracle_targets_are_pstar_by_index(tiny_config):
    cfg = _study(**{"distill.methods": {"vanilla": {}, "oracle": {}}})
    job = jobs.vanilla_jobs(cfg)[0]
    spec = jobs.job_spec(cfg, job, vanilla=True)
    assert spec.teacher is None and [s.method for s in spec.students] == ["vanilla", "oracle"]
    data = tiny_data(cfg)
    student = build_model(spec.student, data.num_classes)
    method = build_method(spec, "oracle", student, data, None, None)
    indices = torch.tensor([3, 0, 7])
    assert torch.equal(method.targets[indices], data.train.pstar[indices].float())
    logits = torch.randn(3, data.num_classes)
    loss = method(_out(logits), None, data.train.labels[indices], indices)["kd"]
    assert torch.equal(loss, soft_target_loss(logits, data.train.pstar[indices].float(), 1.0))
    assert METHODS["oracle"].needs_teacher is False and METHODS["vanilla"].needs_teacher is False


def test_filter_kd_targets_are_the_checkpoint_table_by_index(tiny_config):
    cfg = _study(**{"teacher.filter_table": {}, "distill.methods": {"kd": {}, "filter_kd": {}}})
    job = next(j for j in jobs.student_jobs(cfg) if j["method"] == "filter_kd")
    spec = jobs.job_spec(cfg, job)
    assert [s.method for s in spec.students] == ["kd", "filter_kd"]  # one job: the checkpoint's teacher forward
    data = tiny_data(cfg)
    student = build_model(spec.student, data.num_classes)
    teacher_sample = feature_shapes(build_model("resnet8", data.num_classes), data.image_shape)
    table = torch.softmax(torch.randn(len(data.train), data.num_classes), dim=1)
    method = build_method(spec, "filter_kd", student, data, teacher_sample, {"model": {}, FILTER_TABLE: table})
    assert torch.equal(method.targets[torch.tensor([3, 0, 7])], table[[3, 0, 7]])
    with pytest.raises(ValueError, match="filter_kd: the teacher checkpoint holds no filter_table"):
        build_method(spec, "filter_kd", student, data, teacher_sample, {"model": {}})


# ---------------------------------------------------------------- the teacher records the table


def _teacher_run(data, filter_table: dict | None, visits: list | None = None):
    seed_everything(0)
    model = build_model("resnet8", data.num_classes)
    objective = TeacherObjective(model, standard_recipe(), len(data.train), data.num_classes, 2,
                                 filter_table=filter_table)
    if visits is not None:  # what the objective sees: the batch's logits and sample indices
        objective.register_forward_pre_hook(
            lambda _m, args: visits.append((args[0].logits.detach().clone(), args[3].clone())))
    optimizer, scheduler = make_optimizer(model.parameters(), OPTIM, OPTIM.lr, 2)
    train([Learner("teacher", model, objective, optimizer, scheduler)], data, epochs=2, batch_size=16, seed=0)
    return model, objective


def test_the_teacher_records_the_filter_table_without_changing_its_weights(tiny_config):
    data = tiny_data(tiny_config)
    visits: list = []
    model, objective = _teacher_run(data, {"alpha": 0.05, "temperature": 1.0}, visits)
    plain, _ = _teacher_run(data, None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    table = objective.filter_table.table
    assert table.shape == (len(data.train), data.num_classes)
    assert "filter_table.table" in objective.state_dict()  # in the resumable training state
    # replayed by hand: the first visit copies the prediction in, every later one moves it 5 % of the way
    expected = torch.zeros_like(table)
    seen = torch.zeros(len(data.train), dtype=torch.bool)
    for logits, idx in visits:
        for row, i in zip(F.softmax(logits.float(), dim=1), idx.tolist()):
            expected[i] = row if not seen[i] else 0.95 * expected[i] + 0.05 * row
            seen[i] = True
    assert seen.all()
    # entries ≤ 1, two visits: a few float32 roundings each
    assert torch.allclose(table, expected, rtol=0, atol=8 * F32_EPS)
    assert torch.allclose(table.sum(dim=1), torch.ones(len(data.train)), rtol=0, atol=8 * F32_EPS)


# ---------------------------------------------------------------- config checks and the plan


def test_config_refuses_oracle_without_pstar_and_filter_kd_without_the_table():
    with pytest.raises(config_mod.ConfigError, match=r"distill\.methods\.oracle: the oracle student learns p\*\(x\), "
                                                     r".*data set 'cifar100' does not have"):
        config_mod.validate({"data": {"dataset": "cifar100"}, "distill": {"methods": {"oracle": {}}}}, deep=False)
    with pytest.raises(config_mod.ConfigError, match=r"distill\.methods\.filter_kd: .*only with teacher\.filter_table"):
        config_mod.validate({"distill": {"methods": {"filter_kd": {}}}}, deep=False)
    with pytest.raises(config_mod.ConfigError, match=r"distill\.methods\.filter_kd: imported teachers \(ref\)"):
        config_mod.validate({"teacher": {"filter_table": {}, "imports": {"ref": {"arch": "resnet8", "path": "x.pt"}}},
                             "distill": {"methods": {"filter_kd": {}}}}, deep=False)
    filled = config_mod.validate({"teacher": {"filter_table": {}}}, deep=False)["teacher"]["filter_table"]
    assert filled == {"alpha": 0.05, "temperature": 1.0}


def test_the_filter_table_renames_only_teachers_that_record_it():
    base, on = _study(), _study(**{"teacher.filter_table": {}})
    explicit_off = _study(**{"teacher.filter_table": None})
    ids = [[j["teacher_hash"] for j in jobs.teacher_jobs(c)] for c in (base, on, explicit_off)]
    assert ids[0] == ids[2] and not set(ids[0]) & set(ids[1])


def test_the_teacherless_names_are_the_methods_that_need_no_teacher():
    """study.student_jobs names them without torch; the classes say it too (the distill job checks it)."""
    assert {n for n, cls in METHODS.items() if not cls.needs_teacher} == set(jobs.TEACHERLESS)


@pytest.mark.parametrize("group_methods", [True, False])
def test_teacherless_methods_are_one_run_per_student_and_seed(group_methods: bool):
    cfg = _study(**{"teacher.filter_table": {}, "distill.seeds": [0, 1], "distill.group_methods": group_methods,
                    "distill.methods": {"vanilla": {}, "kd": {}, "oracle": {}, "filter_kd": {}}})
    assert jobs.distilled_methods(cfg) == ["kd", "filter_kd"] and jobs.teacherless_methods(cfg) == ["vanilla", "oracle"]
    oracle_rows = [j for j in jobs.student_jobs(cfg) if j["method"] == "oracle"]
    assert len(oracle_rows) == 2 * 2 * 2  # recipes × checkpoints × seeds: a row beside each KD row
    assert len({jobs.student_metrics(j) for j in oracle_rows}) == 2  # but one run per seed
    assert [(j["method"], j["seed"]) for j in jobs.vanilla_jobs(cfg)] == [
        ("vanilla", 0), ("oracle", 0), ("vanilla", 1), ("oracle", 1)]
    per_seed = 1 if group_methods else 2  # jobs per seed: the two methods together or apart
    assert jobs.vanilla_job_count(cfg) == 2 * per_seed
    assert jobs.distill_job_count(cfg) == 2 * 2 * 2 * per_seed


@pytest.mark.slow
def test_snakemake_plans_teacherless_and_distilled_arms(tmp_path):
    """``snakemake -n``: train_vanilla trains vanilla + oracle once per seed; distill jobs train kd + filter_kd."""
    import yaml

    raw = tiny_raw(**{"teacher.filter_table": {}, "distill.seeds": [0, 1],
                      "distill.methods": {"vanilla": {}, "kd": {}, "oracle": {}, "filter_kd": {}}})
    config_file = tmp_path / "arms.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work", config_file)
    planned = dry_run_jobs(work)
    assert planned["train_vanilla"] == 2  # one per seed, vanilla and oracle in it
    assert planned["distill"] == 2 * 2 * 2  # recipes × checkpoints × seeds, kd and filter_kd in each
    assert planned["train_teacher"] == 2


@pytest.mark.slow
def test_the_real_jobs_record_the_table_and_train_both_arms(tmp_path, monkeypatch):
    """One teacher, its last checkpoint, one seed, run by Snakemake for real: the checkpoint holds a (N, C) table on
    the simplex; train_vanilla trains vanilla and oracle, the distill job kd and filter_kd; collect lists the
    oracle's one run under the checkpoint."""
    import yaml

    from soteacher.core import layout
    from soteacher.core.io import load_checkpoint
    from soteacher.report.collect import collect
    from tests.helpers import run

    raw = tiny_raw(**{"teacher.filter_table": {}, "teacher.recipes": {"standard": {"ce": {}}},
                      "distill.checkpoints": "last",
                      "distill.methods": {"vanilla": {}, "kd": {}, "oracle": {}, "filter_kd": {}}})
    config_file = tmp_path / "arms.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work", config_file)
    run(["snakemake", "--cores", "2"], work)  # the whole study, tables included
    cfg = config_mod.validate(raw, deep=False)
    (teacher,) = jobs.teacher_jobs(cfg)
    n, c = raw["data"]["synthetic"]["train_size"], raw["data"]["synthetic"]["num_classes"]
    for epoch in (1, 2):
        table = load_checkpoint(work / layout.teacher_checkpoint(teacher, epoch))[FILTER_TABLE]
        assert table.shape == (n, c) and (table >= 0).all()
        assert torch.allclose(table.sum(dim=1), torch.ones(n), rtol=0, atol=8 * F32_EPS)
    monkeypatch.chdir(work)
    rows, missing = collect(cfg)
    assert not missing and sorted(rows["method"]) == ["filter_kd", "kd", "oracle", "vanilla"]
    oracle = rows[rows["method"] == "oracle"].iloc[0]
    assert oracle["teacher_epoch"] == 2 and math.isnan(oracle["agreement"])  # no teacher: no fidelity to one
