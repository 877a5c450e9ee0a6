"""Rename a study's results from the names of results format 1 to their identities now, once, so nobody retrains.

Format 1 (the releases before ``study.identity``) hashed every setting of a result, defaults included, so a new
setting renamed every result. ``rekey`` computes, for every data set, teacher and student a study needs, the folder
format 1 gave it and the folder ``study.identity`` gives it, and moves each result found under its old name to its
new one (rename: the same files, nothing is retrained or rewritten). Then it retags the results' MLflow runs (tag
``identity``, the ``*.path`` tags of their files; ``config_hash`` removed) and re-links the study's DVC outputs
(``study.links``). Afterwards ``snakemake -n`` for the study has nothing to do. Running it again moves nothing.

What it does not move: job logs (``logs/``, named by the old ids; kept), results of recipes format 1 could not
express (any term besides ce, lipschitz and consistency), and results found under neither name (listed). Format 1's
names are computed here from the study's config; this module is the only reader of that format and goes once no
workspace holds format-1 results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from soteacher.core import layout
from soteacher.study.config import checkpoint_epochs
from soteacher.study.identity import FORMAT, data_id

log = logging.getLogger(__name__)

# what format 1 knew of each section: keys added since are left out of its hashes
V1_KEYS = {
    "data": ("dataset", "root", "download", "train_limit", "test_limit", "val_size", "val_seed", "augment",
             "synthetic"),
    "synthetic": ("seed", "num_classes", "num_features", "features_per_image", "feature_purity_min", "image_size",
                  "patch_size", "noise_std", "train_size", "test_size"),
    "optim": ("lr", "lr_by_arch", "momentum", "weight_decay", "batch_size", "lr_milestones", "lr_gamma"),
    "compute": ("device", "threads", "deterministic", "amp", "channels_last", "compile", "cudnn_benchmark",
                "resume_every", "gpus_per_job", "nodes_per_job", "sync_bn", "collective_timeout_s"),
}
# format 1 left these out of a job's compute at these values
V1_RANK_DEFAULTS = {"gpus_per_job": 1, "nodes_per_job": 1, "sync_bn": False, "collective_timeout_s": 1800}
V1_RECIPE_DEFAULTS = {"lambda_lr": 0.0, "lipschitz_bound": "l1", "lambda_cr": 0.0, "cr_schedule": "linear",
                      "cr_start_epoch": 1}
V1_VANILLA_FOLDER = "alone"  # format 1 kept the vanilla student under <data>/alone/


def _v1_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:layout.HASH_LENGTH]


def _keep(section: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in section.items() if k in keys}


def _v1_data(config: dict) -> dict:
    data = _keep(config["data"], V1_KEYS["data"])
    return {**data, "synthetic": _keep(data["synthetic"], V1_KEYS["synthetic"])}


def _v1_compute(config: dict) -> dict:
    compute = _keep(config["compute"], V1_KEYS["compute"])
    return {k: v for k, v in compute.items() if k not in V1_RANK_DEFAULTS or v != V1_RANK_DEFAULTS[k]}


def v1_data_id(config: dict) -> str:
    data = _v1_data(config)
    return f"{data['dataset']}-{_v1_hash({k: v for k, v in data.items() if k not in ('root', 'download')})}"


def v1_recipe(terms: dict) -> dict | None:
    """A recipe's format-1 values (λ_LR, bound, λ_CR, schedule, start epoch); None when format 1 had no such recipe
    (a term other than ce, lipschitz and consistency, or cross-entropy left out)."""
    if "ce" not in terms or set(terms) - {"ce", "lipschitz", "consistency"}:
        return None
    lipschitz, consistency = terms.get("lipschitz"), terms.get("consistency")
    values = dict(V1_RECIPE_DEFAULTS)
    if lipschitz is not None:
        values |= {"lambda_lr": lipschitz["weight"], "lipschitz_bound": lipschitz["bound"]}
    if consistency is not None:
        values |= {"lambda_cr": consistency["weight"], "cr_schedule": consistency["schedule"],
                   "cr_start_epoch": consistency["start_epoch"]}
    return values


def v1_teacher_hash(config: dict, arch: str, recipe: str, seed: int) -> str | None:
    t = config["teacher"]
    imp = t.get("imports", {}).get(recipe)
    common = {"data": _v1_data(config), "compute": _v1_compute(config), "role": "teacher"}
    if imp is not None:
        spec = {**common, "imported": True, "arch": imp["arch"], "seed": imp["seed"], "source": imp["path"],
                "epoch": imp["epoch"]}
        return _v1_hash(spec)
    values = v1_recipe(t["recipes"][recipe])
    if values is None:
        return None
    spec = {**common, "arch": arch, "recipe_values": values, "seed": int(seed), "epochs": t["epochs"],
            "checkpoint_epochs": checkpoint_epochs(t), "optim": _keep(t["optim"], V1_KEYS["optim"])}
    return _v1_hash(spec)  # format 1 hashed the spec without the recipe's name (it stands beside the hash)


def v1_student_hash(config: dict, method: str) -> str:
    d = config["distill"]
    return _v1_hash({"method": d["methods"][method], "epochs": d["epochs"],
                     "optim": _keep(d["optim"], V1_KEYS["optim"]), "compute": _v1_compute(config)})


class Move(NamedTuple):
    old: Path  # the folder format 1 named it
    new: Path  # its folder now
    identity: str | None  # its identity now (None for a data set: the hash is in its name)


def moves(config: dict) -> list[Move]:
    """Every data set, teacher and student the study needs, with its format-1 and present folder; students first
    (their old paths name the old data set and teachers); results format 1 had no name for are left out."""
    from soteacher.study import student_jobs, teacher_jobs

    data_v1 = v1_data_id(config)
    teachers = {}  # name now -> (format-1 name, identity now)
    for job in teacher_jobs.teacher_jobs(config):
        old = v1_teacher_hash(config, job["teacher_arch"], job["recipe"], job["teacher_seed"])
        if old is not None:
            teachers[layout.TEACHER.format(**job)] = (layout.TEACHER.format(**{**job, "data": data_v1,
                                                                               "teacher_hash": old}),
                                                      job["teacher_hash"])
    out: list[Move] = []
    for job in student_jobs.student_jobs(config):
        run = student_jobs.run_of(job)
        new = layout.student_dir(run)
        if job["method"] == student_jobs.VANILLA:
            where = f"{data_v1}/{V1_VANILLA_FOLDER}"
        elif layout.TEACHER.format(**job) in teachers:
            where = f"{teachers[layout.TEACHER.format(**job)][0]}/ep{job['epoch']}"
        else:
            continue
        old = Path(layout.STUDENTS_DIR, where, layout.STUDENT.format(
            **{**run, "student_hash": v1_student_hash(config, job["method"])}))
        out.append(Move(old, new, job["student_hash"]))
    out += [Move(Path(layout.RESULTS, "teachers", old), Path(layout.RESULTS, "teachers", new), identity)
            for new, (old, identity) in teachers.items()]
    out.append(Move(layout.data_dir(data_v1), layout.data_dir(data_id(config)), None))
    return list(dict.fromkeys(out))  # the vanilla student stands under every checkpoint: once


def rekey(config: dict, config_path: str | None = None, dry_run: bool = False, root: Path = Path(".")) -> dict:
    """Move the study's format-1 results to their names now; returns counts of moved / already there / not found.
    Then retags their MLflow runs and re-links the study's DVC outputs (``dry_run``: only say what would move)."""
    counts = {"moved": 0, "already": 0, "not found": 0, "both exist": 0}
    moved: list[Move] = []
    for move in moves(config):
        old, new = move.old, move.new
        old_path, new_path = root / old, root / new
        if old_path == new_path or (new_path.exists() and not old_path.exists()):
            counts["already"] += 1
        elif old_path.exists() and new_path.exists():
            counts["both exist"] += 1
            log.warning("both %s and %s exist: left as they are (delete one)", old, new)
        elif not old_path.exists():
            counts["not found"] += 1
        else:
            log.info("%s %s -> %s", "would move" if dry_run else "moving", old, new)
            if not dry_run:
                new_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(old_path, new_path)
                _prune_empty(old_path.parent, root / layout.RESULTS)
            moved.append(move)
            counts["moved"] += 1
    if moved and not dry_run:
        _retag(config, moved, root)
        _relink(config, config_path, root)
    log.info("rekey of study %s (results format %d): %s", config["name"], FORMAT,
             ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to ``stop`` while they are empty (what a move left behind)."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _retag(config: dict, moved: list[Move], root: Path) -> None:
    """Each moved teacher's and student's MLflow run: tag ``identity`` (the hash in its new folder's name), its
    files' ``*.path`` tags pointing into the new folders, ``config_hash`` (format 1's second hash) removed."""
    from soteacher.core.io import read_json
    from soteacher.core.tracking import open_client, resolve_uri

    uri = resolve_uri(config["tracking"]["uri"])
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if path is not None and not (root / path).is_file():
        return  # no MLflow store here
    client = open_client(uri)
    renames = sorted(((m.old.as_posix(), m.new.as_posix()) for m in moved), key=lambda p: -len(p[0]))
    for move in moved:
        metrics_file = root / move.new / layout.METRICS_FILE
        if move.identity is None or not metrics_file.is_file():
            continue  # a data set
        run_id = read_json(metrics_file).get("mlflow_run_id")
        if not run_id:
            continue
        try:
            run = client.get_run(run_id)
        except Exception as err:  # a run of another store: nothing to retag here
            log.warning("MLflow run %s of %s not found in %s: %s", run_id, move.new, uri, err)
            continue
        client.set_tag(run_id, "identity", move.identity)
        if "config_hash" in run.data.tags:
            client.delete_tag(run_id, "config_hash")
        for key, value in run.data.tags.items():
            if key.endswith(".path"):
                for old_prefix, new_prefix in renames:
                    if value.startswith(old_prefix + "/"):
                        client.set_tag(run_id, key, new_prefix + value[len(old_prefix):])
                        break


def _relink(config: dict, config_path: str | None, root: Path) -> None:
    """The study's links to the shared results it used (its DVC outputs), made again where it had them."""
    from soteacher.study import links

    cwd = Path.cwd()
    os.chdir(root)
    try:
        for part in layout.STUDY_PARTS:
            if layout.study_part_dir(config["name"], part).is_dir():
                links.link(config, part)
        if config_path is not None:
            try:
                links.dvc_record(config, config_path)
            except RuntimeError as err:  # the moves stand; `make run` records the study in DVC later
                log.warning("%s", err)
    finally:
        os.chdir(cwd)
