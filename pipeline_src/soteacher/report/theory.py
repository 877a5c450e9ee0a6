"""The theory study's tables: teachers against the true label distribution p*(x) (the regime check, Δ vs standard
paired by teacher seed), students paired by seed against the standard recipe and the vanilla student, and the
skeptic's early-stopping comparison; as CSV frames and Markdown. Its figures are in ``figures``.

Teachers come from their ``metrics.json`` (``checkpoints`` and the per-epoch ``history``), the Bayes reference
from the data manifest (synthetic data only), both read by ``collect``. Keys a file predates are NaN, and a table
that needs them says so instead of failing.
"""

from __future__ import annotations

import math

import pandas as pd

from soteacher.report import stats, tables
from soteacher.report.collect import STANDARD, TEACHER, VANILLA, reference_value
from soteacher.report.compare import at_last_checkpoint

LOWER_IS_BETTER = {"tv_pstar_train", "tv_pstar_test", "kl_pstar_train", "kl_pstar_test"}
SHOWN_AT_LAST = {"train_eval_acc": "train-eval acc (%)", "test_acc": "test acc (%)", "val_acc": "val acc (%)",
                 "tv_pstar_train": "TV to p* (train)", "kl_pstar_train": "KL(p*‖net) (train)",
                 "tv_pstar_test": "TV to p* (test)"}
DELTA_METRICS = {"tv_pstar_train": "TV to p* (train)", "kl_pstar_train": "KL(p*‖net) (train)",
                 "tv_pstar_test": "TV to p* (test)", "kl_pstar_test": "KL(p*‖net) (test)",
                 "train_eval_acc": "train-eval acc (pp)", "test_acc": "test acc (pp)"}
CI_NOTE = "± is the half-width of the 95 % t-interval over seeds (none with n = 1)"
VERDICT_NOTE = ("Verdict: *better* / *worse* when the 95 % paired interval excludes 0 (for TV and KL to p*, lower "
                "is better), *inconclusive* when it contains 0, *n = 1, no interval* with a single pair.")


def val_best(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per teacher (arch, recipe, seed), the checkpoint with the highest val_acc (ties: the earliest); teachers
    without val_acc are left out."""
    known = checkpoints[checkpoints["val_acc"].notna()].sort_values("teacher_epoch")
    if known.empty:
        return known
    return known.loc[known.groupby([*TEACHER, "teacher_seed"], sort=False)["val_acc"].idxmax()]


def _epochs_by_seed(frame: pd.DataFrame, epoch: str) -> pd.DataFrame:
    """Per teacher (arch, recipe): 'seed 0: 12; seed 1: 14', which epoch each teacher seed chose."""
    rows = [(*key, "; ".join(f"seed {s}: {int(e)}" for s, e in zip(g["teacher_seed"], g[epoch])))
            for key, g in frame.sort_values("teacher_seed").groupby(TEACHER, sort=False)]
    return pd.DataFrame(rows, columns=[*TEACHER, f"{epoch}_by_seed"])


def _mean_ci(frame: pd.DataFrame, by: list[str], value: str, prefix: str) -> pd.DataFrame:
    """Mean and 95 % t-interval of ``value`` per group (the verdict of a plain mean means nothing: dropped)."""
    return stats.intervals(frame, by, value, prefix)[[*by, f"{prefix}_mean", f"{prefix}_low", f"{prefix}_high"]]


def _merge_all(parts: list[pd.DataFrame], on: list[str]) -> pd.DataFrame:
    out = parts[0]
    for part in parts[1:]:
        out = out.merge(part, on=on, how="left")
    return out


# ---- teachers ---------------------------------------------------------------------------------------------------

def teachers_table(checkpoints: pd.DataFrame, history: pd.DataFrame, ref: dict) -> pd.DataFrame:
    """Per teacher arch × recipe at its last saved checkpoint: metrics over teacher seeds (mean, 95 % CI); the
    regime check (train-eval accuracy − E[max p*] on train, the minimum of train TV over the history, last −
    min, the val-chosen checkpoint's test accuracy vs the Bayes accuracy); Δ vs standard paired by seed."""
    if checkpoints.empty:
        return pd.DataFrame(columns=[*TEACHER, "teacher_epoch", "n_teachers"])
    last = at_last_checkpoint(checkpoints)  # per recipe: an imported teacher has its own last epoch
    keys = [*TEACHER, "teacher_epoch"]
    parts = [last.groupby(keys, sort=False).size().rename("n_teachers").reset_index()]
    parts += [_mean_ci(last, keys, m, m) for m in SHOWN_AT_LAST]
    out = _merge_all(parts, keys)

    # the regime: does the standard teacher fit the training labels beyond E[max p*] and drift away from p*?
    emax, bayes = reference_value(ref, "expected_max_pstar", "train"), reference_value(ref, "bayes_acc", "test")
    out["expected_max_pstar_train"] = emax
    for c in ("mean", "low", "high"):
        out[f"fit_gap_{c}"] = out[f"train_eval_acc_{c}"] - emax
    trace = history[history["tv_pstar_train"].notna()]
    if not trace.empty:
        rows = []
        for key, g in trace.sort_values("epoch").groupby([*TEACHER, "teacher_seed"], sort=False):
            tv = g["tv_pstar_train"]
            rows.append((*key, tv.min(), g.loc[tv.idxmin(), "epoch"], tv.iloc[-1] - tv.min()))
        per_seed = pd.DataFrame(rows, columns=[*TEACHER, "teacher_seed", "tv_train_min", "tv_train_min_epoch",
                                               "tv_train_turn_up"])
        out = _merge_all([out, _mean_ci(per_seed, TEACHER, "tv_train_min", "tv_train_min"),
                          _epochs_by_seed(per_seed, "tv_train_min_epoch"),
                          _mean_ci(per_seed, TEACHER, "tv_train_turn_up", "tv_train_turn_up")], TEACHER)
    chosen = val_best(checkpoints)
    if not chosen.empty:
        chosen = chosen.rename(columns={"teacher_epoch": "val_best_epoch", "test_acc": "val_best_test_acc"})
        out = _merge_all([out, _mean_ci(chosen, TEACHER, "val_best_test_acc", "val_best_test_acc"),
                          _epochs_by_seed(chosen, "val_best_epoch")], TEACHER)
    out["bayes_test_acc"] = bayes
    if "val_best_test_acc_mean" in out:
        out["val_best_gap_to_bayes"] = out["val_best_test_acc_mean"] - bayes

    # Δ vs standard, paired by teacher seed at the same checkpoint epoch
    pairs = stats.pair(last[last["recipe"] != STANDARD], checkpoints[checkpoints["recipe"] == STANDARD],
                       ["teacher", "teacher_epoch", "teacher_seed"], list(DELTA_METRICS))
    deltas = [stats.intervals(pairs, keys, f"d_{m}", f"delta_{m}", higher_is_better=m not in LOWER_IS_BETTER)
              for m in DELTA_METRICS]
    return _merge_all([out, *deltas], keys)


def _ci(table: pd.DataFrame, prefix: str, digits: int = 2, signed: bool = False) -> list[str]:
    def one(mean: float, low: float, high: float) -> str:
        if pd.isna(mean):
            return "–"
        if signed:
            return tables.signed_interval(mean, low, high, digits)
        return f"{mean:.{digits}f}" if pd.isna(low) else f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"

    if f"{prefix}_mean" not in table:
        return ["–"] * len(table)
    return list(map(one, table[f"{prefix}_mean"], table[f"{prefix}_low"], table[f"{prefix}_high"]))


def _count(values: pd.Series) -> pd.Series:
    """Counts as integers, '–' where unknown (a left merge makes them floats with NaN)."""
    return values.map(lambda v: "–" if pd.isna(v) else str(int(v)))


def _digits(metric: str) -> int:
    return 4 if metric.startswith(("tv_", "kl_")) else 2


def teachers_markdown(table: pd.DataFrame, title: str, ref: dict) -> str:
    if table.empty:
        return f"# {title}\n\nNo teacher metrics found.\n"
    head = {"teacher": table["teacher"], "recipe": table["recipe"], "ckpt epoch": table["teacher_epoch"],
            "n": table["n_teachers"]}
    at_last = pd.DataFrame({**head, **{label: _ci(table, m, _digits(m)) for m, label in SHOWN_AT_LAST.items()
                                       if table[f"{m}_mean"].notna().any()}})
    emax, bayes = reference_value(ref, "expected_max_pstar", "train"), reference_value(ref, "bayes_acc", "test")
    regime = pd.DataFrame({
        **head,
        "train-eval acc − E[max p*] (train, pp)": _ci(table, "fit_gap", signed=True),
        "min TV to p* (train)": _ci(table, "tv_train_min", 4),
        "its epoch": table.get("tv_train_min_epoch_by_seed", pd.Series("–", index=table.index)).fillna("–"),
        "last − min TV (train)": _ci(table, "tv_train_turn_up", 4, signed=True),
        "val-chosen ckpt": table.get("val_best_epoch_by_seed", pd.Series("–", index=table.index)).fillna("–"),
        "its test acc (%)": _ci(table, "val_best_test_acc"),
        "− Bayes test acc (pp)": table.get("val_best_gap_to_bayes", pd.Series(math.nan, index=table.index)).map(
            tables.signed),
    })
    others = table[table["recipe"] != STANDARD]
    delta = pd.DataFrame({
        "teacher": others["teacher"], "recipe": others["recipe"], "ckpt epoch": others["teacher_epoch"],
        **{f"Δ {label}": [f"{v} ({w})" if v != "–" else "–" for v, w in
                          zip(_ci(others, f"delta_{m}", _digits(m), signed=True), others[f"delta_{m}_verdict"])]
           for m, label in DELTA_METRICS.items() if others[f"delta_{m}_mean"].notna().any()},
        "pairs": _count(others["delta_test_acc_n"]),
    })
    reference_line = (f"Reference (data manifest): E[max p*] on train = {emax:.2f} %, Bayes accuracy on test = "
                      f"{bayes:.2f} %." if not math.isnan(emax) else
                      "No p* reference in the data manifest (real data): no regime columns against it.")
    return "\n\n".join([
        f"# {title}", "## At the last saved checkpoint", at_last.to_markdown(index=False, disable_numparse=True),
        f"Mean over the n teacher seeds; {CI_NOTE}. *train-eval acc*: clean training split, eval mode.",
        "## Regime check", regime.to_markdown(index=False, disable_numparse=True),
        reference_line + " A teacher above E[max p*] on train fits label noise beyond p*. *min TV*: the minimum of "
        "the training-split TV to p* over the teacher's history (mean over seeds; its epoch per seed); *last − "
        "min* > 0 means the TV turned up again before training ended. *val-chosen ckpt*: per teacher seed, the "
        "saved checkpoint with the highest validation accuracy (ties: earliest); its test accuracy is only "
        "reported, never used to choose.",
        "## Δ vs standard (paired by teacher seed, same checkpoint epoch)",
        delta.to_markdown(index=False, disable_numparse=True) if not delta.empty else
        f"No recipe to compare with `{STANDARD}`.",
        f"Recipe minus standard per metric; {CI_NOTE}. {VERDICT_NOTE}",
    ]) + "\n"


# ---- students -----------------------------------------------------------------------------------------------------

STUDENT_CELL = ["teacher", "teacher_epoch", "method", "student", "recipe"]


def students_paired_table(df: pd.DataFrame, std_pairs: pd.DataFrame, van_pairs: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint × KD method × student × recipe: the student's last-epoch test accuracy, its Δ vs the
    standard recipe and vs the vanilla student (paired by seed; mean, 95 % interval, n, verdict), its TV to p*
    on test, and its agreement with / KL from its teacher."""
    kd = df[df["method"] != VANILLA]
    if kd.empty:
        return pd.DataFrame(columns=STUDENT_CELL)
    grouped = kd.groupby(STUDENT_CELL, sort=False)
    out = grouped.agg(student_last_mean=("student_last_acc", "mean"), n=("student_last_acc", "size"),
                      student_tv_pstar_test_mean=("student_tv_pstar_test", "mean"),
                      agreement_mean=("agreement", "mean"),
                      kl_teacher_student_mean=("kl_teacher_student", "mean")).reset_index()
    vanilla_mean = van_pairs.groupby(STUDENT_CELL, sort=False)["student_last_acc_ref"].mean().rename(
        "vanilla_last_mean").reset_index() if not van_pairs.empty else pd.DataFrame(columns=STUDENT_CELL)
    return _merge_all([out, stats.intervals(std_pairs, STUDENT_CELL, "d_student_last_acc", "delta_standard"),
                       vanilla_mean, stats.intervals(van_pairs, STUDENT_CELL, "d_student_last_acc", "delta_vanilla")],
                      STUDENT_CELL)


def _verdicts(table: pd.DataFrame, prefix: str) -> pd.Series:
    return table[f"{prefix}_verdict"].fillna("–") if f"{prefix}_verdict" in table else pd.Series("–", index=table.index)


def students_paired_markdown(table: pd.DataFrame, title: str) -> str:
    if table.empty:
        return f"# {title}\n\nNo KD student in this study.\n"
    shown = pd.DataFrame({
        "teacher": table["teacher"], "ckpt epoch": table["teacher_epoch"], "method": table["method"],
        "student": table["student"], "recipe": table["recipe"],
        "student acc, last epoch (%)": table["student_last_mean"].map(lambda v: f"{v:.2f}"), "runs": table["n"],
        "Δ vs standard (pp)": _ci(table, "delta_standard", signed=True),
        "n vs standard": _count(table.get("delta_standard_n", pd.Series(math.nan, index=table.index))),
        "verdict vs standard": _verdicts(table, "delta_standard"),
        "vanilla acc (%)": table.get("vanilla_last_mean", pd.Series(math.nan, index=table.index)).map(
            lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
        "Δ vs vanilla (pp)": _ci(table, "delta_vanilla", signed=True),
        "n vs vanilla": _count(table.get("delta_vanilla_n", pd.Series(math.nan, index=table.index))),
        "verdict vs vanilla": _verdicts(table, "delta_vanilla"),
        **{label: table[c].map(lambda v, d=d: "–" if pd.isna(v) else f"{v:.{d}f}")
           for c, label, d in (("student_tv_pstar_test_mean", "student TV to p* (test)", 4),
                               ("agreement_mean", "agreement with teacher (%)", 2),
                               ("kl_teacher_student_mean", "KL(teacher‖student)", 4)) if table[c].notna().any()},
    })
    return (f"# {title}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n\n"
            "Student test accuracy after its last epoch, mean over the runs (teacher seeds × student seeds). "
            "Δ vs standard: this recipe's student minus the standard teacher's student, paired by (teacher seed, "
            "student seed) at the same teacher arch, checkpoint, method and student. Δ vs vanilla: the KD student "
            "minus the vanilla student (CE only, no teacher) trained alone with the same seed, so on the same "
            "batches. n: pairs; "
            f"{CI_NOTE.replace('over seeds', 'over the n pairs')}. {VERDICT_NOTE} Agreement (top-1, %) and "
            "KL(teacher‖student) (T = 1) are on the test split.\n")


# ---- early stopping ---------------------------------------------------------------------------------------------

EARLY_CELL = ["teacher", "recipe", "method", "student"]
EARLY_PAIR = ["teacher", "method", "student", "teacher_seed", "seed"]


def early_stopping_table(df: pd.DataFrame, checkpoints: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The skeptic's comparison: each non-standard recipe's students at its last checkpoint vs the students of
    the standard teacher's validation-chosen checkpoint (per teacher seed, the distilled checkpoint with the
    highest val_acc), paired by (teacher seed, student seed). Returns the table and why it is empty, if it is."""
    std = checkpoints[(checkpoints["recipe"] == STANDARD) & checkpoints["distilled"]]
    if std.empty:
        return pd.DataFrame(columns=EARLY_CELL), f"No `{STANDARD}` recipe in this study: nothing to early-stop."
    chosen = val_best(std)
    if chosen.empty:
        return pd.DataFrame(columns=EARLY_CELL), ("This comparison needs a validation split: the standard "
                                                  "teachers' checkpoints have no val_acc, and choosing on test "
                                                  "would be optimistic.")
    kd = df[df["method"] != VANILLA]
    early = kd[kd["recipe"] == STANDARD].merge(chosen[["teacher", "teacher_seed", "teacher_epoch"]],
                                               on=["teacher", "teacher_seed", "teacher_epoch"])
    treated = at_last_checkpoint(kd[kd["recipe"] != STANDARD])
    pairs = stats.pair(treated, early, EARLY_PAIR, ["student_last_acc"])
    if pairs.empty:
        return pd.DataFrame(columns=EARLY_CELL), "No paired runs: the students of one side are missing."
    out = pairs.groupby(EARLY_CELL, sort=False).agg(
        recipe_epoch=("teacher_epoch", "first"), recipe_last_mean=("student_last_acc", "mean"),
        early_stopped_last_mean=("student_last_acc_ref", "mean")).reset_index()
    epochs = _epochs_by_seed(chosen, "teacher_epoch").rename(
        columns={"teacher_epoch_by_seed": "standard_epoch_by_seed"})
    out = out.merge(epochs.drop(columns="recipe"), on="teacher", how="left")
    return out.merge(stats.intervals(pairs, EARLY_CELL, "d_student_last_acc", "delta"), on=EARLY_CELL), ""


def early_stopping_markdown(table: pd.DataFrame, title: str, why_empty: str) -> str:
    if table.empty:
        return f"# {title}\n\n{why_empty}\n"
    shown = pd.DataFrame({
        "teacher": table["teacher"], "recipe": table["recipe"], "method": table["method"],
        "student": table["student"], "recipe ckpt": table["recipe_epoch"],
        "standard ckpt chosen on val": table["standard_epoch_by_seed"],
        "student acc, recipe (%)": table["recipe_last_mean"].map(lambda v: f"{v:.2f}"),
        "student acc, early-stopped standard (%)": table["early_stopped_last_mean"].map(lambda v: f"{v:.2f}"),
        "Δ (pp)": _ci(table, "delta", signed=True), "n": table["delta_n"], "verdict": table["delta_verdict"],
    })
    return (f"# {title}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n\n"
            "Does the recipe beat an early-stopped standard teacher? Per teacher seed, the standard teacher's "
            "checkpoint is the distilled one with the highest validation accuracy (ties: earliest; the test split "
            "is never used to choose); the recipe's teacher is its last checkpoint. Δ: student last-epoch test "
            "accuracy, recipe minus early-stopped standard, paired by (teacher seed, student seed); n: pairs; "
            f"{CI_NOTE.replace('over seeds', 'over the n pairs')}. {VERDICT_NOTE}\n")


# ---- summary.json ------------------------------------------------------------------------------------------------

def teacher_headline(teachers: pd.DataFrame) -> dict[str, float]:
    """Per recipe, the teachers' training-split TV to p* at the last checkpoint (the mean over teacher
    archs of the means over seeds)."""
    if teachers.empty or teachers["tv_pstar_train_mean"].isna().all():
        return {}
    return {str(r): round(float(v), 6) for r, v in teachers.groupby("recipe")["tv_pstar_train_mean"].mean().items()
            if pd.notna(v)}
