"""End to end, for real: Snakemake runs the tiny study, MLflow holds every run, DVC reproduces it."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from soteacher.core import layout
from soteacher.core.specs import to_json
from soteacher.study import config as config_mod
from soteacher.study import student_jobs, teacher_jobs
from tests.helpers import REPO, TINY_CONFIG, copy_workflow, dry_run_jobs, run, subprocess_env

TABLES, FIGURES = layout.tables_dir("tiny"), layout.figures_dir("tiny")  # the tiny study's own folders


def cfg_of(work: Path) -> dict:
    return config_mod.load(work / "config/config.yaml", deep=False)

pytestmark = pytest.mark.slow
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """The tiny study with the vanilla student (trained alone, once per seed) next to its KD and FitNet students."""
    root = tmp_path_factory.mktemp("study")
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["distill"]["methods"]["vanilla"] = {}
    (root / "tiny_vanilla.yaml").write_text(yaml.safe_dump(cfg))
    (root / "work").mkdir()
    work = copy_workflow(root / "work", root / "tiny_vanilla.yaml")
    run(["snakemake", "--cores", "2"], work)
    return work


def test_outputs_tables_and_figure(study):
    table = pd.read_csv(study / TABLES / "summary.csv")
    assert len(table) == 2 * 2 * 3  # recipes x checkpoints x methods
    assert set(table["recipe"]) == {"standard", "soteacher"}
    assert set(table["method"]) == {"kd", "fitnet", "vanilla"}
    # one vanilla run serves every teacher checkpoint's rows: it never saw a teacher
    vanilla = table[table["method"] == "vanilla"]
    assert vanilla["student_last_mean"].nunique() == 1
    assert len(list(study.glob("results/students/synthetic-*/vanilla-*/resnet8/seed0/metrics.json"))) == 1
    assert not list(study.glob("results/students/synthetic-*/*/ep*/vanilla-*"))
    paired = pd.read_csv(study / TABLES / "students_paired.csv")
    assert set(paired["method"]) == {"kd", "fitnet"} and paired["delta_vanilla_n"].eq(1).all()
    assert table["teacher_tv_pstar"].between(0, 1).all()
    assert (table["n"] == 1).all()
    md = (study / TABLES / "summary.md").read_text()
    # the best-epoch column names the split that chose the epoch when it is not the test split
    assert "student acc, last epoch (%)" in md and re.search(r"student acc, best epoch(, chosen on val)? \(%\)", md)
    png = (study / FIGURES / "teacher_vs_student.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    summary = json.loads((study / TABLES / "summary.json").read_text())
    assert set(summary["recipes"]) == {"standard", "soteacher"} and summary["partial"] is False
    for ep in (1, 2):
        assert len(list(study.glob(f"results/teachers/synthetic-*/resnet8-soteacher-s0-*/ep{ep}.pt"))) == 1


def test_every_run_is_in_mlflow_with_parent_links(study):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{study}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    teachers = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "teacher"}
    students = [r for r in runs if r.data.tags.get("role") == "student"]
    assert len(teachers) == 2 and len(students) == 8 + 1  # distilled students + the one vanilla student
    for r in runs:
        assert r.info.status == "FINISHED"
        for tag in ("dataset", "seed", "git_commit", "git_dirty", "identity", "host"):
            assert tag in r.data.tags, tag
    alone = [r for r in students if r.data.tags["method"] == "vanilla"]
    assert len(alone) == 1 and "mlflow.parentRunId" not in alone[0].data.tags and "recipe" not in alone[0].data.tags
    for r in students:
        if r is alone[0]:
            continue
        parent = teachers[r.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["recipe"] == r.data.tags["recipe"]
        for tag in ("method", "student", "epoch"):
            assert tag in r.data.tags
        assert "last_acc" in r.data.metrics and "best_acc" in r.data.metrics
        history = client.get_metric_history(r.info.run_id, "test_acc")
        assert len(history) == 1  # one student epoch
    teacher = next(iter(teachers.values()))
    assert len(client.get_metric_history(teacher.info.run_id, "train_ce")) == 2
    assert teacher.data.params["recipe"] in ("standard", "soteacher")


def test_rerun_is_a_noop_and_kd_change_reruns_only_students(study):
    assert dry_run_jobs(study) == {}
    cfg_path = study / "config/config.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["distill"]["methods"]["kd"]["kd_temperature"] = 2.0
    cfg_path.write_text(yaml.safe_dump(cfg))
    try:
        jobs = dry_run_jobs(study)
    finally:
        cfg_path.write_text(original)
    assert "train_teacher" not in jobs and "prepare_data" not in jobs
    assert jobs.get("distill") == 4 and jobs.get("aggregate") == 1


def test_malformed_config_stops_snakemake_before_any_job(work):
    (work / "config/config.yaml").write_text("teacher:\n  epochs: -2\ndistill:\n  methods: {crdd: {}}\n")
    out = run(["snakemake", "--cores", "1"], work, check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "teacher.epochs: -2 is less than the minimum of 1" in text
    assert "unknown key 'distill.methods.crdd'" in text
    assert not (work / "results").exists()


def _teacher_spec(**compute) -> str:
    spec = teacher_jobs.teacher_spec(config_mod.load(TINY_CONFIG, deep=False), "resnet8", "standard", 0)
    return to_json(dataclasses.replace(spec, compute=dataclasses.replace(spec.compute, **compute)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_device_without_a_gpu_is_a_plain_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soteacher", "train-teacher", "--spec", _teacher_spec(device="cuda")],
                         cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(CUDA_VISIBLE_DEVICES=""))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: compute.device is 'cuda' but no CUDA GPU is visible" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_says_where_it_looked(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soteacher", "train-teacher", "--spec", _teacher_spec()],
                         cwd=tmp_path, capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 2
    assert re.search(r"prepared synthetic data not found at results/data/synthetic-[0-9a-f]{8}/tensors.pt", out.stderr)


def test_a_spec_of_another_shape_is_refused_naming_the_keys(tmp_path):
    out = subprocess.run([sys.executable, "-m", "soteacher", "train-teacher", "--spec",
                          json.dumps({**json.loads(_teacher_spec()), "recipe_values": {}, "terms": None})],
                         cwd=tmp_path, capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 2
    assert "--spec is not a TeacherSpec: TeacherSpec: unknown key(s) recipe_values" in out.stderr


@pytest.mark.parametrize(("group_methods", "group_seeds"), [(False, False), (True, False), (False, True),
                                                          (True, True)])
def test_planned_distill_jobs_are_the_jobs_snakemake_schedules(tmp_path, group_methods, group_seeds):
    """The planner's distill job count (study.student_jobs, which the distill rule's outputs also come from) is the
    number of jobs Snakemake schedules, for each grouping."""
    from soteacher.study import config as config_mod
    from soteacher.study import student_jobs as jobs

    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["distill"].update(seeds=[0, 1], group_methods=group_methods, group_seeds=group_seeds)
    config_file = tmp_path / "grid.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work", config_file)
    expected = jobs.distill_job_count(config_mod.validate(cfg, deep=False))
    assert dry_run_jobs(work)["distill"] == expected == 2 * 2 * (1 if group_methods else 2) * (1 if group_seeds
                                                                                                  else 2)


def test_plain_snakemake_uses_the_default_workflow_profile(work):
    """`snakemake --cores N` (no profile named) picks up workflow/profiles/default through ./profiles."""
    out = run(["snakemake", "-n", "--cores", "2"], work)
    assert "Using workflow specific profile profiles/default" in out.stdout + out.stderr


def test_dvc_repro_runs_then_is_a_noop_then_reruns_only_students(work):
    import shutil

    shutil.copytree(REPO / "pipeline_src", work / "pipeline_src", ignore=shutil.ignore_patterns("__pycache__"))
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    first = run(["dvc", "repro"], work)
    assert "Running stage 'teachers@tiny'" in first.stdout and "Running stage 'students@tiny'" in first.stdout
    assert (work / "dvc.lock").is_file()
    assert (work / layout.study_metrics("tiny")).is_file()
    second = run(["dvc", "repro"], work)
    assert "Running stage" not in second.stdout
    cfg_path = work / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["distill"]["methods"]["kd"]["kd_temperature"] = 2.0
    cfg_path.write_text(yaml.safe_dump(cfg))
    package = work / "pipeline_src/soteacher"
    # every file the teachers do not run: the students, their methods, the report and their rules
    assert all((package / part).is_dir() for part in ("students", "methods", "report"))
    not_teachers = [*(path for part in ("students", "methods", "report") for path in
                      sorted((package / part).rglob("*.py"))), package / "study/student_jobs.py",
                    work / "workflow/rules/distill.smk", work / "workflow/rules/report.smk"]
    for path in not_teachers:
        with open(path, "a") as f:
            f.write("# edited\n")
    third = run(["dvc", "repro"], work)
    assert "Running stage 'students@tiny'" in third.stdout
    assert "Running stage 'teachers@tiny'" not in third.stdout
    with open(package / "training/loop.py", "a") as f:  # the loop every teacher runs
        f.write("# edited\n")
    assert "teachers@tiny" in json.loads(run(["dvc", "status", "--json"], work).stdout)
    # every module a teacher job loads is a dependency of the teachers stage, and none is on the student side
    loaded = run([sys.executable, "-c", "import sys, soteacher.cli, soteacher.teachers.job, "
                  "soteacher.teachers.importer; "
                  "print(' '.join(m.__file__ for n, m in sys.modules.items() if n.startswith('soteacher')))"],
                 work).stdout.split()
    root = Path(loaded[0]).parent.parent  # pipeline_src, wherever soteacher was imported from
    loaded = ["pipeline_src/" + Path(f).relative_to(root).as_posix() for f in loaded]
    deps = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]["teachers"]["do"]["deps"]
    uncovered = [f for f in loaded if not any(f == d or f.startswith(d + "/") for d in deps)]
    assert len(loaded) > 10 and uncovered == [], uncovered
    metrics = run(["dvc", "metrics", "show", "--json"], work)
    assert "student_last_acc" in metrics.stdout
    plots = run(["dvc", "plots", "show", "--json"], work).stdout
    figures = layout.figures_dir("tiny")
    assert all(f"{figures}/{name}.png" in plots for name in ("teacher_vs_student", "delta_by_method",
                                                             "ablation")), plots[:2000]


def test_grouped_seeds_run_one_job_per_checkpoint_with_the_numbers_of_one_job_per_seed(tmp_path):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["teacher"]["recipes"] = {"standard": {"ce": {}}}
    cfg["distill"].update(seeds=[0, 1], group_seeds=True)
    config_file = tmp_path / "grouped.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work", config_file)
    assert dry_run_jobs(work)["distill"] == 2  # checkpoints 1 and 2, each with 2 seeds x 2 methods
    run(["snakemake", "--cores", "2"], work)
    students = sorted((work / "results/students").rglob("metrics.json"))
    assert len(students) == 2 * 2 * 2
    [checkpoint_logs] = work.glob("logs/students/synthetic-*/resnet8-standard-s0-*/ep1")
    assert [p.name for p in checkpoint_logs.iterdir()] == [f"resnet8-{student_jobs.job_name(cfg_of(work))[-8:]}.log"]
    grouped = {p: json.loads(p.read_text())["history"] for p in students}
    cfg["distill"]["group_seeds"] = False
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    # the same students (grouping is not in their folders' hashes): nothing to do until forced
    assert dry_run_jobs(work) == {}
    run(["snakemake", "--cores", "2", "--forcerun", "distill"], work)
    for path, history in grouped.items():
        assert json.loads(path.read_text())["history"] == history, path
    assert len(list(checkpoint_logs.glob("resnet8-s1-*.log"))) == 1
