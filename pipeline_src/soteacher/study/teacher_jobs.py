"""The teacher side of the study grid: which teachers a config implies and each teacher job's spec.

A job *spec* is the JSON a rule hands to the CLI: exactly the config a job depends on (everything but the tracking
URI), so that Snakemake re-runs a job when (and only when) its spec changes. Paths come from ``common.layout``.
"""

from __future__ import annotations

import re
from itertools import product

from soteacher.core import layout
from soteacher.study.config import checkpoint_epochs, job_compute

CONFIG_HASH_LENGTH = 12  # a job spec's config_hash (resume folders, MLflow tags); folder-name hashes are shorter


def teacher_jobs(config: dict) -> list[dict]:
    """Trained teachers (archs × recipes × seeds), then imported ones (``teacher.imports``, one each), as layout
    fields (their ``teacher_hash`` from their spec)."""
    t = config["teacher"]
    trained = [spec_teacher(teacher_spec(config, arch, recipe, seed))
               for arch, recipe, seed in product(t["archs"], t["recipes"], t["seeds"])]
    return trained + [spec_teacher(import_spec(config, name)) for name in t.get("imports", {})]


def imported(config: dict, recipe: str) -> dict | None:
    """The ``teacher.imports`` entry behind a recipe name, or None for a trained recipe."""
    return config["teacher"].get("imports", {}).get(recipe)


def teacher_outputs(config: dict) -> list[str]:
    """Every teacher's metrics file: what rule ``teachers`` asks for."""
    return [str(layout.teacher_metrics(job)) for job in teacher_jobs(config)]


def trained_recipe_pattern(config: dict) -> str:
    """Wildcard constraint of rule train_teacher: trained recipes only (imports write the same layout)."""
    return "|".join(re.escape(r) for r in config["teacher"]["recipes"]) or "(?!)"


def train_spec(config: dict, wildcards: dict) -> dict:
    """The spec of the train_teacher job of these wildcards; refuses a folder this config does not make."""
    spec = teacher_spec(config, wildcards["teacher_arch"], wildcards["recipe"], int(wildcards["teacher_seed"]))
    if {k: str(v) for k, v in spec_teacher(spec).items()} != {k: str(wildcards[k]) for k in layout.TEACHER_FIELDS}:
        raise ValueError(f"{layout.teacher_dir(wildcards)} is not a teacher of this study (its teacher is "
                         f"{layout.teacher_dir(spec_teacher(spec))})")
    return spec


def train_outputs(config: dict) -> dict:
    """Outputs of rule train_teacher, with wildcards: the saved checkpoints and the metrics file."""
    return {"checkpoints": [layout.with_wildcards(layout.TEACHER_CHECKPOINT, epoch=e)
                            for e in checkpoint_epochs(config["teacher"])],
            "metrics": layout.TEACHER_METRICS}


def import_jobs(config: dict) -> list[dict]:
    """One rule per ``teacher.imports`` entry (its epoch fixes the output name): inputs, outputs, log and spec."""
    out = []
    for name, imp in config["teacher"].get("imports", {}).items():
        spec = import_spec(config, name)
        teacher = spec_teacher(spec)
        out.append({"name": name, "source": imp["path"], "data": str(layout.data_dir(teacher["data"])),
                    "checkpoint": str(layout.teacher_checkpoint(teacher, imp["epoch"])),
                    "metrics": str(layout.teacher_metrics(teacher)),
                    "log": layout.log("teachers", layout.TEACHER.format(**teacher)),
                    "spec": spec})
    return out


def job_common(config: dict) -> dict:
    """What every job's spec holds. The study's name and the tracking URI are left out on purpose: which study asks
    for a teacher, and where a job logs, change neither its numbers nor whether it re-runs (studies share it)."""
    return {"data": config["data"], "compute": job_compute(config["compute"])}


def teacher_spec(config: dict, teacher_arch: str, recipe: str, teacher_seed: int) -> dict:
    t = config["teacher"]
    spec = {
        **job_common(config),
        "role": "teacher",
        "arch": teacher_arch,
        "recipe": recipe,
        "terms": t["recipes"][recipe],
        "seed": int(teacher_seed),
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
        **job_common(config),
        "role": "teacher",
        "imported": True,
        "arch": imp["arch"],
        "recipe": name,
        "seed": imp["seed"],
        "source": imp["path"],
        "epoch": imp["epoch"],
    }
    spec["config_hash"] = science_hash(spec)
    return spec


def spec_teacher(spec: dict) -> dict:
    """The layout fields of the teacher a teacher (or import) job spec makes: its ``teacher_hash`` covers all of the
    spec but the recipe's name (in the folder's name beside it)."""
    return {"data": layout.data_id(spec["data"]), "teacher_arch": spec["arch"], "recipe": spec["recipe"],
            "teacher_seed": spec["seed"],
            "teacher_hash": layout.stable_hash({k: v for k, v in spec.items() if k not in ("recipe", "config_hash")})}


def science_hash(spec: dict) -> str:
    return layout.stable_hash({k: v for k, v in spec.items() if k != "config_hash"}, CONFIG_HASH_LENGTH)
