"""Reading a study's results into frames: one row per student run (``collect``), per teacher checkpoint and per
teacher epoch (``teacher_frames``), and the data manifest's Bayes reference (``reference``); ``study`` gathers them
with the study's facts, as the declarations read them.

Keys a metrics file predates are NaN (``number``), so older files still make tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from soteacher.core import layout
from soteacher.core.io import read_json
from soteacher.report.declarations import Study
from soteacher.study import student_jobs as jobs
from soteacher.study.identity import data_id
from soteacher.study.teacher_jobs import teacher_jobs

GROUP = ["teacher", "recipe", "teacher_epoch", "method", "student"]  # one row of the summary table
TEACHER = ["teacher", "recipe"]  # one line of the teacher tables and figures
VANILLA = jobs.VANILLA  # the student trained on labels alone: the baseline every KD student is compared with
# students without a teacher (the vanilla student, the p*-oracle): one run each, listed under every teacher checkpoint,
# so never in a recipe comparison
TEACHERLESS = jobs.TEACHERLESS
ORACLE = jobs.ORACLE  # the positive control: a student distilled from p*(x) itself


def distilled(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of students distilled from a teacher checkpoint (not ``TEACHERLESS``)."""
    return df[~df["method"].isin(TEACHERLESS)]
TEACHER_KEYS = ["lr", "train_loss", "train_ce", "train_acc", "train_eval_acc", "test_acc", "test_loss", "val_acc",
                "val_loss", "tv_pstar_train", "tv_pstar_test", "tv_pstar_val", "kl_pstar_train", "kl_pstar_test",
                "kl_pstar_val"]


class IncompleteResultsError(RuntimeError):
    pass


def study(config: dict, allow_partial: bool = False) -> Study:
    """Everything the declarations read, from the study's results (see ``collect`` for ``allow_partial``)."""
    students, missing = collect(config, allow_partial)
    if students.empty:
        raise IncompleteResultsError("no student results found at all; run the pipeline first")
    checkpoints, history = teacher_frames(config)
    return Study(config=config, name=config["name"], reference_recipe=config["report"]["reference_recipe"],
                 primary=config["report"]["primary"], partial=bool(missing), students=students,
                 checkpoints=checkpoints, history=history, data_reference=reference(config))


def collect(config: dict, allow_partial: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """One row per student run of the study, with its teacher checkpoint's numbers; and the missing files."""
    rows, missing = [], []
    teacher_cache: dict[str, dict] = {}
    for job in jobs.student_jobs(config):
        path = Path(jobs.student_metrics(job))
        tpath = layout.teacher_metrics(job)
        if not path.is_file():
            missing.append(str(path))
            continue
        if tpath not in teacher_cache:
            teacher_cache[tpath] = read_json(Path(tpath))
        tmetrics = teacher_cache[tpath]["checkpoints"][str(job["epoch"])]
        student = read_json(path)
        rows.append({
            "teacher": job["teacher_arch"], "recipe": job["recipe"], "teacher_seed": job["teacher_seed"],
            "teacher_epoch": job["epoch"], "method": job["method"], "student": job["student"],
            "seed": job["seed"], "run": str(path), "teacher_acc": tmetrics["test_acc"],
            "teacher_tv_pstar": number(tmetrics, "tv_pstar_train"),
            "student_last_acc": student["last_acc"], "student_best_acc": student["best_acc"],
            # keys newer runs write; older files give NaN / "test" (they chose the best epoch on test)
            "best_chosen_on": student.get("best_chosen_on", "test"),
            "student_tv_pstar_test": number(student, "last_tv_pstar_test"),
            "agreement": number(student, "agreement"),
            "kl_teacher_student": number(student, "kl_teacher_student"),
        })
    missing = list(dict.fromkeys(missing))  # a teacherless run (vanilla, oracle) is listed under every checkpoint
    if missing and not allow_partial:
        shown = "\n  ".join(missing[:20]) + (f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise IncompleteResultsError(
            f"{len(missing)} student result files are missing "
            f"(run the pipeline first, or pass --allow-partial):\n  {shown}")
    return pd.DataFrame(rows), missing


def number(entry: dict, key: str) -> float:
    """A metric as a float; NaN where the file predates the key (or stores null)."""
    value = entry.get(key)
    return math.nan if value is None else float(value)


def reference(config: dict) -> dict:
    """The data manifest's Bayes reference (``bayes_acc`` and ``expected_max_pstar`` per split, %), or {} for
    real data and manifests that predate it."""
    path = layout.data_dir(data_id(config)) / "manifest.json"
    return read_json(path).get("reference", {}) if path.is_file() else {}


def reference_value(ref: dict, key: str, split: str) -> float:
    """One number of ``reference``; NaN where there is none."""
    value = ref.get(key, {}).get(split)
    return math.nan if value is None else float(value)


def teacher_frames(config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(checkpoints, history): one row per saved checkpoint / per epoch of every teacher whose metrics exist,
    with ``distilled`` marking the checkpoints students were trained from."""
    ckpts, history = [], []
    for job in teacher_jobs(config):
        path = layout.teacher_metrics(job)
        if not path.is_file():
            continue
        metrics = read_json(path)
        who = {"teacher": job["teacher_arch"], "recipe": job["recipe"], "teacher_seed": job["teacher_seed"]}
        distilled = set(jobs.checkpoints_of(config, job["recipe"]))
        for epoch, entry in metrics.get("checkpoints", {}).items():
            ckpts.append({**who, "teacher_epoch": int(epoch), "distilled": int(epoch) in distilled,
                          **{k: number(entry, k) for k in TEACHER_KEYS}})
        for i, entry in enumerate(metrics.get("history", [])):
            history.append({**who, "epoch": int(entry.get("epoch", i + 1)),
                            **{k: number(entry, k) for k in TEACHER_KEYS}})
    columns = [*TEACHER, "teacher_seed"]
    return (pd.DataFrame(ckpts, columns=[*columns, "teacher_epoch", "distilled", *TEACHER_KEYS]),
            pd.DataFrame(history, columns=[*columns, "epoch", *TEACHER_KEYS]))
