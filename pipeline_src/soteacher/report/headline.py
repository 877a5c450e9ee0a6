"""summary.json: the study's headline numbers per recipe, which DVC tracks as metrics (``dvc metrics show``)."""

from __future__ import annotations

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import VANILLA
from soteacher.report.compare import at_last_checkpoint, reference_pairs, seed_pair_means


def headline(name: str, partial: bool, students: pd.DataFrame, summary: pd.DataFrame, teachers: pd.DataFrame,
             reference: str) -> dict:
    """The study, whether runs are missing, how many runs it has, and per recipe its students' and teachers'
    numbers at the last checkpoint (``recipe_numbers``, ``teacher_tv``)."""
    # distinct runs: the vanilla run stands under every teacher checkpoint but was trained once
    out = {"study": name, "partial": partial, "runs": int(students["run"].nunique()),
           "recipes": recipe_numbers(summary, reference_pairs(students, reference), reference)}
    for recipe, tv in teacher_tv(teachers).items():
        out["recipes"].setdefault(recipe, {})["teacher_tv_pstar_train"] = tv
    return out


def recipe_numbers(summary: pd.DataFrame, pairs: pd.DataFrame, reference: str) -> dict:
    """Per recipe, averages over its KD students at the last distilled checkpoint, and the student Δ vs
    ``reference`` there with its 95 % interval over seed pairs (each pair's Δ averaged over teacher archs,
    methods and students)."""
    last = at_last_checkpoint(summary[summary["method"] != VANILLA])
    out: dict[str, dict] = {}
    for recipe, part in last.groupby("recipe"):
        out[str(recipe)] = {
            "teacher_acc": round(float(part["teacher_acc"].mean()), 4),
            "student_last_acc": round(float(part["student_last_mean"].mean()), 4),
            "student_best_acc": round(float(part["student_best_mean"].mean()), 4),
        }
    by_seed = seed_pair_means(at_last_checkpoint(pairs), ["recipe"], "d_student_last_acc")
    for recipe, part in by_seed.groupby("recipe"):
        mean, low, high, n = stats.paired_interval(part["d_student_last_acc"])
        out.setdefault(str(recipe), {})[f"student_delta_vs_{reference}"] = {
            "mean": _json_number(mean), "low": _json_number(low), "high": _json_number(high), "n": n}
    return out


def teacher_tv(teachers: pd.DataFrame) -> dict[str, float]:
    """Per recipe, the teachers' training-split TV to p* at the last checkpoint (the mean over teacher archs of
    the means over seeds), from the teachers table."""
    if teachers.empty or teachers["tv_pstar_train_mean"].isna().all():
        return {}
    return {str(r): round(float(v), 6) for r, v in teachers.groupby("recipe")["tv_pstar_train_mean"].mean().items()
            if pd.notna(v)}


def _json_number(value: float, digits: int = 4) -> float | None:
    """Rounded, or None for NaN (JSON has no NaN; DVC would not parse it)."""
    return None if pd.isna(value) else round(float(value), digits)
