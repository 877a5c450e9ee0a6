"""Summaries and seed-paired comparisons of the student runs: the summary table, recipe − reference and KD −
vanilla differences with their 95 % paired t-intervals over teacher seeds (``stats``), per row and per method.

The reference is the study's reference recipe (config ``report.reference_recipe``, by default ``standard``):
recipe − reference pairs runs that differ only in the teacher recipe; student − vanilla pairs a KD run with the
vanilla run of its student and seed (one run, listed under every teacher checkpoint: the same batches). Each
interval is over teacher seeds: a teacher seed's difference is the mean of its pairs over student seeds (for KD −
vanilla: its KD students' mean minus the vanilla students' mean over the same student seeds).

One comparison is primary (config ``report.primary``: a recipe and a method vs the reference, at one checkpoint);
every other row of the delta tables is secondary (column ``comparison``).
"""

from __future__ import annotations

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import GROUP, VANILLA, distilled

REFERENCE_PAIR = ["teacher", "teacher_epoch", "method", "student", "teacher_seed", "seed"]
VANILLA_PAIR = ["teacher", "recipe", "teacher_seed", "teacher_epoch", "student", "seed"]
SUMMARY_DELTAS = ["delta_last_mean", "delta_last_low", "delta_last_high", "delta_last_n", "delta_last_verdict",
                  "delta_best_mean", "delta_teacher_acc_mean", "delta_teacher_tv_pstar_mean"]


def summarise(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per GROUP, with its Δ vs ``reference`` (``paired_deltas``). Stds are sample stds (ddof 1), NaN
    where there is one run: no spread is known."""
    students = df.groupby(GROUP, sort=False).agg(
        student_last_mean=("student_last_acc", "mean"),
        student_last_std=("student_last_acc", "std"),
        student_best_mean=("student_best_acc", "mean"),
        student_best_std=("student_best_acc", "std"),
        n=("student_last_acc", "size"),
        best_chosen_on=("best_chosen_on", lambda v: "/".join(sorted(set(v)))),
    ).reset_index()
    # teacher figures over teacher seeds, each teacher counted once (not once per student run: with runs
    # missing, a per-run mean would weight teachers unequally)
    teachers = df.drop_duplicates(GROUP + ["teacher_seed"]).groupby(GROUP, sort=False).agg(
        teacher_acc=("teacher_acc", "mean"), teacher_tv_pstar=("teacher_tv_pstar", "mean"),
        teacher_acc_std=("teacher_acc", "std"), n_teachers=("teacher_acc", "size")).reset_index()
    agg = students.merge(teachers, on=GROUP, how="left")
    columns = [*GROUP, "teacher_acc", "teacher_tv_pstar", "student_last_mean", "student_last_std",
               "student_best_mean", "student_best_std", "best_chosen_on", "n", "teacher_acc_std", "n_teachers"]
    deltas = paired_deltas(df, reference)[GROUP + SUMMARY_DELTAS]  # the full intervals are in delta.csv
    return agg[columns].merge(deltas, on=GROUP, how="left")


def reference_pairs(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each other recipe's KD run next to the ``reference`` teacher's run with the same seeds, teacher arch,
    checkpoint, method and student; ``d_<value>`` = recipe − reference. Vanilla runs are left out: they have no
    teacher."""
    kd = distilled(df)
    return stats.pair(kd[kd["recipe"] != reference], kd[kd["recipe"] == reference], REFERENCE_PAIR,
                      ["student_last_acc", "student_best_acc"])


def vanilla_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each KD run next to the vanilla run of its student and seed (the same batches); ``d_<value>`` = KD − vanilla."""
    return stats.pair(distilled(df), df[df["method"] == VANILLA], VANILLA_PAIR,
                      ["student_last_acc", "student_best_acc"])


def paired_deltas(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per GROUP (non-reference, non-vanilla rows): recipe − reference, paired by seed, with 95 % intervals over
    teacher seeds (n): student last/best accuracy (each teacher seed's pairs averaged over its student seeds),
    teacher accuracy and TV to p* (each teacher once)."""
    pairs = reference_pairs(df, reference)
    kd = distilled(df).drop_duplicates(GROUP + ["teacher_seed"])
    teacher_pairs = stats.pair(kd[kd["recipe"] != reference], kd[kd["recipe"] == reference],
                               [c for c in REFERENCE_PAIR if c != "seed"], ["teacher_acc", "teacher_tv_pstar"])
    parts = [stats.teacher_seed_intervals(pairs, GROUP, "d_student_last_acc", "delta_last"),
             stats.teacher_seed_intervals(pairs, GROUP, "d_student_best_acc", "delta_best"),
             stats.intervals(teacher_pairs, GROUP, "d_teacher_acc", "delta_teacher_acc"),
             stats.intervals(teacher_pairs, GROUP, "d_teacher_tv_pstar", "delta_teacher_tv_pstar",
                             higher_is_better=False)]
    return merge_all(parts, GROUP)  # the student pairs' groups, in study order (a left merge keeps it)


def merge_all(parts: list[pd.DataFrame], on: list[str]) -> pd.DataFrame:
    """The first frame with the others' columns, left-merged ``on``."""
    out = parts[0]
    for part in parts[1:]:
        out = out.merge(part, on=on, how="left")
    return out


def at_last_checkpoint(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at each recipe's own last distilled checkpoint (an imported teacher's epoch 240 must not hide
    the trained recipes' epoch 15)."""
    return frame[frame["teacher_epoch"] == frame.groupby("recipe")["teacher_epoch"].transform("max")]


DELTA_COLUMNS = ["teacher", "teacher_epoch", "method", "student", "recipe", "recipe_last_mean", "recipe_best_mean"]


def delta_table(df: pd.DataFrame, table: pd.DataFrame, reference: str, primary: dict) -> pd.DataFrame:
    """One row per other recipe's KD row of the summary ``table`` with a paired ``reference`` counterpart: the
    paired differences (mean, 95 % interval over teacher seeds, n teacher seeds, verdict) and the sign of the mean
    last-epoch difference."""
    deltas = paired_deltas(df, reference)
    if deltas.empty:
        return pd.DataFrame(columns=[*DELTA_COLUMNS, "comparison", *deltas.columns[len(GROUP):], "n"])
    means = table[GROUP + ["student_last_mean", "student_best_mean", "n"]].rename(
        columns={"student_last_mean": "recipe_last_mean", "student_best_mean": "recipe_best_mean"})
    out = deltas[deltas["delta_last_n"] > 0].merge(means, on=GROUP, how="left")
    out.insert(out.columns.get_loc("delta_last_verdict") + 1, "sign_last",
               out["delta_last_mean"].map(lambda v: "+" if v > 0 else ("-" if v < 0 else "0")))
    out.insert(out.columns.get_loc("recipe") + 1, "comparison", comparisons(out, primary, last_epochs(df)))
    rest = [c for c in out.columns if c not in DELTA_COLUMNS and c != "n"]
    return out[[*DELTA_COLUMNS, *rest, "n"]].reset_index(drop=True)


BARS_COLUMNS = ["versus", "recipe", "method", "comparison", "delta_last_mean", "delta_last_low", "delta_last_high",
                "delta_last_n", "delta_last_verdict", "delta_best_mean", "cells", "positive"]


def delta_by_method(df: pd.DataFrame, reference: str, primary: dict) -> pd.DataFrame:
    """Per recipe × method at the last distilled checkpoint, the student's last-epoch Δ ``versus`` the
    ``reference`` recipe, and ``versus`` the vanilla student: mean and 95 % interval over teacher seeds (a teacher
    seed's Δ averaged over its student seeds and its teacher → student cells), n teacher seeds, verdict; best-epoch
    mean; cells and how many have a positive mean; ``comparison``: primary for the ``primary`` recipe and method
    vs the reference (where ``primary`` is at the last checkpoint), else secondary."""
    parts = []
    for versus, pairs in ((reference, reference_pairs(df, reference)), (VANILLA, vanilla_pairs(df))):
        last = at_last_checkpoint(pairs)
        if last.empty:
            continue
        by = ["recipe", "method"]
        out = stats.teacher_seed_intervals(last, by, "d_student_last_acc", "delta_last")
        best = stats.teacher_seed_means(last, by, ["d_student_best_acc"]).groupby(by, sort=False)[
            "d_student_best_acc"].mean()
        cells = last.groupby(by + ["teacher", "student"], sort=False)["d_student_last_acc"].mean().groupby(by)
        out = out.merge(best.rename("delta_best_mean").reset_index(), on=by).merge(
            cells.size().rename("cells").reset_index(), on=by).merge(
            cells.apply(lambda v: int((v > 0).sum())).rename("positive").reset_index(), on=by)
        out.insert(0, "versus", versus)
        out["comparison"] = comparisons(out.assign(teacher_epoch=out["recipe"].map(last_epochs(df))), primary,
                                        last_epochs(df)) if versus == reference else SECONDARY
        parts.append(out)
    return pd.concat(parts, ignore_index=True)[BARS_COLUMNS] if parts else pd.DataFrame(columns=BARS_COLUMNS)


PRIMARY, SECONDARY = "primary", "secondary"


def last_epochs(df: pd.DataFrame) -> dict[str, int]:
    """Each recipe's last distilled checkpoint (``at_last_checkpoint``), from its KD runs."""
    return {str(r): int(e) for r, e in distilled(df).groupby("recipe")["teacher_epoch"].max().items()}


def primary_epoch(primary: dict, last: dict[str, int]) -> int | None:
    """The teacher checkpoint of the primary comparison: its recipe's last distilled one for ``last``, else the
    configured epoch (None: the study lacks the recipe)."""
    return last.get(primary["recipe"]) if primary["checkpoint"] == "last" else int(primary["checkpoint"])


def primary_pairs(pairs: pd.DataFrame, last: dict[str, int], primary: dict) -> tuple[pd.DataFrame, int | None]:
    """The rows of ``pairs`` (``reference_pairs``) that make the primary comparison: its recipe and method at its
    checkpoint (``primary_epoch`` of the recipes' ``last`` epochs), and that epoch; empty where the study has none."""
    epoch = primary_epoch(primary, last)
    return pairs[(pairs["recipe"] == primary["recipe"]) & (pairs["method"] == primary["method"])
                 & (pairs["teacher_epoch"] == epoch)], epoch


def comparisons(rows: pd.DataFrame, primary: dict, last: dict[str, int]) -> list[str]:
    """Per row of recipe − reference differences (its recipe, method, teacher_epoch): "primary" for the study's
    one primary comparison (config ``report.primary``), "secondary" for every other."""
    epoch = primary_epoch(primary, last)
    return [PRIMARY if (r, m, e) == (primary["recipe"], primary["method"], epoch) else SECONDARY
            for r, m, e in zip(rows["recipe"], rows["method"], rows["teacher_epoch"])]
