"""The student side of the study grid: which students a config implies, how distill jobs group them, each job's
outputs, log and spec (``students.spec``). Rules ``distill`` and ``train_vanilla`` and the planner read all of it
from here.

A distill job trains, in one loop, the students of one teacher checkpoint × student architecture that it groups:
all methods (``distill.group_methods``, sharing the teacher forward) and all seeds (``distill.group_seeds``); the
dimensions it does not group are wildcards, one job per value. The teacherless students (``TEACHERLESS``: the vanilla
student, method ``VANILLA``, labels only; the p*-oracle) need no teacher: rule train_vanilla trains them once per
student × seed, and their batches are those of every distilled student with the same seed (the data order and
augmentation follow the seed alone). Like the vanilla student's, their rows stand under every teacher checkpoint.
"""

from __future__ import annotations

import re
from itertools import product

from soteacher.core import layout
from soteacher.core.digest import stable_hash
from soteacher.core.settings import Optim
from soteacher.students.spec import DistillSpec, StudentRun, TeacherCheckpoint
from soteacher.study.config import distill_pairs, distilled_checkpoints
from soteacher.study.identity import data_id, student_id
from soteacher.study.teacher_jobs import imported, job_settings, teacher_jobs

VANILLA = "vanilla"  # the method of the student trained on labels alone: the baseline of every KD table
ORACLE = "oracle"  # the p*-oracle student: distilled from p*(x) of each training input, the positive control
# the methods that read no teacher (their classes' ``needs_teacher`` is False; named here so the planner and Snakemake
# need no torch): trained by rule train_vanilla, one run per student × seed
TEACHERLESS = (VANILLA, ORACLE)
# a student's teacher checkpoint; "data" stays: it names the vanilla student too
CHECKPOINT_FIELDS = tuple(f for f in layout.TEACHER_FIELDS if f != "data") + ("epoch",)


def checkpoints_of(config: dict, recipe: str) -> list[int]:
    """The epochs of a teacher's distilled checkpoints: ``distill.checkpoints``, or an import's one epoch."""
    imp = imported(config, recipe)
    return [imp["epoch"]] if imp else distilled_checkpoints(config)


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
            checkpoints_of(config, job["recipe"]),
            # an imported teacher whose arch no trained teacher has distils into distill.students
            students_of.get(job["teacher_arch"]) or (d["students"] if imported(config, job["recipe"]) else []),
            d["seeds"])
    ]


def student_jobs(config: dict) -> list[dict]:
    """Every student result a table has a row for: (teacher checkpoint, student, seed, method). A ``TEACHERLESS``
    method appears under every teacher checkpoint too (the vanilla student's baseline row), but is one run:
    ``student_metrics``."""
    ids = {m: student_id(config, m) for m in config["distill"]["methods"]}
    return [{**g, "method": m, "student_hash": ids[m]} for g, m in product(student_groups(config), ids)]


def distilled_methods(config: dict) -> list[str]:
    """The methods a distill job trains: all but the teacherless ones."""
    return [m for m in config["distill"]["methods"] if m not in TEACHERLESS]


def teacherless_methods(config: dict) -> list[str]:
    """The study's methods that rule train_vanilla trains (``TEACHERLESS``), in the config's order."""
    return [m for m in config["distill"]["methods"] if m in TEACHERLESS]


def vanilla_jobs(config: dict) -> list[dict]:
    """The runs of rule train_vanilla: one per teacherless method × student architecture × seed of the study."""
    students = dict.fromkeys(g["student"] for g in student_groups(config))
    return [{"data": data_id(config), "method": m, "student_hash": student_id(config, m), "student": student,
             "seed": seed}
            for student, seed, m in product(students, config["distill"]["seeds"], teacherless_methods(config))]


def run_of(job: dict) -> dict:
    """The run behind a table row: the row itself, or, for a teacherless student, its one run."""
    return {k: v for k, v in job.items() if k not in CHECKPOINT_FIELDS} if job["method"] in TEACHERLESS else job


def student_metrics(job: dict) -> str:
    """Where a student row's metrics file is: under its teacher checkpoint, or (teacherless) its data set."""
    return str(layout.student_dir(run_of(job)) / layout.METRICS_FILE)


def student_outputs(config: dict) -> list[str]:
    """Every student metrics file the tables read: what rule aggregate asks for."""
    return sorted({student_metrics(job) for job in student_jobs(config)})


# --- distill jobs: what one job groups, and the rules' outputs, logs and specs ------------------------------


def grouped(config: dict, vanilla: bool = False) -> dict[str, list]:
    """The dimensions one job trains together, with their values: ``method`` as (method, student_hash) pairs (for
    rule train_vanilla: its teacherless methods, grouped like the distilled ones; a lone one is fixed), ``seed`` as
    seeds."""
    d = config["distill"]
    own = teacherless_methods(config) if vanilla else distilled_methods(config)
    # a rule with no method of its own has no job: it keeps the method a wildcard (its constraint never matches);
    # a lone teacherless method is fixed even without group_methods
    methods = own if own and (d["group_methods"] or (vanilla and len(own) == 1)) else None
    dims = {"method": None if methods is None else [(m, student_id(config, m)) for m in methods],
            "seed": d["seeds"] if d["group_seeds"] else None}
    return {dim: values for dim, values in dims.items() if values is not None}


def job_name(config: dict, vanilla: bool = False) -> str:
    """A job's name within its folder of students (its log's name): the wildcards it does not group, and for
    grouped methods the hash of their settings (another study distilling the same checkpoint differently writes
    another log)."""
    dims = grouped(config, vanilla)
    seed = "" if "seed" in dims else "-s{seed}"
    if "method" in dims:
        return "{student}" + seed + "-" + stable_hash(dims["method"])
    return "{method}-{student_hash}/{student}" + seed


def _job_folder(vanilla: bool) -> str:
    return layout.VANILLA_STUDENTS if vanilla else layout.CHECKPOINT_STUDENTS


def job_outputs(config: dict, vanilla: bool = False) -> list[str]:
    """Outputs of rule distill (or train_vanilla), with the wildcards the rule does not group."""
    dims = grouped(config, vanilla)
    folder = layout.VANILLA_DIR if vanilla else layout.STUDENT_DIR
    fixed = [{"method": m, "student_hash": h} for m, h in dims.get("method", [])] or [{}]
    seeds = [{"seed": s} for s in dims.get("seed", [])] or [{}]
    return [layout.with_wildcards(f"{folder}/{file}", **m, **s)
            for file in (layout.METRICS_FILE, layout.STUDENT_MODEL_FILE) for m in fixed for s in seeds]


def job_log(config: dict, vanilla: bool = False) -> str:
    return layout.log("students", f"{_job_folder(vanilla)}/{job_name(config, vanilla)}")


def job_benchmark(config: dict, vanilla: bool = False) -> str:
    return layout.benchmark("students", f"{_job_folder(vanilla)}/{job_name(config, vanilla)}")


def method_pattern(config: dict, vanilla: bool = False) -> str:
    """Wildcard constraint of rule distill (or train_vanilla): the methods it trains."""
    methods = teacherless_methods(config) if vanilla else distilled_methods(config)
    return "|".join(re.escape(m) for m in methods) or "(?!)"


def distill_job_count(config: dict) -> int:
    """Distill jobs Snakemake runs: the distinct (folder, job name) of the distilled students."""
    name = f"{_job_folder(False)}/{job_name(config)}"
    return len({name.format(**job) for job in student_jobs(config) if job["method"] not in TEACHERLESS})


def vanilla_job_count(config: dict) -> int:
    """Jobs of rule train_vanilla: one per student × seed (× teacherless method without ``distill.group_methods``),
    or per student with ``distill.group_seeds``."""
    name = f"{_job_folder(True)}/{job_name(config, vanilla=True)}"
    return len({name.format(**job) for job in vanilla_jobs(config)})


def teacher_inputs(job: dict) -> dict[str, str]:
    """What a distill job reads: the teacher checkpoint, the teacher's metrics file and the data."""
    return {"checkpoint": str(layout.teacher_checkpoint(job, job["epoch"])),
            "metrics": str(layout.teacher_metrics(job)), "data": str(layout.data_dir(job["data"]))}


def job_spec(config: dict, job: dict, vanilla: bool = False) -> DistillSpec:
    """The spec of the distill (or train_vanilla) job with these wildcard values: every (seed, method) student of one
    teacher checkpoint (none for the teacherless students) and student architecture, trained in one loop. Refuses a
    student folder this config does not make."""
    d, dims = config["distill"], grouped(config, vanilla)
    ids = {m: student_id(config, m) for m in d["methods"]}
    methods = [m for m, _ in dims["method"]] if "method" in dims else [job["method"]]
    if "method" not in dims and job["student_hash"] != ids[job["method"]]:
        raise ValueError(f"{layout.student_dir(job)} is not a student of this study (its {job['method']} students "
                         f"are {job['method']}-{ids[job['method']]})")
    seeds = dims.get("seed") or [int(job["seed"])]
    where = {k: job[k] for k in ("data", *(CHECKPOINT_FIELDS if not vanilla else ())) if k in job}
    teacher = None
    if not vanilla:
        folder = layout.teacher_dir(job)
        teacher = TeacherCheckpoint(name=folder.name, arch=job["teacher_arch"], recipe=job["recipe"],
                                    seed=int(job["teacher_seed"]), epoch=int(job["epoch"]),
                                    checkpoint=str(layout.teacher_checkpoint(job, job["epoch"])),
                                    metrics=str(layout.teacher_metrics(job)))
    students = [StudentRun(method=m, seed=int(s), identity=ids[m],
                           dir=str(layout.student_dir({**where, "student": job["student"], "method": m, "seed": s,
                                                       "student_hash": ids[m]})))
                for s in seeds for m in methods]
    name = job_name(config, vanilla).format(**{**job, "seed": seeds[0]})
    return DistillSpec(name=name, resume_dir=str(layout.student_group_dir(where) / layout.RESUME_DIR / name),
                       **job_settings(config), student=job["student"], teacher=teacher, epochs=d["epochs"],
                       optim=Optim(**d["optim"]), methods={m: d["methods"][m] for m in methods}, students=students,
                       eval_every=d["eval_every"])
