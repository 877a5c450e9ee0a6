"""The summary and delta tables as people read them: formatted numbers, labelled columns, the notes that say what
each number is, in Markdown and LaTeX; the CSV and JSON every machine-readable table is written as; and the
formatting the other tables share (intervals, counts, their notes).

A file's render takes the table's value and the ``Study`` (its title, its reference recipe) and returns the text.

Student accuracy is reported twice, and labelled: *last* (test accuracy after the final epoch, the honest number)
and *best* (the test accuracy at the epoch chosen on ``best_chosen_on``: the validation split where there is one,
else the test split, the optimistic number many KD papers report). Each is the mean ± sample standard deviation
over seeds (student seeds × teacher seeds), with n.
"""

from __future__ import annotations

import json

import pandas as pd

from soteacher.report.declarations import Study

CI_NOTE = "± is the half-width of the 95 % t-interval over the n teacher seeds (none with n = 1)"
# students: the unit of replication is the teacher seed, not the (teacher seed, student seed) pair
STUDENT_CI_NOTE = ("± is the half-width of the 95 % paired t-interval over the n teacher seeds, each teacher seed's "
                   "difference averaged over its student seeds first (student seeds under one teacher seed share "
                   "that teacher: they are not independent replicates); none with n = 1")
VERDICT_NOTE = ("Verdict: *better* / *worse* when the 95 % paired interval excludes 0 (for TV and KL to p*, lower "
                "is better), *inconclusive* when it contains 0, *n = 1, no interval* with a single teacher seed.")


def csv(frame: pd.DataFrame, study: Study) -> str:
    return frame.to_csv(index=False)


def json_text(value: dict, study: Study) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def signed(value: float, digits: int = 2) -> str:
    """``+1.00`` / ``-1.00`` / ``0.00`` (no sign on a value that rounds to zero), ``–`` for NaN."""
    if pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if round(value, digits) != 0 else f"{0:.{digits}f}"


def signed_interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``+mean ± half-width`` of a symmetric interval, or the signed mean alone where there is none (n = 1)."""
    if pd.isna(low) or pd.isna(high):
        return signed(mean, digits)
    return f"{signed(mean, digits)} ± {(high - low) / 2:.{digits}f}"


def shown_intervals(table: pd.DataFrame, prefix: str, digits: int = 2, signed: bool = False) -> list[str]:
    """Per row, ``<prefix>_mean`` ± the half-width of its interval (``signed``: with a sign), ``–`` where unknown."""
    def one(mean: float, low: float, high: float) -> str:
        if pd.isna(mean):
            return "–"
        if signed:
            return signed_interval(mean, low, high, digits)
        return f"{mean:.{digits}f}" if pd.isna(low) else f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"

    if f"{prefix}_mean" not in table:
        return ["–"] * len(table)
    return list(map(one, table[f"{prefix}_mean"], table[f"{prefix}_low"], table[f"{prefix}_high"]))


def shown_counts(values: pd.Series) -> pd.Series:
    """Counts as integers, '–' where unknown (a left merge makes them floats with NaN)."""
    return values.map(lambda v: "–" if pd.isna(v) else str(int(v)))


def _pm(mean: float, std: float) -> str:
    """``mean ± std``, or the mean alone where the std is unknown (one run)."""
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def best_label(table: pd.DataFrame) -> str:
    """The best-epoch column's name, saying which split chose the epoch where it was not the test split."""
    chosen = sorted(set("/".join(table["best_chosen_on"]).split("/")))
    return "student acc, best epoch (%)" if chosen == ["test"] else \
        f"student acc, best epoch, chosen on {' or '.join(chosen)} (%)"


def shown_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The human-readable summary (Markdown and LaTeX): formatted strings, labelled columns."""
    has_pstar = table["teacher_tv_pstar"].notna().any()
    has_delta = table["delta_last_mean"].notna().any()
    return pd.DataFrame({
        "teacher": table["teacher"], "recipe": table["recipe"], "ckpt epoch": table["teacher_epoch"],
        "method": table["method"], "student": table["student"],
        "teacher acc (%)": list(map(_pm, table["teacher_acc"], table["teacher_acc_std"])),
        **({"teacher TV to p*": table["teacher_tv_pstar"].map(lambda v: f"{v:.4f}")} if has_pstar else {}),
        "student acc, last epoch (%)": list(map(_pm, table["student_last_mean"], table["student_last_std"])),
        best_label(table): list(map(_pm, table["student_best_mean"], table["student_best_std"])),
        **({f"Δ vs {reference}, last epoch (pp)": list(map(signed_interval, table["delta_last_mean"],
                                                            table["delta_last_low"], table["delta_last_high"])),
            f"Δ vs {reference}, best epoch (pp)": table["delta_best_mean"].map(signed)} if has_delta else {}),
        "n": table["n"],
    })


NOTE = ("± is the sample standard deviation (ddof 1); a value without ± comes from a single run. "
        "Teacher accuracy: mean ± std over teacher seeds. Student accuracy: mean ± std over seeds (n runs). "
        "*last epoch* is the test accuracy after the final epoch; *best epoch* is the test accuracy at the epoch "
        "chosen on the validation split (on the test split where the study has none: optimistic, as many KD "
        "papers report). Δ vs {reference}: this recipe's student accuracy minus the {reference} teacher's on the "
        "same teacher, checkpoint, method and student, paired by (teacher seed, student seed), in percentage "
        "points (+: the recipe's teacher taught better); its ± is the half-width of the 95 % paired t-interval "
        "over teacher seeds, each teacher seed's difference averaged over its student seeds (none with one teacher "
        "seed). The vanilla student (trained alone) has no Δ: it has no teacher.")
PSTAR_NOTE = (" Teacher TV to p*: mean total variation between the teacher's softmax and the true label "
              "distribution p*(x) on the training set (lower is closer).")


def table_note(table: pd.DataFrame, reference: str) -> str:
    return NOTE.format(reference=reference) + (PSTAR_NOTE if table["teacher_tv_pstar"].notna().any() else "")


def summary_markdown(table: pd.DataFrame, study: Study) -> str:
    head = f"# {study.title}\n\n" + ("**PARTIAL: some runs are missing.**\n\n" if study.partial else "")
    return (head + shown_table(table, study.reference_recipe).to_markdown(index=False, disable_numparse=True)
            + "\n\n" + table_note(table, study.reference_recipe) + "\n")


def summary_latex(table: pd.DataFrame, study: Study) -> str:
    return latex(shown_table(table, study.reference_recipe),
                 f"{study.title}. {table_note(table, study.reference_recipe)}", f"tab:{study.name}")


def checkpoint_curves_csv(table: pd.DataFrame, study: Study) -> str:
    """Teacher and student accuracy per checkpoint: the summary's columns Fig. 1 plots."""
    return csv(table[["teacher", "recipe", "teacher_epoch", "method", "student", "teacher_acc",
                      "student_last_mean"]], study)


def latex(shown: pd.DataFrame, caption: str, label: str) -> str:
    """A LaTeX tabular (booktabs) of an already formatted table, special characters escaped."""
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(caption=caption, label=label, hrules=True, position_float="centering")


def delta_markdown(delta: pd.DataFrame, study: Study) -> str:
    reference = study.reference_recipe
    title = f"{study.title}: recipe − {reference}"
    if delta.empty:
        return f"# {title}\n\nNo recipe to compare: the study has no `{reference}` recipe or no other recipe.\n"
    return f"# {title}\n\n" + delta_shown(delta).to_markdown(index=False, disable_numparse=True) + (
        f"\n\nRecipe minus {reference} teacher, same teacher architecture, checkpoint, method and student, paired by "
        "(teacher seed, student seed): student accuracy in percentage points at the last epoch and at the best "
        "epoch; teacher accuracy and TV to p* paired by teacher seed. "
        f"{STUDENT_CI_NOTE}. Verdict: *better* / *worse* when the interval excludes 0 "
        "(for TV to p*, lower is better), *inconclusive* when it contains 0. "
        f"{primary_note(study)}\n")


def primary_note(study: Study) -> str:
    """What the ``comparison`` column means: the study's one primary comparison, declared in its config."""
    p = study.primary
    at = "its last distilled checkpoint" if p["checkpoint"] == "last" else f"checkpoint epoch {p['checkpoint']}"
    return (f"Comparison: the study's one *primary* comparison (config report.primary) is {p['recipe']} minus "
            f"{study.reference_recipe} for {p['method']} students at {at} (pooled over cells in summary.json); "
            "every other row is *secondary*.")


def delta_latex(delta: pd.DataFrame, study: Study) -> str:
    if delta.empty:
        return f"% no recipe to compare with the {study.reference_recipe} teacher\n"
    return latex(delta_shown(delta), f"{study.title}: recipe minus {study.reference_recipe} teacher (student "
                 "accuracy in percentage points, paired by seed, ± half-width of the 95 % paired t-interval over "
                 "teacher seeds). "
                 f"{primary_note(study)}",
                 f"tab:{study.name}_delta")


def delta_shown(delta: pd.DataFrame) -> pd.DataFrame:
    has_pstar = delta["delta_teacher_tv_pstar_mean"].notna().any()

    def ci(prefix: str, digits: int = 2) -> list[str]:
        return list(map(lambda m, lo, hi: signed_interval(m, lo, hi, digits), delta[f"{prefix}_mean"],
                        delta[f"{prefix}_low"], delta[f"{prefix}_high"]))

    return pd.DataFrame({
        "teacher": delta["teacher"], "ckpt epoch": delta["teacher_epoch"], "method": delta["method"],
        "student": delta["student"], "recipe": delta["recipe"], "comparison": delta["comparison"],
        "Δ student, last epoch (pp)": ci("delta_last"), "teacher seeds": delta["delta_last_n"],
        "verdict": delta["delta_last_verdict"],
        "Δ student, best epoch (pp)": ci("delta_best"),
        "Δ teacher acc (pp)": ci("delta_teacher_acc"),
        **({"Δ teacher TV to p*": ci("delta_teacher_tv_pstar", 4)} if has_pstar else {}),
        "teacher seeds (teacher Δ)": delta["delta_teacher_acc_n"],
    })
