"""The study grid: which jobs a config implies, where their outputs go, and each job's spec.

Snakemake's ``common.smk`` and the CLI both use these functions, so a results path is spelled in one
place. A job *spec* is the JSON a rule hands to the CLI: exactly the config a job depends on (everything but
the tracking URI), so that Snakemake re-runs a job when (and only when) its spec changes.
"""

from __future__ import annotations

from itertools import product

from soteacher.config import checkpoint_epochs, distill_epochs, distill_pairs, stable_hash

DATA_DIR = "results/data/{dataset}"
TEACHER_DIR = "results/teachers/{dataset}/{tarch}-{recipe}-s{tseed}"
TEACHER_CKPT = TEACHER_DIR + "/ep{epoch}.pt"
TEACHER_METRICS = TEACHER_DIR + "/metrics.json"
STUDENT_DIR = "results/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{method}/{student}/seed{seed}"
STUDENT_METRICS = STUDENT_DIR + "/metrics.json"
STUDENT_MODEL = STUDENT_DIR + "/model.pt"
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
    t = config["teacher"]
    return [
        {"dataset": config["data"]["dataset"], "tarch": arch, "recipe": recipe, "tseed": seed}
        for arch, recipe, seed in product(t["archs"], t["recipes"], t["seeds"])
    ]


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
        for epoch, student, seed in product(distill_epochs(config), students_of.get(job["tarch"], []), d["seeds"])
    ]


def student_jobs(config: dict) -> list[dict]:
    return [{**g, "method": m} for g, m in product(student_groups(config), config["distill"]["methods"])]


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


def distill_spec(config: dict, tarch: str, recipe: str, tseed: int, epoch: int, student: str, seed: int,
                 methods: list[str]) -> dict:
    d = config["distill"]
    spec = {
        **_common(config),
        "role": "student",
        "teacher": {"arch": tarch, "recipe": recipe, "seed": int(tseed), "epoch": int(epoch)},
        "student": student,
        "seed": int(seed),
        "epochs": d["epochs"],
        "optim": d["optim"],
        "methods": {m: d["methods"][m] for m in methods},
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def science_hash(spec: dict) -> str:
    return stable_hash({k: v for k, v in spec.items() if k != "config_hash"})
