"""The study grid: which jobs a config implies and where their results go."""

from __future__ import annotations

from soteacher.study import config as config_mod
from soteacher.study import student_jobs as jobs
from soteacher.study.identity import data_id


def _with_vanilla(tiny_config: dict, **distill) -> dict:
    raw = {**tiny_config, "distill": {**tiny_config["distill"], **distill}}
    raw["distill"]["methods"] = {**tiny_config["distill"]["methods"], "vanilla": {}}
    return config_mod.validate(raw, deep=False)


def test_the_vanilla_student_is_one_run_per_student_and_seed_listed_under_every_checkpoint(tiny_config):
    cfg = _with_vanilla(tiny_config, seeds=[0, 1])
    rows = [j for j in jobs.student_jobs(cfg) if j["method"] == "vanilla"]
    assert len(rows) == 2 * 2 * 2  # recipes x checkpoints x seeds: a baseline row beside each KD row
    data, vanilla = data_id(cfg), f"vanilla-{rows[0]['student_hash']}"
    paths = {jobs.student_metrics(j) for j in rows}
    assert paths == {f"results/students/{data}/{vanilla}/resnet8/seed{s}/metrics.json" for s in (0, 1)}
    assert jobs.vanilla_jobs(cfg) == [{"data": data, "method": "vanilla", "student_hash": rows[0]["student_hash"],
                                       "student": "resnet8", "seed": s} for s in (0, 1)]
    kd = next(j for j in jobs.student_jobs(cfg) if j["method"] == "kd")
    assert jobs.student_metrics(kd) == (f"results/students/{data}/resnet8-standard-s0-{kd['teacher_hash']}/ep1/"
                                        f"kd-{kd['student_hash']}/resnet8/seed0/metrics.json")
    # distill jobs train the other methods only; the vanilla jobs group seeds like distill jobs do
    assert jobs.distilled_methods(cfg) == ["kd", "fitnet"]
    assert jobs.distill_job_count(cfg) == 2 * 2 * 2 and jobs.vanilla_job_count(cfg) == 2
    grouped = _with_vanilla(tiny_config, seeds=[0, 1], group_seeds=True)
    assert jobs.distill_job_count(grouped) == 2 * 2 and jobs.vanilla_job_count(grouped) == 1


def test_a_study_of_the_vanilla_student_alone_has_no_distill_job(tiny_config):
    raw = {**tiny_config, "distill": {**tiny_config["distill"], "methods": {"vanilla": {}}}}
    cfg = config_mod.validate(raw, deep=False)
    assert jobs.distill_job_count(cfg) == 0 and jobs.vanilla_job_count(cfg) == 1
    assert jobs.vanilla_job_count(tiny_config) == 0 and jobs.vanilla_jobs(tiny_config) == []


def test_a_study_of_teacherless_students_only_gives_rule_distill_one_set_of_wildcards(tiny_config):
    """Snakemake refuses a rule whose outputs, log and benchmark differ in wildcards: with no distilled method the
    method stays a wildcard (which its constraint never matches) instead of vanishing from the outputs only."""
    import re

    raw = {**tiny_config, "distill": {**tiny_config["distill"], "methods": {"vanilla": {}, "oracle": {}}}}
    cfg = config_mod.validate(raw, deep=False)
    assert jobs.distill_job_count(cfg) == 0 and jobs.vanilla_job_count(cfg) == 1

    def wildcards(text: str) -> set[str]:
        return set(re.findall(r"{(\w+)", text))

    outputs = [wildcards(o) for o in jobs.job_outputs(cfg)]
    assert all(w == outputs[0] for w in outputs)
    assert outputs[0] == wildcards(jobs.job_log(cfg)) == wildcards(jobs.job_benchmark(cfg))
    assert "method" in outputs[0] and not re.fullmatch(jobs.method_pattern(cfg), "vanilla")
