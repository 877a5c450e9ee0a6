"""The skeptic's comparison: does a recipe beat an early-stopped reference teacher? Each recipe's students at its
last checkpoint against the students of the reference recipe's validation-chosen checkpoint, paired by seed; as
a CSV frame and Markdown."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import distilled
from soteacher.report.compare import at_last_checkpoint
from soteacher.report.declarations import Study
from soteacher.report.tables import STUDENT_CI_NOTE, VERDICT_NOTE, shown_intervals
from soteacher.report.teachers import epochs_by_seed, val_best

EARLY_CELL = ["teacher", "recipe", "method", "student"]
EARLY_PAIR = ["teacher", "method", "student", "teacher_seed", "seed"]


class EarlyStopping(NamedTuple):
    table: pd.DataFrame
    why_empty: str  # "" unless the table is empty


def early_stopping_table(df: pd.DataFrame, checkpoints: pd.DataFrame, reference: str) -> EarlyStopping:
    """Each other recipe's students at its last checkpoint vs the students of the ``reference`` teacher's
    validation-chosen checkpoint (per teacher seed, the distilled checkpoint with the highest val_acc), paired by
    (teacher seed, student seed), with the interval over teacher seeds; or an empty table and why."""
    empty = pd.DataFrame(columns=EARLY_CELL)
    ref = checkpoints[(checkpoints["recipe"] == reference) & checkpoints["distilled"]]
    if ref.empty:
        return EarlyStopping(empty, f"No `{reference}` recipe in this study: nothing to early-stop.")
    chosen = val_best(ref)
    if chosen.empty:
        return EarlyStopping(empty, f"This comparison needs a validation split: the {reference} teachers' "
                                    "checkpoints have no val_acc, and choosing on test would be optimistic.")
    kd = distilled(df)
    early = kd[kd["recipe"] == reference].merge(chosen[["teacher", "teacher_seed", "teacher_epoch"]],
                                                on=["teacher", "teacher_seed", "teacher_epoch"])
    treated = at_last_checkpoint(kd[kd["recipe"] != reference])
    pairs = stats.pair(treated, early, EARLY_PAIR, ["student_last_acc"])
    if pairs.empty:
        return EarlyStopping(empty, "No paired runs: the students of one side are missing.")
    out = pairs.groupby(EARLY_CELL, sort=False).agg(
        recipe_epoch=("teacher_epoch", "first"), recipe_last_mean=("student_last_acc", "mean"),
        early_stopped_last_mean=("student_last_acc_ref", "mean")).reset_index()
    epochs = epochs_by_seed(chosen, "teacher_epoch").rename(
        columns={"teacher_epoch_by_seed": f"{reference}_epoch_by_seed"})
    out = out.merge(epochs.drop(columns="recipe"), on="teacher", how="left")
    return EarlyStopping(out.merge(stats.teacher_seed_intervals(pairs, EARLY_CELL, "d_student_last_acc", "delta"),
                                   on=EARLY_CELL), "")


def early_stopping_csv(result: EarlyStopping, study: Study) -> str:
    return result.table.to_csv(index=False)


def early_stopping_markdown(result: EarlyStopping, study: Study) -> str:
    table, reference = result.table, study.reference_recipe
    title = f"{study.title}: recipe vs an early-stopped {reference} teacher"
    if table.empty:
        return f"# {title}\n\n{result.why_empty}\n"
    shown = pd.DataFrame({
        "teacher": table["teacher"], "recipe": table["recipe"], "method": table["method"],
        "student": table["student"], "recipe ckpt": table["recipe_epoch"],
        f"{reference} ckpt chosen on val": table[f"{reference}_epoch_by_seed"],
        "student acc, recipe (%)": table["recipe_last_mean"].map(lambda v: f"{v:.2f}"),
        f"student acc, early-stopped {reference} (%)": table["early_stopped_last_mean"].map(lambda v: f"{v:.2f}"),
        "Δ (pp)": shown_intervals(table, "delta", signed=True), "teacher seeds": table["delta_n"],
        "verdict": table["delta_verdict"],
    })
    return (f"# {title}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n\n"
            f"Does the recipe beat an early-stopped {reference} teacher? Per teacher seed, the {reference} teacher's "
            "checkpoint is the distilled one with the highest validation accuracy (ties: earliest; the test split "
            "is never used to choose); the recipe's teacher is its last checkpoint. Δ: student last-epoch test "
            f"accuracy, recipe minus early-stopped {reference}, paired by (teacher seed, student seed) and averaged "
            f"over the student seeds of each teacher seed; {STUDENT_CI_NOTE}. {VERDICT_NOTE} A secondary "
            "comparison.\n")
