"""The student side of the study grid: which students a config implies, how distill jobs group them, each job's
outputs, log and spec. Rules ``distill`` and ``train_alone`` and the planner read all of it from here.

A distill job trains, in one loop, the students of one teacher checkpoint × student architecture that it groups:
all methods (``distill.group_methods``, sharing the teacher forward) and all seeds (``distill.group_seeds``); the
dimensions it does not group are wildcards, one job per value. The student trained alone (method ``ALONE``) needs
no teacher: rule train_alone trains it once per student × seed, and its batches are those of every distilled
student with the same seed (the data order and augmentation follow the seed alone).
"""

from __future__ import annotations

import re
from itertools import product

from soteacher.core import layout
from soteacher.study.config import distill_epochs, distill_pairs, job_compute
from soteacher.study.teacher_jobs import imported, job_common, science_hash, teacher_jobs

ALONE = "vanilla"
# a student's teacher checkpoint; "data" stays: it names the student trained alone too
CHECKPOINT_FIELDS = tuple(f for f in layout.TEACHER_FIELDS if f != "data") + ("epoch",)


def student_hash(method_cfg: dict, epochs: int, optim: dict, compute: dict) -> str:
    """What determines a student's weights beside its teacher checkpoint, data, architecture and seed (all in its
    folder's path): the method's settings, the distillation epochs and optimiser, and the compute settings."""
    return layout.stable_hash({"method": method_cfg, "epochs": epochs, "optim": optim, "compute": compute})


def _student_hash(config: dict, method: str) -> str:
    d = config["distill"]
    return student_hash(d["methods"][method], d["epochs"], d["optim"], job_compute(config["compute"]))


def teacher_distill_epochs(config: dict, recipe: str) -> list[int]:
    """Checkpoint epochs distilled from a teacher: ``distill.teacher_epochs``, or an import's one epoch."""
    imp = imported(config, recipe)
    return [imp["epoch"]] if imp else distill_epochs(config)


def student_groups(config: dict) -> list[dict]:
    """One entry per (teacher checkpoint, student, seed): the methods that share a teacher forward.

    Students of a teacher architecture: those paired with it in ``distill.pairs``, or every
    ``distill.students`` entry when there are no pairs."""
    d = config["distill"]
    students_of: dict[str, list[str]] = {}
    for teacher_arch, student in distill_pairs(config):
        students_of.setdefault(teacher_arch, []).append(student)
    return [
        {**job, "epoch": epoch, "student": student, "seed": seed}
        for job in teacher_jobs(config)
        for epoch, student, seed in product(
            teacher_distill_epochs(config, job["recipe"]),
            # an imported teacher whose arch no trained teacher has distils into distill.students
            students_of.get(job["teacher_arch"]) or (d["students"] if imported(config, job["recipe"]) else []),
            d["seeds"])
    ]


def student_jobs(config: dict) -> list[dict]:
    """Every student result a table has a row for: (teacher checkpoint, student, seed, method). The ``ALONE``
    method appears under every teacher checkpoint too (its baseline row), but is one run: ``student_metrics``."""
    return [{**g, "method": m, "student_hash": _student_hash(config, m)}
            for g, m in product(student_groups(config), config["distill"]["methods"])]


def distilled_methods(config: dict) -> list[str]:
    """The methods a distill job trains: all but the student trained alone."""
    return [m for m in config["distill"]["methods"] if m != ALONE]


def alone_jobs(config: dict) -> list[dict]:
    """One run of the student trained alone per student architecture × seed, when the study has it."""
    if ALONE not in config["distill"]["methods"]:
        return []
    students = dict.fromkeys(g["student"] for g in student_groups(config))
    return [{"data": layout.data_id(config["data"]), "method": ALONE, "student_hash": _student_hash(config, ALONE),
             "student": student, "seed": seed} for student, seed in product(students, config["distill"]["seeds"])]


def run_of(job: dict) -> dict:
    """The run behind a table row: the row itself, or, for the student trained alone, its teacherless run."""
    return {k: v for k, v in job.items() if k not in CHECKPOINT_FIELDS} if job["method"] == ALONE else job


def student_metrics(job: dict) -> str:
    """Where a student row's metrics file is: under its teacher checkpoint, or the student-alone folder."""
    return str(layout.student_dir(run_of(job)) / layout.STUDENT_METRICS_FILE)


def student_outputs(config: dict) -> list[str]:
    """Every student metrics file the tables read: what rule aggregate asks for."""
    return sorted({student_metrics(job) for job in student_jobs(config)})


# --- distill jobs: what one job groups, and the rules' outputs, logs and specs ------------------------------


def grouped(config: dict, alone: bool = False) -> dict[str, list]:
    """The dimensions one job trains together, with their values: ``method`` as (method, student_hash) pairs (the
    student trained alone is one method), ``seed`` as seeds."""
    d = config["distill"]
    # a study without the student trained alone has no train_alone job: its rule keeps the method a wildcard
    has_alone = ALONE in d["methods"]
    methods = ([ALONE] if has_alone else None) if alone else distilled_methods(config) if d["group_methods"] else None
    dims = {"method": None if methods is None else [(m, _student_hash(config, m)) for m in methods],
            "seed": d["seeds"] if d["group_seeds"] else None}
    return {dim: values for dim, values in dims.items() if values is not None}


def job_name(config: dict, alone: bool = False) -> str:
    """A job's name within its folder of students (its log's name): the wildcards it does not group, and for
    grouped methods the hash of their settings (another study distilling the same checkpoint differently writes
    another log)."""
    dims = grouped(config, alone)
    seed = "" if "seed" in dims else "-s{seed}"
    if "method" in dims:
        return "{student}" + seed + "-" + layout.stable_hash(dims["method"])
    return "{method}-{student_hash}/{student}" + seed


def _job_folder(alone: bool) -> str:
    return layout.ALONE_STUDENTS if alone else layout.CHECKPOINT_STUDENTS


def job_outputs(config: dict, alone: bool = False) -> list[str]:
    """Outputs of rule distill (or train_alone), with the wildcards the rule does not group."""
    dims = grouped(config, alone)
    folder = layout.ALONE_DIR if alone else layout.STUDENT_DIR
    fixed = [{"method": m, "student_hash": h} for m, h in dims.get("method", [])] or [{}]
    seeds = [{"seed": s} for s in dims.get("seed", [])] or [{}]
    return [layout.with_wildcards(f"{folder}/{file}", **m, **s)
            for file in (layout.STUDENT_METRICS_FILE, layout.STUDENT_MODEL_FILE) for m in fixed for s in seeds]


def job_log(config: dict, alone: bool = False) -> str:
    return layout.log("students", f"{_job_folder(alone)}/{job_name(config, alone)}")


def job_benchmark(config: dict, alone: bool = False) -> str:
    return layout.benchmark("students", f"{_job_folder(alone)}/{job_name(config, alone)}")


def method_pattern(config: dict) -> str:
    """Wildcard constraint of rule distill: the methods it trains."""
    return "|".join(re.escape(m) for m in distilled_methods(config)) or "(?!)"


def distill_job_count(config: dict) -> int:
    """Distill jobs Snakemake runs: the distinct (folder, job name) of the distilled students."""
    name = f"{_job_folder(False)}/{job_name(config)}"
    return len({name.format(**job) for job in student_jobs(config) if job["method"] != ALONE})


def alone_job_count(config: dict) -> int:
    """Jobs of the student trained alone: one per student × seed, or per student with ``distill.group_seeds``."""
    name = f"{_job_folder(True)}/{job_name(config, alone=True)}"
    return len({name.format(**job) for job in alone_jobs(config)})


def teacher_inputs(job: dict) -> dict[str, str]:
    """What a distill job reads: the teacher checkpoint, the teacher's metrics file and the data."""
    return {"checkpoint": str(layout.teacher_checkpoint(job, job["epoch"])),
            "metrics": str(layout.teacher_metrics(job)), "data": str(layout.data_dir(job["data"]))}


def job_spec(config: dict, job: dict, alone: bool = False) -> dict:
    """The spec of the distill (or train_alone) job with these wildcard values."""
    dims = grouped(config, alone)
    methods = [m for m, _ in dims["method"]] if "method" in dims else [job["method"]]
    seeds = dims.get("seed") or [int(job["seed"])]
    if alone:
        return distill_spec(config, None, job["student"], seeds, methods)
    teacher = {"arch": job["teacher_arch"], "recipe": job["recipe"], "seed": int(job["teacher_seed"]),
               "hash": job["teacher_hash"], "epoch": int(job["epoch"])}
    return distill_spec(config, teacher, job["student"], seeds, methods)


def distill_spec(config: dict, teacher: dict | None, student: str, seeds: list[int], methods: list[str]) -> dict:
    """One distill job: every (seed, method) student of one teacher checkpoint (``teacher``: arch, recipe, seed,
    hash, epoch), trained in one loop; with no teacher, the student trained alone."""
    d = config["distill"]
    spec = {
        **job_common(config),
        "role": "student",
        "teacher": teacher,
        "student": student,
        "seeds": [int(s) for s in seeds],
        "epochs": d["epochs"],
        "optim": d["optim"],
        "methods": {m: d["methods"][m] for m in methods},
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def spec_students(spec: dict) -> list[tuple[int, str, dict]]:
    """(seed, method, layout fields) of each student a distill job spec trains, in training order."""
    t = spec["teacher"]
    where = {"data": layout.data_id(spec["data"]), "student": spec["student"]}
    if t is not None:
        where |= {"teacher_arch": t["arch"], "recipe": t["recipe"], "teacher_seed": t["seed"],
                  "teacher_hash": t["hash"], "epoch": t["epoch"]}
    return [(seed, method, {**where, "method": method, "seed": seed,
                            "student_hash": student_hash(spec["methods"][method], spec["epochs"], spec["optim"],
                                                         spec["compute"])})
            for seed in spec["seeds"] for method in spec["methods"]]
