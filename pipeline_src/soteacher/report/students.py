"""The KD students paired by seed: each recipe's students against the reference recipe's and against the vanilla
student (trained alone), with their TV to p* and their agreement with their teacher; as a CSV frame and Markdown."""

from __future__ import annotations

import math

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import distilled
from soteacher.report.compare import merge_all, reference_pairs, vanilla_pairs
from soteacher.report.declarations import Study
from soteacher.report.tables import STUDENT_CI_NOTE, VERDICT_NOTE, shown_counts, shown_intervals

STUDENT_CELL = ["teacher", "teacher_epoch", "method", "student", "recipe"]


def students_paired_table(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per checkpoint × KD method × student × recipe: the student's last-epoch test accuracy, its Δ vs the
    ``reference`` recipe (columns ``delta_<reference>_…``) and vs the vanilla student (paired by seed; mean, 95 %
    interval over teacher seeds, n teacher seeds, verdict), its TV to p* on test, and its agreement with / KL from
    its teacher."""
    kd = distilled(df)
    if kd.empty:
        return pd.DataFrame(columns=STUDENT_CELL)
    grouped = kd.groupby(STUDENT_CELL, sort=False)
    out = grouped.agg(student_last_mean=("student_last_acc", "mean"), n=("student_last_acc", "size"),
                      student_tv_pstar_test_mean=("student_tv_pstar_test", "mean"),
                      agreement_mean=("agreement", "mean"),
                      kl_teacher_student_mean=("kl_teacher_student", "mean")).reset_index()
    van_pairs = vanilla_pairs(df)
    vanilla_mean = van_pairs.groupby(STUDENT_CELL, sort=False)["student_last_acc_ref"].mean().rename(
        "vanilla_last_mean").reset_index() if not van_pairs.empty else pd.DataFrame(columns=STUDENT_CELL)
    versus_reference = stats.teacher_seed_intervals(reference_pairs(df, reference), STUDENT_CELL,
                                                    "d_student_last_acc", f"delta_{reference}")
    return merge_all([out, versus_reference, vanilla_mean,
                      stats.teacher_seed_intervals(van_pairs, STUDENT_CELL, "d_student_last_acc", "delta_vanilla")],
                     STUDENT_CELL)


def _verdicts(table: pd.DataFrame, prefix: str) -> pd.Series:
    return table[f"{prefix}_verdict"].fillna("–") if f"{prefix}_verdict" in table else pd.Series("–", index=table.index)


def students_paired_markdown(table: pd.DataFrame, study: Study) -> str:
    title, reference = f"{study.title}: students, paired by seed", study.reference_recipe
    if table.empty:
        return f"# {title}\n\nNo KD student in this study.\n"
    shown = pd.DataFrame({
        "teacher": table["teacher"], "ckpt epoch": table["teacher_epoch"], "method": table["method"],
        "student": table["student"], "recipe": table["recipe"],
        "student acc, last epoch (%)": table["student_last_mean"].map(lambda v: f"{v:.2f}"), "runs": table["n"],
        f"Δ vs {reference} (pp)": shown_intervals(table, f"delta_{reference}", signed=True),
        f"teacher seeds vs {reference}": shown_counts(
            table.get(f"delta_{reference}_n", pd.Series(math.nan, index=table.index))),
        f"verdict vs {reference}": _verdicts(table, f"delta_{reference}"),
        "vanilla acc (%)": table.get("vanilla_last_mean", pd.Series(math.nan, index=table.index)).map(
            lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "Δ vs vanilla (pp)": shown_intervals(table, "delta_vanilla", signed=True),
        "teacher seeds vs vanilla": shown_counts(table.get("delta_vanilla_n", pd.Series(math.nan, index=table.index))),
        "verdict vs vanilla": _verdicts(table, "delta_vanilla"),
        **{label: table[c].map(lambda v, d=d: "–" if pd.isna(v) else f"{v:.{d}f}")
           for c, label, d in (("student_tv_pstar_test_mean", "student TV to p* (test)", 4),
                               ("agreement_mean", "agreement with teacher (%)", 2),
                               ("kl_teacher_student_mean", "KL(teacher‖student)", 4)) if table[c].notna().any()},
    })
    return (f"# {title}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n\n"
            "Student test accuracy after its last epoch, mean over the runs (teacher seeds × student seeds). "
            f"Δ vs {reference}: this recipe's student minus the {reference} teacher's student, paired by "
            "(teacher seed, student seed) at the same teacher arch, checkpoint, method and student. Δ vs vanilla: "
            "the KD student minus the vanilla student (CE only, no teacher) trained alone with the same seed, so on "
            "the same batches. Each interval is over teacher seeds (the unit of replication: student seeds under one "
            "teacher seed share that teacher): per teacher seed, the Δ averaged over its student seeds (for Δ vs "
            "vanilla: its KD students' mean minus the vanilla students' mean over the same student seeds); "
            f"{STUDENT_CI_NOTE}. {VERDICT_NOTE} Agreement (top-1, %) and "
            "KL(teacher‖student) (T = 1) are on the test split.\n")
