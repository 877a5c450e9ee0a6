"""Collect every teacher and student metrics file of a study into tables (CSV, Markdown, JSON) and figures.

Student accuracy is reported twice, and labelled: *last* (test accuracy after the final epoch, the
honest number) and *best* (the test accuracy at the epoch chosen on ``best_chosen_on``: the validation split
where there is one, else the test split, the optimistic number many KD papers report). Each is the mean ±
sample standard deviation over seeds (student seeds × teacher seeds), with n. Every Δ is paired by seed and
comes with a 95 % paired t-interval (``stats``); the theory-study tables are in ``theory``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from soteacher.common import layout
from soteacher.common.io import atomic_write, read_json, write_json, write_text
from soteacher.student_side import jobs, stats

log = logging.getLogger(__name__)

GROUP = ["teacher", "recipe", "teacher_epoch", "method", "student"]
STANDARD = "standard"  # the reference recipe every other recipe is compared with
VANILLA = jobs.ALONE  # the student trained alone (CE only): the baseline every KD student is compared with
# recipe − standard pairs runs that differ only in the teacher recipe; student − vanilla pairs a KD run with the
# vanilla run of its student and seed (one run, listed under every teacher checkpoint: the same batches)
STANDARD_PAIR = ["teacher", "teacher_epoch", "method", "student", "teacher_seed", "seed"]
VANILLA_PAIR = ["teacher", "recipe", "teacher_seed", "teacher_epoch", "student", "seed"]
SEED_PAIR = ["teacher_seed", "seed"]
SUMMARY_DELTAS = ["delta_last_mean", "delta_last_low", "delta_last_high", "delta_last_n", "delta_last_verdict",
                  "delta_best_mean", "delta_teacher_acc_mean", "delta_teacher_tv_pstar_mean"]


class IncompleteResultsError(RuntimeError):
    pass


def collect(config: dict, allow_partial: bool = False) -> tuple[pd.DataFrame, list[str]]:
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
    missing = list(dict.fromkeys(missing))  # the vanilla run is listed under every teacher checkpoint
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


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per GROUP. Stds are sample stds (ddof 1), NaN where there is one run: no spread is known."""
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
    deltas = paired_deltas(df)[GROUP + SUMMARY_DELTAS]  # the full intervals are in delta.csv
    return agg[columns].merge(deltas, on=GROUP, how="left")


def standard_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each non-standard KD run next to the standard-teacher run with the same seeds, teacher arch, checkpoint,
    method and student; ``d_<value>`` = recipe − standard. Vanilla runs are left out: they have no teacher."""
    kd = df[df["method"] != VANILLA]
    return stats.pair(kd[kd["recipe"] != STANDARD], kd[kd["recipe"] == STANDARD], STANDARD_PAIR,
                      ["student_last_acc", "student_best_acc"])


def vanilla_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each KD run next to the vanilla run of its student and seed (the same batches); ``d_<value>`` = KD − vanilla."""
    return stats.pair(df[df["method"] != VANILLA], df[df["method"] == VANILLA], VANILLA_PAIR,
                      ["student_last_acc", "student_best_acc"])


def paired_deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Per GROUP (non-standard, non-vanilla rows): recipe − standard, paired by seed, with 95 % intervals:
    student last/best accuracy over (teacher seed, student seed) pairs, teacher accuracy and TV to p* over
    teacher seeds (each teacher once)."""
    pairs = standard_pairs(df)
    kd = df[df["method"] != VANILLA].drop_duplicates(GROUP + ["teacher_seed"])
    teacher_pairs = stats.pair(kd[kd["recipe"] != STANDARD], kd[kd["recipe"] == STANDARD],
                               [c for c in STANDARD_PAIR if c != "seed"], ["teacher_acc", "teacher_tv_pstar"])
    parts = [stats.intervals(pairs, GROUP, "d_student_last_acc", "delta_last"),
             stats.intervals(pairs, GROUP, "d_student_best_acc", "delta_best"),
             stats.intervals(teacher_pairs, GROUP, "d_teacher_acc", "delta_teacher_acc"),
             stats.intervals(teacher_pairs, GROUP, "d_teacher_tv_pstar", "delta_teacher_tv_pstar",
                             higher_is_better=False)]
    out = parts[0]  # the student pairs' groups, in study order (a left merge keeps it)
    for part in parts[1:]:
        out = out.merge(part, on=GROUP, how="left")
    return out


def seed_pair_means(pairs: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per ``by`` and seed pair, the mean of ``value`` over the remaining cells (teacher arch, student,
    method …): the unit of an interval pooled over cells is then the seed pair, whose cells share their noise."""
    if pairs.empty:
        return pd.DataFrame(columns=[*by, *SEED_PAIR, value])
    return pairs.groupby(by + SEED_PAIR, sort=False)[value].mean().reset_index()


def _signed(value: float, digits: int = 2) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if round(value, digits) != 0 else f"{0:.{digits}f}"


def signed_interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``+mean ± half-width`` of a symmetric interval, or the signed mean alone where there is none (n = 1)."""
    if pd.isna(low) or pd.isna(high):
        return _signed(mean, digits)
    return f"{_signed(mean, digits)} ± {(high - low) / 2:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    """``mean ± std``, or the mean alone where the std is unknown (one run)."""
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def best_label(table: pd.DataFrame) -> str:
    """The best-epoch column's name, saying which split chose the epoch where it was not the test split."""
    chosen = sorted(set("/".join(table["best_chosen_on"]).split("/")))
    return "student acc, best epoch (%)" if chosen == ["test"] else \
        f"student acc, best epoch, chosen on {' or '.join(chosen)} (%)"


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
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
        **({"Δ vs standard, last epoch (pp)": list(map(signed_interval, table["delta_last_mean"],
                                                        table["delta_last_low"], table["delta_last_high"])),
            "Δ vs standard, best epoch (pp)": table["delta_best_mean"].map(_signed)} if has_delta else {}),
        "n": table["n"],
    })


NOTE = ("± is the sample standard deviation (ddof 1); a value without ± comes from a single run. "
        "Teacher accuracy: mean ± std over teacher seeds. Student accuracy: mean ± std over seeds (n runs). "
        "*last epoch* is the test accuracy after the final epoch; *best epoch* is the test accuracy at the epoch "
        "chosen on the validation split (on the test split where the study has none: optimistic, as many KD "
        "papers report). Δ vs standard: this recipe's student accuracy minus the standard teacher's on the same "
        "teacher, checkpoint, method and student, paired by (teacher seed, student seed), in percentage points "
        "(+: the recipe's teacher taught better); its ± is the half-width of the 95 % paired t-interval "
        "(none with one pair). The vanilla student (trained alone) has no Δ: it has no teacher.")
PSTAR_NOTE = (" Teacher TV to p*: mean total variation between the teacher's softmax and the true label "
              "distribution p*(x) on the training set (lower is closer).")


def table_note(table: pd.DataFrame) -> str:
    return NOTE + (PSTAR_NOTE if table["teacher_tv_pstar"].notna().any() else "")


def markdown(table: pd.DataFrame, title: str, partial: bool) -> str:
    note = table_note(table)
    head = f"# {title}\n\n" + ("**PARTIAL: some runs are missing.**\n\n" if partial else "")
    return head + shown_table(table).to_markdown(index=False, disable_numparse=True) + "\n\n" + note + "\n"


def latex(shown: pd.DataFrame, caption: str, label: str) -> str:
    """A LaTeX tabular (booktabs) of an already formatted table, special characters escaped."""
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(caption=caption, label=label, hrules=True, position_float="centering")


DELTA_COLUMNS = ["teacher", "teacher_epoch", "method", "student", "recipe", "recipe_last_mean", "recipe_best_mean"]


def delta_table(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One row per non-standard KD row with a paired standard counterpart: the paired differences (mean, 95 %
    interval, pairs, verdict) and the sign of the mean last-epoch difference."""
    deltas = paired_deltas(df)
    if deltas.empty:
        return pd.DataFrame(columns=[*DELTA_COLUMNS, *deltas.columns[len(GROUP):], "n"])
    means = table[GROUP + ["student_last_mean", "student_best_mean", "n"]].rename(
        columns={"student_last_mean": "recipe_last_mean", "student_best_mean": "recipe_best_mean"})
    out = deltas[deltas["delta_last_n"] > 0].merge(means, on=GROUP, how="left")
    out.insert(out.columns.get_loc("delta_last_verdict") + 1, "sign_last",
               out["delta_last_mean"].map(lambda v: "+" if v > 0 else ("-" if v < 0 else "0")))
    rest = [c for c in out.columns if c not in DELTA_COLUMNS and c != "n"]
    return out[[*DELTA_COLUMNS, *rest, "n"]].reset_index(drop=True)


def delta_markdown(delta: pd.DataFrame, title: str) -> str:
    if delta.empty:
        return f"# {title}\n\nNo recipe to compare: the study has no `{STANDARD}` recipe or no other recipe.\n"
    return f"# {title}\n\n" + delta_shown(delta).to_markdown(index=False, disable_numparse=True) + (
        "\n\nRecipe minus standard teacher, same teacher architecture, checkpoint, method and student, paired by "
        "(teacher seed, student seed): student accuracy in percentage points at the last epoch and at the best "
        "epoch; teacher accuracy and TV to p* paired by teacher seed. ± is the half-width of the 95 % paired "
        "t-interval over the n pairs (none with n = 1). Verdict: *better* / *worse* when the interval excludes 0 "
        "(for TV to p*, lower is better), *inconclusive* when it contains 0.\n")


def delta_shown(delta: pd.DataFrame) -> pd.DataFrame:
    has_pstar = delta["delta_teacher_tv_pstar_mean"].notna().any()

    def ci(prefix: str, digits: int = 2) -> list[str]:
        return list(map(lambda m, lo, hi: signed_interval(m, lo, hi, digits), delta[f"{prefix}_mean"],
                        delta[f"{prefix}_low"], delta[f"{prefix}_high"]))

    return pd.DataFrame({
        "teacher": delta["teacher"], "ckpt epoch": delta["teacher_epoch"], "method": delta["method"],
        "student": delta["student"], "recipe": delta["recipe"],
        "Δ student, last epoch (pp)": ci("delta_last"), "pairs": delta["delta_last_n"],
        "verdict": delta["delta_last_verdict"],
        "Δ student, best epoch (pp)": ci("delta_best"),
        "Δ teacher acc (pp)": ci("delta_teacher_acc"),
        **({"Δ teacher TV to p*": ci("delta_teacher_tv_pstar", 4)} if has_pstar else {}),
        "teacher pairs": delta["delta_teacher_acc_n"],
    })


def at_last_checkpoint(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at each recipe's own last distilled checkpoint (an imported teacher's epoch 240 must not hide
    the trained recipes' epoch 15)."""
    return frame[frame["teacher_epoch"] == frame.groupby("recipe")["teacher_epoch"].transform("max")]


def headline(table: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Per recipe, averages over its KD students at the last distilled checkpoint (the numbers DVC tracks as
    metrics), and the student Δ vs standard there with its 95 % interval over seed pairs (each pair's Δ
    averaged over teacher archs, methods and students)."""
    last = at_last_checkpoint(table[table["method"] != VANILLA])
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
        out.setdefault(str(recipe), {})["student_delta_vs_standard"] = {
            "mean": _json_number(mean), "low": _json_number(low), "high": _json_number(high), "n": n}
    return out


def _json_number(value: float, digits: int = 4) -> float | None:
    """Rounded, or None for NaN (JSON has no NaN; DVC would not parse it)."""
    return None if pd.isna(value) else round(float(value), digits)


def _interval_band(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of ``values`` (NaN bounds with one value)."""
    mean, low, high, _ = stats.paired_interval(values)
    return mean, low, high


def figure(df: pd.DataFrame, path: Path, bayes_test_acc: float | None = None) -> None:
    """Paper Fig. 1 shape: per (teacher arch, student, method), teacher and student test accuracy per teacher
    checkpoint, one colour per recipe, 95 % t-interval bands (teacher: over teacher seeds; student: over runs);
    the vanilla student as a horizontal line with its band (over student seeds), the Bayes accuracy dotted."""
    plt = _plt()
    kd = df[df["method"] != VANILLA]
    if kd.empty:
        placeholder_figure(path, "no KD student in this study")
        return
    panels = list(kd.groupby(["teacher", "student", "method"], sort=False))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, ((teacher, student, method), part) in zip(axes.flat, panels):
        for i, (recipe, runs) in enumerate(part.groupby("recipe", sort=False)):
            color = f"C{i}"
            teachers = runs.drop_duplicates(["teacher_epoch", "teacher_seed"])
            for frame, value, style, who in ((teachers, "teacher_acc", "--o", "teacher"),
                                             (runs, "student_last_acc", "-s", "student")):
                band = pd.DataFrame([(e, *_interval_band(g[value])) for e, g in frame.groupby("teacher_epoch")],
                                    columns=["epoch", "mean", "low", "high"])
                ax.plot(band["epoch"], band["mean"], style, color=color, label=f"{who} ({recipe})")
                ax.fill_between(band["epoch"], band["low"], band["high"], color=color, alpha=0.15)
        vanilla = df[(df["method"] == VANILLA) & (df["teacher"] == teacher) & (df["student"] == student)]
        if not vanilla.empty:
            # one value per student seed: the vanilla run of every job with that seed is the same training
            mean, low, high = _interval_band(vanilla.groupby("seed")["student_last_acc"].mean())
            ax.axhline(mean, color="grey", linewidth=1.2, label="vanilla student")
            if pd.notna(low):
                ax.axhspan(low, high, color="grey", alpha=0.15)
        if bayes_test_acc is not None:
            ax.axhline(bayes_test_acc, color="black", linestyle=":", linewidth=1, label="Bayes accuracy (test)")
        ax.set_title(f"{teacher} → {student}, {method}", fontsize=9)
        ax.set_xlabel("teacher checkpoint epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Teacher vs. student test accuracy per teacher checkpoint (student: last epoch); "
                 "bands: 95 % t-interval over seeds", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


# ---- Fig. 2 shape: the ablation -------------------------------------------------------------------------

ABLATED = {  # which recipe keys one ablation axis varies, and whether its values are numbers
    "lambda_lr": ({"lambda_lr"}, True),
    "lambda_cr": ({"lambda_cr"}, True),
    "cr_schedule": ({"cr_schedule", "cr_start_epoch"}, False),
    "lipschitz_bound": ({"lipschitz_bound"}, False),
}
DEFAULT_RECIPE = "soteacher"


def ablation_points(recipes: dict[str, dict], default: str = DEFAULT_RECIPE) -> list[dict]:
    """Recipes that differ from the default recipe in exactly one hyper-parameter (read from their config,
    not their names): one entry per (parameter, value, recipe), the default itself included on every axis
    that has at least one variant. Empty when the study has no ablation recipes."""
    if default not in recipes:
        return []
    base = recipes[default]
    points = []
    for name, recipe in recipes.items():
        if name in (default, STANDARD):
            continue
        changed = {k for k in set(base) | set(recipe) if base.get(k) != recipe.get(k)}
        for param, (keys, _) in ABLATED.items():
            if param in changed and changed <= keys:
                points.append({"parameter": param, "value": _ablation_value(recipe, param), "recipe": name,
                               "is_default": False})
                break
    for param in dict.fromkeys(p["parameter"] for p in points):
        points.append({"parameter": param, "value": _ablation_value(base, param), "recipe": default,
                       "is_default": True})
    return points


def _ablation_value(recipe: dict, param: str):
    value = recipe.get(param)
    if param == "cr_schedule" and value == "step":
        return f"step@{recipe.get('cr_start_epoch')}"
    return value


def ablation_table(table: pd.DataFrame, recipes: dict[str, dict]) -> pd.DataFrame:
    """Student accuracy per ablation point at the last distilled checkpoint, with the standard reference."""
    columns = ["parameter", "value", "recipe", "is_default", "teacher", "student", "method", "teacher_epoch",
               "teacher_acc", "student_last_mean", "student_last_std", "student_best_mean", "n",
               "standard_student_last_mean"]
    points = pd.DataFrame(ablation_points(recipes))
    if points.empty:
        return pd.DataFrame(columns=columns)
    last = at_last_checkpoint(table)
    out = points.merge(last, on="recipe")
    ref = last[last["recipe"] == STANDARD][["teacher", "student", "method", "student_last_mean"]]
    out = out.merge(ref.rename(columns={"student_last_mean": "standard_student_last_mean"}),
                    on=["teacher", "student", "method"], how="left")
    out["_order"] = out["value"].map(lambda v: (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v)))
    out = out.sort_values(["parameter", "teacher", "student", "method", "_order"]).drop(columns="_order")
    return out[columns].reset_index(drop=True)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    _plt().close(fig)


def placeholder_figure(path: Path, text: str) -> None:
    """A small figure that says why there is nothing to plot (the rule's outputs are fixed at parse time)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    _save(fig, path)


def ablation_figure(ablation: pd.DataFrame, path: Path) -> None:
    """Paper Fig. 2 shape: student accuracy vs each ablated hyper-parameter; default starred, standard dashed."""
    if ablation.empty:
        placeholder_figure(path, "no ablation recipes in this study")
        return
    plt = _plt()
    params = list(dict.fromkeys(ablation["parameter"]))
    fig, axes = plt.subplots(1, len(params), figsize=(4.4 * len(params), 3.6), squeeze=False)
    for ax, param in zip(axes.flat, params):
        part = ablation[ablation["parameter"] == param]
        for i, (key, line) in enumerate(part.groupby(["teacher", "student", "method"], sort=False)):
            color = f"C{i}"
            x = list(range(len(line)))
            ax.errorbar(x, line["student_last_mean"], yerr=line["student_last_std"], color=color, marker="o",
                        capsize=3, label=f"{key[0]}→{key[1]}, {key[2]}")
            default = line["is_default"].to_numpy().nonzero()[0]
            ax.plot([x[j] for j in default], line["student_last_mean"].iloc[default], "*", color=color,
                    markersize=16, markeredgecolor="black", label="default (soteacher)" if i == 0 else None)
            ref = line["standard_student_last_mean"].iloc[0]
            if pd.notna(ref):
                ax.axhline(ref, color=color, linestyle="--", alpha=0.8, label="standard teacher" if i == 0 else None)
            ax.set_xticks(x, [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in line["value"]])
        ax.set_xlabel({"lambda_lr": "λ_LR", "lambda_cr": "λ_CR", "cr_schedule": "λ_CR schedule",
                       "lipschitz_bound": "Lipschitz bound"}.get(param, param))
        ax.set_ylabel("student test accuracy (%), last epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Ablation: one hyper-parameter varied around the SoTeacher default (mean ± std over seeds)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


BARS_COLUMNS = ["versus", "recipe", "method", "delta_last_mean", "delta_last_low", "delta_last_high", "delta_last_n",
                "delta_last_verdict", "delta_best_mean", "cells", "positive"]


def delta_by_method(std_pairs: pd.DataFrame, van_pairs: pd.DataFrame) -> pd.DataFrame:
    """Per recipe × method at the last distilled checkpoint, the student's last-epoch Δ ``versus`` the standard
    recipe, and ``versus`` the vanilla student: mean and 95 % interval over seed pairs (a pair's Δ averaged over
    its teacher → student cells), n pairs, verdict; best-epoch mean; cells and how many have a positive mean."""
    parts = []
    for versus, pairs in (("standard", std_pairs), (VANILLA, van_pairs)):
        last = at_last_checkpoint(pairs)
        if last.empty:
            continue
        by = ["recipe", "method"]
        out = stats.intervals(seed_pair_means(last, by, "d_student_last_acc"), by, "d_student_last_acc", "delta_last")
        best = seed_pair_means(last, by, "d_student_best_acc").groupby(by, sort=False)["d_student_best_acc"].mean()
        cells = last.groupby(by + ["teacher", "student"], sort=False)["d_student_last_acc"].mean().groupby(by)
        out = out.merge(best.rename("delta_best_mean").reset_index(), on=by).merge(
            cells.size().rename("cells").reset_index(), on=by).merge(
            cells.apply(lambda v: int((v > 0).sum())).rename("positive").reset_index(), on=by)
        out.insert(0, "versus", versus)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)[BARS_COLUMNS] if parts else pd.DataFrame(columns=BARS_COLUMNS)


def delta_figure(bars: pd.DataFrame, path: Path) -> None:
    """Two panels: recipe − standard and KD − vanilla per method, bars with 95 % paired-interval error bars."""
    if bars.empty:
        placeholder_figure(path, f"no recipe to compare with '{STANDARD}' and no vanilla student in this study")
        return
    plt = _plt()
    panels = [(v, bars[bars["versus"] == v]) for v in ("standard", VANILLA) if (bars["versus"] == v).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.9), squeeze=False)
    for ax, (versus, part) in zip(axes.flat, panels):
        methods = list(dict.fromkeys(part["method"]))
        recipes = list(dict.fromkeys(part["recipe"]))
        width = 0.8 / len(recipes)
        for i, recipe in enumerate(recipes):
            rows = part[part["recipe"] == recipe].set_index("method").reindex(methods)
            x = [j + (i - (len(recipes) - 1) / 2) * width for j in range(len(methods))]
            half = ((rows["delta_last_high"] - rows["delta_last_low"]) / 2).fillna(0.0)  # n = 1: no bar
            ax.bar(x, rows["delta_last_mean"], width, yerr=half, capsize=2, color=f"C{i}", label=recipe)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylabel(f"Δ student accuracy vs {versus} (pp)")
        what = "recipe − standard teacher" if versus == "standard" else "KD student − vanilla student"
        ax.set_title(f"{what}: student last-epoch accuracy per method at the last checkpoint\n"
                     "error bars: 95 % paired t-interval over seed pairs (none: n = 1)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=max(1, len(recipes) // 6))
    fig.tight_layout()
    _save(fig, path)


OUTPUTS = {  # what `aggregate` writes; workflow/rules/report.smk declares the same files as outputs
    "csv": "summary.csv", "markdown": "summary.md", "json": "summary.json", "latex": "summary.tex",
    "curves": "checkpoint_curves.csv", "delta_csv": "delta.csv", "delta_markdown": "delta.md",
    "delta_latex": "delta.tex", "delta_by_method": "delta_by_method.csv", "ablation_csv": "ablation.csv",
    "teachers_csv": "teachers.csv", "teachers_markdown": "teachers.md",
    "students_paired_csv": "students_paired.csv", "students_paired_markdown": "students_paired.md",
    "early_stopping_csv": "early_stopping.csv", "early_stopping_markdown": "early_stopping.md",
}
FIGURES = {"figure": "teacher_vs_student.png", "delta_figure": "delta_by_method.png",
           "ablation_figure": "ablation.png", "tv_figure": "tv_curves.png",
           "teacher_curves_figure": "teacher_curves.png"}


def output_paths() -> dict[str, Path]:
    return {**{k: Path(layout.TABLES_DIR) / v for k, v in OUTPUTS.items()},
            **{k: Path(layout.FIGURES_DIR) / v for k, v in FIGURES.items()}}


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False))


def run(config: dict, allow_partial: bool = False) -> dict[str, Path]:
    from soteacher.student_side import theory  # here: theory builds on this module's helpers

    df, missing = collect(config, allow_partial)
    if df.empty:
        raise IncompleteResultsError("no student results found at all; run the pipeline first")
    table = summarise(df)
    std_pairs, van_pairs = standard_pairs(df), vanilla_pairs(df)
    ref = theory.reference(config)
    checkpoints, history = theory.teacher_frames(config)
    outputs = output_paths()
    title = f"Study '{config['name']}'"
    _write_csv(outputs["csv"], table)
    write_text(outputs["markdown"], markdown(table, title, partial=bool(missing)))
    write_text(outputs["latex"], latex(shown_table(table), f"{title}. {table_note(table)}", f"tab:{config['name']}"))
    curves = table[["teacher", "recipe", "teacher_epoch", "method", "student", "teacher_acc", "student_last_mean"]]
    _write_csv(outputs["curves"], curves)
    bayes_test = ref.get("bayes_acc", {}).get("test")
    figure(df, outputs["figure"], None if bayes_test is None else float(bayes_test))

    delta = delta_table(df, table)
    _write_csv(outputs["delta_csv"], delta)
    write_text(outputs["delta_markdown"], delta_markdown(delta, f"{title}: recipe − standard"))
    write_text(outputs["delta_latex"], latex(delta_shown(delta), f"{title}: recipe minus standard teacher "
                                              "(student accuracy in percentage points, paired by seed, ± half-width "
                                              "of the 95 % paired t-interval).", f"tab:{config['name']}_delta")
                if not delta.empty else "% no recipe to compare with the standard teacher\n")
    bars = delta_by_method(std_pairs, van_pairs)
    _write_csv(outputs["delta_by_method"], bars)
    delta_figure(bars, outputs["delta_figure"])

    ablation = ablation_table(table, config["teacher"]["recipes"])
    _write_csv(outputs["ablation_csv"], ablation)
    ablation_figure(ablation, outputs["ablation_figure"])

    teachers = theory.teachers_table(checkpoints, history, ref)
    _write_csv(outputs["teachers_csv"], teachers)
    write_text(outputs["teachers_markdown"], theory.teachers_markdown(teachers, f"{title}: teachers and p*", ref))
    students = theory.students_paired_table(df, std_pairs, van_pairs)
    _write_csv(outputs["students_paired_csv"], students)
    write_text(outputs["students_paired_markdown"],
               theory.students_paired_markdown(students, f"{title}: students, paired by seed"))
    early, why_empty = theory.early_stopping_table(df, checkpoints)
    _write_csv(outputs["early_stopping_csv"], early)
    write_text(outputs["early_stopping_markdown"], theory.early_stopping_markdown(
        early, f"{title}: recipe vs an early-stopped standard teacher", why_empty))
    theory.tv_curves_figure(history, checkpoints, ref, outputs["tv_figure"])
    theory.teacher_curves_figure(history, outputs["teacher_curves_figure"])

    # distinct runs: the vanilla run stands under every teacher checkpoint but was trained once
    summary = {"study": config["name"], "partial": bool(missing), "runs": int(df["run"].nunique()),
               "recipes": headline(table, std_pairs)}
    for recipe, tv in theory.teacher_headline(teachers).items():
        summary["recipes"].setdefault(recipe, {})["teacher_tv_pstar_train"] = tv
    write_json(outputs["json"], summary)
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return outputs
