"""The teacher side of the study grid: which teachers a config implies, their folders and each job's spec.

A job's spec (``teachers.spec``) is everything the job's numbers depend on plus where it writes; the rules hand it
over as JSON. Which study asks for a teacher and where jobs log to MLflow are left out: they change neither its
numbers nor its name, so studies share it. Paths come from ``core.layout``, hashes from ``study.identity``.
"""

from __future__ import annotations

import re
from itertools import product

from soteacher.core import layout
from soteacher.core.settings import Compute, Optim
from soteacher.study.config import checkpoint_epochs
from soteacher.study.identity import data_id, import_id, teacher_id
from soteacher.teachers.spec import ImportSpec, TeacherSpec


def teacher_fields(config: dict, arch: str, recipe: str, seed: int, data: str | None = None) -> dict:
    """The layout fields that name a teacher (trained, or imported when ``recipe`` is an import's name)."""
    imp = imported(config, recipe)
    return {"data": data or data_id(config), "teacher_arch": arch, "recipe": recipe, "teacher_seed": int(seed),
            "teacher_hash": import_id(config, recipe) if imp else teacher_id(config, arch, recipe, seed)}


def teacher_jobs(config: dict) -> list[dict]:
    """Trained teachers (archs × recipes × seeds), then imported ones (``teacher.imports``, one each), as layout
    fields."""
    t, data = config["teacher"], data_id(config)
    trained = [teacher_fields(config, arch, recipe, seed, data)
               for arch, recipe, seed in product(t["archs"], t["recipes"], t["seeds"])]
    return trained + [teacher_fields(config, imp["arch"], name, imp["seed"], data)
                      for name, imp in t.get("imports", {}).items()]


def imported(config: dict, recipe: str) -> dict | None:
    """The ``teacher.imports`` entry behind a recipe name, or None for a trained recipe."""
    return config["teacher"].get("imports", {}).get(recipe)


def teacher_outputs(config: dict) -> list[str]:
    """Every teacher's metrics file: what rule ``teachers`` asks for."""
    return [str(layout.teacher_metrics(job)) for job in teacher_jobs(config)]


def trained_recipe_pattern(config: dict) -> str:
    """Wildcard constraint of rule train_teacher: trained recipes only (imports write the same layout)."""
    return "|".join(re.escape(r) for r in config["teacher"]["recipes"]) or "(?!)"


def train_spec(config: dict, wildcards: dict) -> TeacherSpec:
    """The spec of the train_teacher job of these wildcards; refuses a folder this config does not make."""
    spec = teacher_spec(config, wildcards["teacher_arch"], wildcards["recipe"], int(wildcards["teacher_seed"]))
    if spec.dir != str(layout.teacher_dir(wildcards)):
        raise ValueError(f"{layout.teacher_dir(wildcards)} is not a teacher of this study (its teacher is {spec.dir})")
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
        teacher = teacher_fields(config, imp["arch"], name, imp["seed"])
        out.append({"name": name, "source": imp["path"], "data": spec.data_dir,
                    "checkpoint": str(layout.teacher_checkpoint(teacher, imp["epoch"])),
                    "metrics": str(layout.teacher_metrics(teacher)),
                    "log": layout.log("teachers", layout.TEACHER.format(**teacher)), "spec": spec})
    return out


def job_settings(config: dict) -> dict:
    """What every job's spec holds of the study: its data set and compute settings."""
    data = data_id(config)
    return {"data": config["data"], "data_dir": str(layout.data_dir(data)), "compute": Compute(**config["compute"])}


def teacher_spec(config: dict, arch: str, recipe: str, seed: int) -> TeacherSpec:
    t = config["teacher"]
    fields = teacher_fields(config, arch, recipe, seed)
    folder = layout.teacher_dir(fields)
    return TeacherSpec(name=folder.name, dir=str(folder), identity=fields["teacher_hash"], **job_settings(config),
                       arch=arch, recipe=recipe, terms=t["recipes"][recipe], seed=int(seed), epochs=t["epochs"],
                       checkpoint_epochs=checkpoint_epochs(t), optim=Optim(**t["optim"]),
                       filter_table=t["filter_table"], eval_every=t["eval_every"])


def import_spec(config: dict, name: str) -> ImportSpec:
    """Spec of an import job: the reference checkpoint becomes ``ep<epoch>.pt`` + metrics like a trained teacher."""
    imp = config["teacher"]["imports"][name]
    fields = teacher_fields(config, imp["arch"], name, imp["seed"])
    folder = layout.teacher_dir(fields)
    return ImportSpec(name=folder.name, dir=str(folder), identity=fields["teacher_hash"], **job_settings(config),
                      arch=imp["arch"], recipe=name, seed=imp["seed"], source=imp["path"], epoch=imp["epoch"])
