"""The study grid: which jobs a config implies, where their outputs go, and each job's spec.

Snakemake's ``common.smk`` and the CLI both use these functions, so a results path is spelled in one
place. A job *spec* is the JSON a rule hands to the CLI: exactly the config a job depends on (everything but
the tracking URI), so that Snakemake re-runs a job when (and only when) its spec changes.
"""

from __future__ import annotations

from itertools import product

from soteacher.common.config import checkpoint_epochs, distill_epochs, distill_pairs, stable_hash

DATA_DIR = "results/data/{dataset}"
TEACHER_DIR = "results/teachers/{dataset}/{tarch}-{recipe}-s{tseed}"
TEACHER_CKPT = TEACHER_DIR + "/ep{epoch}.pt"
TEACHER_METRICS = TEACHER_DIR + "/metrics.json"
STUDENT_DIR = "results/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{method}/{student}/seed{seed}"
STUDENT_METRICS = STUDENT_DIR + "/metrics.json"
STUDENT_MODEL = STUDENT_DIR + "/model.pt"
# the student trained alone (CE only) depends on no teacher: one run per student × seed, whose batches are those
# of every distilled student with the same seed (the data order and augmentation follow the seed alone)
ALONE = "vanilla"
ALONE_DIR = "results/students/{dataset}/alone/{student}/seed{seed}"
ALONE_METRICS = ALONE_DIR + "/metrics.json"
ALONE_MODEL = ALONE_DIR + "/model.pt"
TABLES_DIR = "results/tables"
FIGURES_DIR = "results/figures"

WILDCARD_PATTERNS = {
    "dataset": "[a-z0-9_]+",
    "tarch": "[A-Za-z0-9_]+",
    "student": "[A-Za-z0-9_]+",
    "recipe": "[a-z0-9_]+",
    "method": "[a-z0-9_]+",
    "tseed": "[0-9]+",
    "seed": "[0-9]+",
    "epoch": "[0-9]+",
}


def teacher_jobs(config: dict) -> list[dict]:
    """Trained teachers (archs × recipes × seeds), then imported ones (``teacher.imports``, one each)."""
    t = config["teacher"]
    return [
        {"dataset": config["data"]["dataset"], "tarch": arch, "recipe": recipe, "tseed": seed}
        for arch, recipe, seed in product(t["archs"], t["recipes"], t["seeds"])
    ] + [
        {"dataset": config["data"]["dataset"], "tarch": imp["arch"], "recipe": name, "tseed": imp["seed"]}
        for name, imp in t.get("imports", {}).items()
    ]


def imported(config: dict, recipe: str) -> dict | None:
    """The ``teacher.imports`` entry behind a recipe name, or None for a trained recipe."""
    return config["teacher"].get("imports", {}).get(recipe)


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
    for tarch, student in distill_pairs(config):
        students_of.setdefault(tarch, []).append(student)
    return [
        {**job, "epoch": epoch, "student": student, "seed": seed}
        for job in teacher_jobs(config)
        for epoch, student, seed in product(
            teacher_distill_epochs(config, job["recipe"]),
            # an imported teacher whose arch no trained teacher has distils into distill.students
            students_of.get(job["tarch"]) or (d["students"] if imported(config, job["recipe"]) else []),
            d["seeds"])
    ]


def student_jobs(config: dict) -> list[dict]:
    """Every student result a table has a row for: (teacher checkpoint, student, seed, method). The ``ALONE``
    method appears under every teacher checkpoint too (its baseline row), but is one run: ``student_metrics``."""
    return [{**g, "method": m} for g, m in product(student_groups(config), config["distill"]["methods"])]


def distilled_methods(config: dict) -> list[str]:
    """The methods a distill job trains: all but the student trained alone."""
    return [m for m in config["distill"]["methods"] if m != ALONE]


def alone_jobs(config: dict) -> list[dict]:
    """One run of the student trained alone per student architecture × seed, when the study has it."""
    if ALONE not in config["distill"]["methods"]:
        return []
    students = dict.fromkeys(g["student"] for g in student_groups(config))
    return [{"dataset": config["data"]["dataset"], "student": student, "seed": seed}
            for student, seed in product(students, config["distill"]["seeds"])]


def student_metrics(job: dict) -> str:
    """Where a student job's metrics file is: the teacher checkpoint's folder, or the student-alone folder."""
    return (ALONE_METRICS if job.get("method") == ALONE else STUDENT_METRICS).format(**job)


def distill_job_count(config: dict) -> int:
    """Distill jobs Snakemake runs: one per student group, with ``distill.group_methods`` /
    ``group_seeds`` turned off multiplying / dividing that by the number of methods / seeds; none when the
    only method is the student trained alone."""
    d = config["distill"]
    methods = distilled_methods(config)
    if not methods:
        return 0
    n = len(student_groups(config))
    n = n if d["group_methods"] else n * len(methods)
    return n // len(d["seeds"]) if d["group_seeds"] else n


def alone_job_count(config: dict) -> int:
    """Jobs of the student trained alone: one per student × seed, or per student with ``distill.group_seeds``."""
    n = len(alone_jobs(config))
    return n // len(config["distill"]["seeds"]) if config["distill"]["group_seeds"] else n


def _common(config: dict) -> dict:
    # tracking is left out on purpose: where a job logs does not change its numbers or trigger re-runs
    return {"name": config["name"], "data": config["data"], "compute": config["compute"]}


def teacher_spec(config: dict, tarch: str, recipe: str, tseed: int) -> dict:
    t = config["teacher"]
    spec = {
        **_common(config),
        "role": "teacher",
        "arch": tarch,
        "recipe_name": recipe,
        "recipe": t["recipes"][recipe],
        "seed": int(tseed),
        "epochs": t["epochs"],
        "checkpoint_epochs": checkpoint_epochs(t),
        "optim": t["optim"],
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def import_spec(config: dict, name: str) -> dict:
    """Spec of an import job: the reference checkpoint becomes ``ep<epoch>.pt`` + metrics like a trained teacher."""
    imp = config["teacher"]["imports"][name]
    spec = {
        **_common(config),
        "role": "teacher",
        "imported": True,
        "arch": imp["arch"],
        "recipe_name": name,
        "seed": imp["seed"],
        "source": imp["path"],
        "epoch": imp["epoch"],
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def distill_spec(config: dict, tarch: str | None, recipe: str | None, tseed: int | None, epoch: int | None,
                 student: str, seeds: list[int], methods: list[str]) -> dict:
    """One distill job: every (seed, method) student of one teacher checkpoint, trained in one loop; with no
    teacher (``tarch`` None), the student trained alone."""
    d = config["distill"]
    spec = {
        **_common(config),
        "role": "student",
        "teacher": None if tarch is None else {"arch": tarch, "recipe": recipe, "seed": int(tseed),
                                               "epoch": int(epoch)},
        "student": student,
        "seeds": [int(s) for s in seeds],
        "epochs": d["epochs"],
        "optim": d["optim"],
        "methods": {m: d["methods"][m] for m in methods},
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def science_hash(spec: dict) -> str:
    return stable_hash({k: v for k, v in spec.items() if k != "config_hash"})
