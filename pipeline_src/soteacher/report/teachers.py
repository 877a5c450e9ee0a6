"""The teachers against the true label distribution p*(x), per teacher arch × recipe at its last saved checkpoint:
metrics over teacher seeds, the regime check (do the teachers fit the training labels beyond E[max p*] and drift
away from p*?) and the Δ vs the reference recipe paired by teacher seed; as a CSV frame and Markdown. Its figures
are in ``figures``.

Teachers come from their ``metrics.json`` (``checkpoints`` and the per-epoch ``history``), the Bayes reference
from the data manifest (synthetic data only), both read by ``collect``. Keys a file predates are NaN, and a table
that needs them says so instead of failing.
"""

from __future__ import annotations

import math

import pandas as pd

from soteacher.report import stats, tables
from soteacher.report.collect import TEACHER, reference_value
from soteacher.report.compare import at_last_checkpoint, merge_all
from soteacher.report.declarations import Study
from soteacher.report.tables import CI_NOTE, VERDICT_NOTE, shown_counts, shown_intervals

LOWER_IS_BETTER = {"tv_pstar_train", "tv_pstar_test", "kl_pstar_train", "kl_pstar_test"}
SHOWN_AT_LAST = {"train_ce": "train CE", "train_eval_acc": "train-eval acc (%)", "test_acc": "test acc (%)",
                 "val_acc": "val acc (%)",
                 "tv_pstar_train": "TV to p* (train)", "kl_pstar_train": "KL(p*‖net) (train)",
                 "tv_pstar_test": "TV to p* (test)"}
DELTA_METRICS = {"tv_pstar_train": "TV to p* (train)", "kl_pstar_train": "KL(p*‖net) (train)",
                 "tv_pstar_test": "TV to p* (test)", "kl_pstar_test": "KL(p*‖net) (test)",
                 "train_eval_acc": "train-eval acc (pp)", "test_acc": "test acc (pp)"}


def val_best(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per teacher (arch, recipe, seed), the checkpoint with the highest val_acc (ties: the earliest); teachers
    without val_acc are left out."""
    known = checkpoints[checkpoints["val_acc"].notna()].sort_values("teacher_epoch")
    if known.empty:
        return known
    return known.loc[known.groupby([*TEACHER, "teacher_seed"], sort=False)["val_acc"].idxmax()]


def epochs_by_seed(frame: pd.DataFrame, epoch: str) -> pd.DataFrame:
    """Per teacher (arch, recipe): 'seed 0: 12; seed 1: 14', which epoch each teacher seed chose."""
    rows = [(*key, "; ".join(f"seed {s}: {int(e)}" for s, e in zip(g["teacher_seed"], g[epoch])))
            for key, g in frame.sort_values("teacher_seed").groupby(TEACHER, sort=False)]
    return pd.DataFrame(rows, columns=[*TEACHER, f"{epoch}_by_seed"])


def _mean_ci(frame: pd.DataFrame, by: list[str], value: str, prefix: str) -> pd.DataFrame:
    """Mean and 95 % t-interval of ``value`` per group (the verdict of a plain mean means nothing: dropped)."""
    return stats.intervals(frame, by, value, prefix)[[*by, f"{prefix}_mean", f"{prefix}_low", f"{prefix}_high"]]


def teachers_table(checkpoints: pd.DataFrame, history: pd.DataFrame, data_reference: dict,
                   reference: str) -> pd.DataFrame:
    """Per teacher arch × recipe at its last saved checkpoint: metrics over teacher seeds (mean, 95 % CI); the
    regime check (train-eval accuracy − E[max p*] on train, the minimum of train TV over the history's evaluated
    epochs (others are NaN), last − min, the val-chosen checkpoint's test accuracy vs the Bayes accuracy of
    ``data_reference``); Δ vs the ``reference`` recipe paired by seed."""
    if checkpoints.empty:
        return pd.DataFrame(columns=[*TEACHER, "teacher_epoch", "n_teachers"])
    last = at_last_checkpoint(checkpoints)  # per recipe: an imported teacher has its own last epoch
    keys = [*TEACHER, "teacher_epoch"]
    parts = [last.groupby(keys, sort=False).size().rename("n_teachers").reset_index()]
    parts += [_mean_ci(last, keys, m, m) for m in SHOWN_AT_LAST]
    out = merge_all(parts, keys)

    # the regime: does a teacher fit the training labels beyond E[max p*] and drift away from p*?
    emax = reference_value(data_reference, "expected_max_pstar", "train")
    bayes = reference_value(data_reference, "bayes_acc", "test")
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
        out = merge_all([out, _mean_ci(per_seed, TEACHER, "tv_train_min", "tv_train_min"),
                         epochs_by_seed(per_seed, "tv_train_min_epoch"),
                         _mean_ci(per_seed, TEACHER, "tv_train_turn_up", "tv_train_turn_up")], TEACHER)
    chosen = val_best(checkpoints)
    if not chosen.empty:
        chosen = chosen.rename(columns={"teacher_epoch": "val_best_epoch", "test_acc": "val_best_test_acc"})
        out = merge_all([out, _mean_ci(chosen, TEACHER, "val_best_test_acc", "val_best_test_acc"),
                         epochs_by_seed(chosen, "val_best_epoch")], TEACHER)
    out["bayes_test_acc"] = bayes
    if "val_best_test_acc_mean" in out:
        out["val_best_gap_to_bayes"] = out["val_best_test_acc_mean"] - bayes

    # Δ vs the reference recipe, paired by teacher seed at the same checkpoint epoch
    pairs = stats.pair(last[last["recipe"] != reference], checkpoints[checkpoints["recipe"] == reference],
                       ["teacher", "teacher_epoch", "teacher_seed"], list(DELTA_METRICS))
    deltas = [stats.intervals(pairs, keys, f"d_{m}", f"delta_{m}", higher_is_better=m not in LOWER_IS_BETTER)
              for m in DELTA_METRICS]
    return merge_all([out, *deltas], keys)


def _digits(metric: str) -> int:
    return 4 if metric.startswith(("tv_", "kl_", "train_ce")) else 2


def teachers_markdown(table: pd.DataFrame, study: Study) -> str:
    title, reference, ref = f"{study.title}: teachers and p*", study.reference_recipe, study.data_reference
    if table.empty:
        return f"# {title}\n\nNo teacher metrics found.\n"
    head = {"teacher": table["teacher"], "recipe": table["recipe"], "ckpt epoch": table["teacher_epoch"],
            "n": table["n_teachers"]}
    at_last = pd.DataFrame({**head, **{label: shown_intervals(table, m, _digits(m))
                                       for m, label in SHOWN_AT_LAST.items() if table[f"{m}_mean"].notna().any()}})
    emax, bayes = reference_value(ref, "expected_max_pstar", "train"), reference_value(ref, "bayes_acc", "test")
    regime = pd.DataFrame({
        **head,
        "train-eval acc − E[max p*] (train, pp)": shown_intervals(table, "fit_gap", signed=True),
        "min TV to p* (train)": shown_intervals(table, "tv_train_min", 4),
        "its epoch": table.get("tv_train_min_epoch_by_seed", pd.Series("–", index=table.index)).fillna("–"),
        "last − min TV (train)": shown_intervals(table, "tv_train_turn_up", 4, signed=True),
        "val-chosen ckpt": table.get("val_best_epoch_by_seed", pd.Series("–", index=table.index)).fillna("–"),
        "its test acc (%)": shown_intervals(table, "val_best_test_acc"),
        "− Bayes test acc (pp)": table.get("val_best_gap_to_bayes", pd.Series(math.nan, index=table.index)).map(
            tables.signed),
    })
    others = table[table["recipe"] != reference]
    delta = pd.DataFrame({
        "teacher": others["teacher"], "recipe": others["recipe"], "ckpt epoch": others["teacher_epoch"],
        **{f"Δ {label}": [f"{v} ({w})" if v != "–" else "–" for v, w in
                          zip(shown_intervals(others, f"delta_{m}", _digits(m), signed=True),
                              others[f"delta_{m}_verdict"])]
           for m, label in DELTA_METRICS.items() if others[f"delta_{m}_mean"].notna().any()},
        "teacher seeds": shown_counts(others["delta_test_acc_n"]),
    })
    reference_line = (f"Reference (data manifest): E[max p*] on train = {emax:.2f} %, Bayes accuracy on test = "
                      f"{bayes:.2f} %." if not math.isnan(emax) else
                      "No p* reference in the data manifest (real data): no regime columns against it.")
    return "\n\n".join([
        f"# {title}", "## At the last saved checkpoint", at_last.to_markdown(index=False, disable_numparse=True),
        f"Mean over the n teacher seeds; {CI_NOTE}. *train CE*: the cross-entropy term averaged over the last "
        "epoch's training batches (training mode); *train-eval acc*: clean training split, eval mode.",
        "## Regime check", regime.to_markdown(index=False, disable_numparse=True),
        reference_line + " A teacher above E[max p*] on train fits label noise beyond p*. *min TV*: the minimum of "
        "the training-split TV to p* over the teacher's evaluated epochs (every `teacher.eval_every`-th, the "
        "checkpoints and the last; mean over seeds; its epoch per seed); *last − "
        "min* > 0 means the TV turned up again before training ended. *val-chosen ckpt*: per teacher seed, the "
        "saved checkpoint with the highest validation accuracy (ties: earliest); its test accuracy is only "
        "reported, never used to choose.",
        f"## Δ vs {reference} (paired by teacher seed, same checkpoint epoch)",
        delta.to_markdown(index=False, disable_numparse=True) if not delta.empty else
        f"No recipe to compare with `{reference}`.",
        f"Recipe minus {reference} per metric; {CI_NOTE}. {VERDICT_NOTE}",
    ]) + "\n"
