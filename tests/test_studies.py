"""Many studies in one workspace (common/layout.py, common/study_links.py): each has its own tables, a teacher is
trained once for every study that needs it, and studies whose teachers differ never share one; `dvc repro`
reproduces each study listed in params.yaml, split at the teacher boundary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from soteacher.core import layout
from tests.helpers import copy_workflow, job_stats, list_studies, run, tiny_raw

pytestmark = pytest.mark.slow


def _study(work: Path, name: str, **changes) -> str:
    """Write config/<name>.yaml: the tiny study named ``name``, with ``changes`` ({"distill.methods": ...})."""
    path = f"config/{name}.yaml"
    (work / path).write_text(yaml.safe_dump(tiny_raw(name=name, **changes)))
    return path


def _snakemake(work: Path, config: str) -> dict[str, int]:
    """Run one study; the jobs it ran per rule ({} when there was nothing to do)."""
    return job_stats(run(["snakemake", "--cores", "2", "--configfile", config], work))


def test_two_studies_keep_their_tables_and_share_the_teachers_they_both_need(tmp_path):
    work = copy_workflow(tmp_path)
    a = _study(work, "a")
    b = _study(work, "b", **{"teacher.recipes": {"standard": {"ce": {}}, "soteacher": {
        "ce": {}, "lipschitz": {"weight": 1.0e-5}, "consistency": {"weight": 2.0}}}})
    c = _study(work, "c", **{"distill.methods": {"kd": {}}})  # a's teachers, other students
    assert _snakemake(work, a)["train_teacher"] == 2
    # b's standard teacher is a's; its soteacher teacher (another λ_CR) is its own
    assert _snakemake(work, b)["train_teacher"] == 1
    for study in ("a", "b"):
        assert (work / layout.tables_dir(study) / "summary.csv").is_file()
    assert _snakemake(work, a) == {} and _snakemake(work, b) == {}  # each rerun is a no-op
    # c needs a's teachers and a's KD students (the same settings): it trains nothing, it only makes its tables
    assert _snakemake(work, c) == {"aggregate": 1, "all": 1}
    teachers = sorted(p.parent.name for p in work.glob("results/teachers/*/*/metrics.json"))
    assert len(teachers) == 3 and len({t.rsplit("-", 1)[0] for t in teachers}) == 2  # 2 soteacher, 1 standard
    # each teacher was trained once: one MLflow teacher run per folder
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    runs = [r for name in ("a", "b") for r in client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], "tags.role = 'teacher'")]
    assert sorted(r.info.run_name for r in runs) == teachers
    # c's tables read a's teachers: the same teacher numbers, its own students
    ta = json.loads((work / layout.tables_dir("a") / "summary.json").read_text())
    tc = json.loads((work / layout.tables_dir("c") / "summary.json").read_text())
    assert ta["study"] == "a" and tc["study"] == "c"
    csv_a, csv_c = ((work / layout.tables_dir(s) / "summary.csv").read_text().splitlines() for s in ("a", "c"))
    assert [row for row in csv_a if ",kd," in row] == csv_c[1:]


def test_dvc_repro_reproduces_each_listed_study_and_a_kd_change_reruns_only_its_students(tmp_path):
    import shutil

    from tests.helpers import REPO

    work = copy_workflow(tmp_path)
    shutil.copytree(REPO / "pipeline_src", work / "pipeline_src", ignore=shutil.ignore_patterns("__pycache__"))
    a, b = _study(work, "a"), _study(work, "b", **{"distill.methods": {"kd": {}}})  # b shares a's teachers
    list_studies(work, {a: "a", b: "b"})
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["dvc", "config", "cache.type", "hardlink"], work)
    first = run(["dvc", "repro"], work).stdout
    for stage in ("teachers@a", "teachers@b", "students@a", "students@b"):
        assert f"Running stage '{stage}'" in first, first[-3000:]
    assert len(list(work.glob("results/teachers/*/*/metrics.json"))) == 2  # trained once, for both studies
    for study in ("a", "b"):
        assert (work / layout.study_metrics(study)).is_file()
        assert list((work / layout.study_part_dir(study, "teachers")).rglob("ep2.pt"))
    assert "Running stage" not in run(["dvc", "repro"], work).stdout
    cfg = yaml.safe_load((work / a).read_text())
    cfg["distill"]["methods"]["kd"]["kd_temperature"] = 2.0
    (work / a).write_text(yaml.safe_dump(cfg))
    third = run(["dvc", "repro"], work).stdout
    assert re.findall(r"Running stage '([^']+)'", third) == ["students@a"], third[-3000:]
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], work).stdout)
    shown = json.dumps(metrics)
    assert "results/studies/a/summary.json" in shown and "results/studies/b/summary.json" in shown
