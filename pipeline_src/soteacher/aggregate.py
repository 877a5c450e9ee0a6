"""Collect every teacher and student metrics file of a study into tables (CSV, Markdown, JSON) and figures.

Student accuracy is reported twice, and labelled: *last* (test accuracy after the final epoch, the
honest number) and *best* (maximum test accuracy over epochs, what many KD papers report). Each is the
mean ± sample standard deviation over seeds (student seeds × teacher seeds), with n.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from soteacher import jobs
from soteacher.io import atomic_write, read_json, write_json, write_text

log = logging.getLogger(__name__)

GROUP = ["teacher", "recipe", "teacher_epoch", "method", "student"]
STANDARD = "standard"  # the reference recipe every other recipe is compared with


class IncompleteResultsError(RuntimeError):
    pass


def collect(config: dict, allow_partial: bool = False) -> tuple[pd.DataFrame, list[str]]:
    rows, missing = [], []
    teacher_cache: dict[str, dict] = {}
    for job in jobs.student_jobs(config):
        path = Path(jobs.STUDENT_METRICS.format(**job))
        tpath = jobs.TEACHER_METRICS.format(**job)
        if not path.is_file():
            missing.append(str(path))
            continue
        if tpath not in teacher_cache:
            teacher_cache[tpath] = read_json(Path(tpath))
        tmetrics = teacher_cache[tpath]["checkpoints"][str(job["epoch"])]
        student = read_json(path)
        rows.append({
            "teacher": job["tarch"], "recipe": job["recipe"], "teacher_seed": job["tseed"],
            "teacher_epoch": job["epoch"], "method": job["method"], "student": job["student"],
            "seed": job["seed"], "teacher_acc": tmetrics["test_acc"],
            "teacher_tv_pstar": tmetrics.get("tv_pstar_train"),
            "student_last_acc": student["last_acc"], "student_best_acc": student["best_acc"],
        })
    if missing and not allow_partial:
        shown = "\n  ".join(missing[:20]) + (f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise IncompleteResultsError(
            f"{len(missing)} of {len(rows) + len(missing)} student results are missing "
            f"(run the pipeline first, or pass --allow-partial):\n  {shown}")
    return pd.DataFrame(rows), missing


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per GROUP. Stds are sample stds (ddof 1), NaN where there is one run: no spread is known."""
    students = df.groupby(GROUP, sort=False).agg(
        student_last_mean=("student_last_acc", "mean"),
        student_last_std=("student_last_acc", "std"),
        student_best_mean=("student_best_acc", "mean"),
        student_best_std=("student_best_acc", "std"),
        n=("student_last_acc", "size"),
    ).reset_index()
    # teacher figures over teacher seeds, each teacher counted once (not once per student run: with runs
    # missing, a per-run mean would weight teachers unequally)
    teachers = df.drop_duplicates(GROUP + ["teacher_seed"]).groupby(GROUP, sort=False).agg(
        teacher_acc=("teacher_acc", "mean"), teacher_tv_pstar=("teacher_tv_pstar", "mean"),
        teacher_acc_std=("teacher_acc", "std"), n_teachers=("teacher_acc", "size")).reset_index()
    agg = students.merge(teachers, on=GROUP, how="left")
    columns = [*GROUP, "teacher_acc", "teacher_tv_pstar", "student_last_mean", "student_last_std",
               "student_best_mean", "student_best_std", "n", "teacher_acc_std", "n_teachers"]
    return add_deltas(agg[columns])


def add_deltas(table: pd.DataFrame) -> pd.DataFrame:
    """Per row, the difference to the ``standard`` recipe on the same teacher/epoch/method/student (NaN for the
    standard rows themselves, and where there is no standard row): student last/best accuracy and teacher
    accuracy (and TV to p*), recipe minus standard, plus the standard error of the student difference."""
    keys = ["teacher", "teacher_epoch", "method", "student"]
    base_cols = ["student_last_mean", "student_last_std", "student_best_mean", "teacher_acc", "teacher_tv_pstar", "n"]
    base = table[table["recipe"] == STANDARD][keys + base_cols].rename(columns={c: f"std_{c}" for c in base_cols})
    merged = table.merge(base, on=keys, how="left")
    other = merged["recipe"] != STANDARD
    out = table.copy()
    out["delta_last"] = (merged["student_last_mean"] - merged["std_student_last_mean"]).where(other)
    out["delta_best"] = (merged["student_best_mean"] - merged["std_student_best_mean"]).where(other)
    out["delta_last_se"] = ((merged["student_last_std"] ** 2 / merged["n"]
                            + merged["std_student_last_std"] ** 2 / merged["std_n"]) ** 0.5).where(other)
    out["delta_teacher_acc"] = (merged["teacher_acc"] - merged["std_teacher_acc"]).where(other)
    out["delta_teacher_tv_pstar"] = (merged["teacher_tv_pstar"] - merged["std_teacher_tv_pstar"]).where(other)
    return out


def _signed(value: float, digits: int = 2) -> str:
    if pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if round(value, digits) != 0 else f"{0:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    """``mean ± std``, or the mean alone where the std is unknown (one run)."""
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
    """The human-readable summary (Markdown and LaTeX): formatted strings, labelled columns."""
    has_pstar = table["teacher_tv_pstar"].notna().any()
    has_delta = table["delta_last"].notna().any()
    return pd.DataFrame({
        "teacher": table["teacher"], "recipe": table["recipe"], "ckpt epoch": table["teacher_epoch"],
        "method": table["method"], "student": table["student"],
        "teacher acc (%)": list(map(_pm, table["teacher_acc"], table["teacher_acc_std"])),
        **({"teacher TV to p*": table["teacher_tv_pstar"].map(lambda v: f"{v:.4f}")} if has_pstar else {}),
        "student acc, last epoch (%)": list(map(_pm, table["student_last_mean"], table["student_last_std"])),
        "student acc, best epoch (%)": list(map(_pm, table["student_best_mean"], table["student_best_std"])),
        **({"Δ vs standard, last epoch (pp)": table["delta_last"].map(_signed),
            "Δ vs standard, best epoch (pp)": table["delta_best"].map(_signed)} if has_delta else {}),
        "n": table["n"],
    })


NOTE = ("± is the sample standard deviation (ddof 1); a value without ± comes from a single run. "
        "Teacher accuracy: mean ± std over teacher seeds. Student accuracy: mean ± std over seeds (n runs). "
        "*last epoch* is the test accuracy after the final epoch; *best epoch* is the maximum over epochs "
        "(optimistic, as many KD papers report). Δ vs standard: this recipe's student accuracy minus the "
        "standard teacher's on the same teacher, checkpoint, method and student, in percentage points "
        "(+: the recipe's teacher taught better).")
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


def delta_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per non-standard recipe row that has a standard counterpart: the differences and their sign."""
    rows = table[table["delta_last"].notna()]
    out = rows[["teacher", "teacher_epoch", "method", "student", "recipe", "student_last_mean", "student_best_mean",
                "delta_last", "delta_last_se", "delta_best", "delta_teacher_acc", "delta_teacher_tv_pstar", "n"]]
    out = out.rename(columns={"student_last_mean": "recipe_last_mean", "student_best_mean": "recipe_best_mean"})
    out.insert(out.columns.get_loc("delta_last") + 1, "sign_last",
               out["delta_last"].map(lambda v: "+" if v > 0 else ("-" if v < 0 else "0")))
    return out.reset_index(drop=True)


def delta_markdown(delta: pd.DataFrame, title: str) -> str:
    if delta.empty:
        return f"# {title}\n\nNo recipe to compare: the study has no `{STANDARD}` recipe or no other recipe.\n"
    return f"# {title}\n\n" + delta_shown(delta).to_markdown(index=False, disable_numparse=True) + (
        "\n\nRecipe minus standard teacher, same teacher architecture, checkpoint, method and student; student "
        "accuracy in percentage points, last epoch (± standard error of the difference) and best epoch.\n")


def delta_shown(delta: pd.DataFrame) -> pd.DataFrame:
    has_pstar = delta["delta_teacher_tv_pstar"].notna().any()
    return pd.DataFrame({
        "teacher": delta["teacher"], "ckpt epoch": delta["teacher_epoch"], "method": delta["method"],
        "student": delta["student"], "recipe": delta["recipe"],
        "Δ student, last epoch (pp)": [_signed(d) if pd.isna(se) else f"{_signed(d)} ± {se:.2f}"
                                       for d, se in zip(delta["delta_last"], delta["delta_last_se"])],
        "Δ student, best epoch (pp)": delta["delta_best"].map(_signed),
        "Δ teacher acc (pp)": delta["delta_teacher_acc"].map(_signed),
        **({"Δ teacher TV to p*": delta["delta_teacher_tv_pstar"].map(lambda v: _signed(v, 4))} if has_pstar else {}),
        "n": delta["n"],
    })


def at_last_checkpoint(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows at each recipe's own last distilled checkpoint (an imported teacher's epoch 240 must not hide
    the trained recipes' epoch 15)."""
    return frame[frame["teacher_epoch"] == frame.groupby("recipe")["teacher_epoch"].transform("max")]


def headline(table: pd.DataFrame) -> dict:
    """Per recipe, averages at the last distilled checkpoint: the numbers DVC tracks as metrics."""
    last = at_last_checkpoint(table)
    out: dict[str, dict] = {}
    for recipe, part in last.groupby("recipe"):
        out[str(recipe)] = {
            "teacher_acc": round(float(part["teacher_acc"].mean()), 4),
            "student_last_acc": round(float(part["student_last_mean"].mean()), 4),
            "student_best_acc": round(float(part["student_best_mean"].mean()), 4),
        }
        if part["teacher_tv_pstar"].notna().any():
            out[str(recipe)]["teacher_tv_pstar"] = round(float(part["teacher_tv_pstar"].mean()), 6)
    return out


def figure(table: pd.DataFrame, path: Path) -> None:
    """Paper Fig. 1 shape: teacher and student accuracy per teacher checkpoint, one line per recipe."""
    plt = _plt()
    panels = list(table.groupby(["teacher", "student", "method"], sort=False))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, ((teacher, student, method), part) in zip(axes.flat, panels):
        for i, (recipe, curve) in enumerate(part.groupby("recipe", sort=False)):
            curve = curve.sort_values("teacher_epoch")
            color = f"C{i}"
            ax.plot(curve["teacher_epoch"], curve["teacher_acc"], "--", color=color, marker="o",
                    label=f"teacher ({recipe})")
            ax.errorbar(curve["teacher_epoch"], curve["student_last_mean"], yerr=curve["student_last_std"],
                        color=color, marker="s", capsize=3, label=f"student ({recipe})")
        ax.set_title(f"{teacher} → {student}, {method}", fontsize=9)
        ax.set_xlabel("teacher checkpoint epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Teacher vs. student accuracy per teacher checkpoint (student: last epoch, mean ± std)", fontsize=10)
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


def delta_by_method(delta: pd.DataFrame) -> pd.DataFrame:
    """Mean Δ (recipe − standard, student last epoch) per recipe × method at the last distilled checkpoint,
    over teacher → student pairs; spread = std over pairs, or with one pair its standard error over seeds."""
    columns = ["recipe", "method", "delta_last_mean", "delta_last_spread", "delta_best_mean", "pairs", "positive"]
    if delta.empty:
        return pd.DataFrame(columns=columns)
    last = at_last_checkpoint(delta)
    out = last.groupby(["recipe", "method"], sort=False).agg(
        delta_last_mean=("delta_last", "mean"), delta_last_spread=("delta_last", "std"),
        delta_best_mean=("delta_best", "mean"), pairs=("delta_last", "size"),
        positive=("delta_last", lambda v: int((v > 0).sum())), se=("delta_last_se", "mean")).reset_index()
    out["delta_last_spread"] = out["delta_last_spread"].where(out["pairs"] > 1, out["se"])
    return out[columns]


def delta_figure(bars: pd.DataFrame, path: Path) -> None:
    if bars.empty:
        placeholder_figure(path, f"no recipe to compare with '{STANDARD}' in this study")
        return
    plt = _plt()
    methods = list(dict.fromkeys(bars["method"]))
    recipes = list(dict.fromkeys(bars["recipe"]))
    width = 0.8 / len(recipes)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.6 * len(methods) * max(1, len(recipes) / 2) + 2), 3.8))
    for i, recipe in enumerate(recipes):
        part = bars[bars["recipe"] == recipe].set_index("method").reindex(methods)
        x = [j + (i - (len(recipes) - 1) / 2) * width for j in range(len(methods))]
        ax.bar(x, part["delta_last_mean"], width, yerr=part["delta_last_spread"], capsize=2, color=f"C{i}",
               label=recipe)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("Δ student accuracy vs standard (pp)")
    ax.set_title("Recipe − standard teacher: student last-epoch accuracy per KD method\n"
                 "mean over teacher→student pairs at the last checkpoint;\n"
                 "error bars: std over pairs (one pair: standard error over seeds)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, len(recipes) // 6))
    fig.tight_layout()
    _save(fig, path)


OUTPUTS = {  # what `aggregate` writes; workflow/rules/report.smk declares the same files as outputs
    "csv": "summary.csv", "markdown": "summary.md", "json": "summary.json", "latex": "summary.tex",
    "curves": "checkpoint_curves.csv", "delta_csv": "delta.csv", "delta_markdown": "delta.md",
    "delta_latex": "delta.tex", "delta_by_method": "delta_by_method.csv", "ablation_csv": "ablation.csv",
}
FIGURES = {"figure": "teacher_vs_student.png", "delta_figure": "delta_by_method.png",
           "ablation_figure": "ablation.png"}


def output_paths() -> dict[str, Path]:
    return {**{k: Path(jobs.TABLES_DIR) / v for k, v in OUTPUTS.items()},
            **{k: Path(jobs.FIGURES_DIR) / v for k, v in FIGURES.items()}}


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False))


def run(config: dict, allow_partial: bool = False) -> dict[str, Path]:
    df, missing = collect(config, allow_partial)
    if df.empty:
        raise IncompleteResultsError("no student results found at all; run the pipeline first")
    table = summarise(df)
    outputs = output_paths()
    title = f"Study '{config['name']}'"
    _write_csv(outputs["csv"], table)
    write_text(outputs["markdown"], markdown(table, title, partial=bool(missing)))
    write_text(outputs["latex"], latex(shown_table(table), f"{title}. {table_note(table)}", f"tab:{config['name']}"))
    summary = {"study": config["name"], "partial": bool(missing), "runs": len(df), "recipes": headline(table)}
    write_json(outputs["json"], summary)
    curves = table[["teacher", "recipe", "teacher_epoch", "method", "student", "teacher_acc", "student_last_mean"]]
    _write_csv(outputs["curves"], curves)
    figure(table, outputs["figure"])

    delta = delta_table(table)
    _write_csv(outputs["delta_csv"], delta)
    write_text(outputs["delta_markdown"], delta_markdown(delta, f"{title}: recipe − standard"))
    write_text(outputs["delta_latex"], latex(delta_shown(delta), f"{title}: recipe minus standard teacher "
                                              "(student accuracy in percentage points).", f"tab:{config['name']}_delta")
                if not delta.empty else "% no recipe to compare with the standard teacher\n")
    bars = delta_by_method(delta)
    _write_csv(outputs["delta_by_method"], bars)
    delta_figure(bars, outputs["delta_figure"])

    ablation = ablation_table(table, config["teacher"]["recipes"])
    _write_csv(outputs["ablation_csv"], ablation)
    ablation_figure(ablation, outputs["ablation_figure"])
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return outputs
