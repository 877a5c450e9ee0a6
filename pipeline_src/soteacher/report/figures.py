"""Every figure the aggregate job draws (PNG, matplotlib's Agg backend): Fig. 1 (teacher vs student per teacher
checkpoint), the paired Δ per method, the ablation (Fig. 2 shape), the teachers' TV to p* and training curves per
epoch; a placeholder saying why where a study has nothing to plot (the rule's outputs are fixed at parse time).
Each returns the PNG's bytes: a figure of a table takes its value and the ``Study``, a figure of its own its
declared inputs."""

from __future__ import annotations

import io
import math

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import TEACHER, VANILLA, distilled, reference_value
from soteacher.report.declarations import Study


def plt():
    """matplotlib.pyplot on the Agg backend (jobs have no display); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, dpi=110, format="png")
    plt().close(fig)
    return out.getvalue()


def placeholder_figure(text: str) -> bytes:
    """A small figure that says why there is nothing to plot."""
    fig, ax = plt().subplots(figsize=(5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return png(fig)


# ---- Fig. 1 shape: teacher and student per checkpoint ---------------------------------------------------------

def _interval_band(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of ``values`` (NaN bounds with one value)."""
    mean, low, high, _ = stats.paired_interval(values)
    return mean, low, high


def teacher_vs_student_figure(df: pd.DataFrame, data_reference: dict) -> bytes:
    """Paper Fig. 1 shape: per (teacher arch, student, method), teacher and student test accuracy per teacher
    checkpoint, one colour per recipe, 95 % t-interval bands (teacher: over teacher seeds; student: over runs);
    the vanilla student as a horizontal line with its band (over student seeds), the Bayes accuracy on test
    (``data_reference``, synthetic data) dotted."""
    kd = distilled(df)
    if kd.empty:
        return placeholder_figure("no KD student in this study")
    bayes_test_acc = reference_value(data_reference, "bayes_acc", "test")
    panels = list(kd.groupby(["teacher", "student", "method"], sort=False))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt().subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
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
        if not math.isnan(bayes_test_acc):
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
    return png(fig)


# ---- the paired differences per method --------------------------------------------------------------------

def delta_figure(bars: pd.DataFrame, study: Study) -> bytes:
    """Two panels: recipe − reference and KD − vanilla per method, bars with 95 % paired-interval error bars."""
    reference = study.reference_recipe
    if bars.empty:
        return placeholder_figure(f"no recipe to compare with '{reference}' and no vanilla student in this study")
    panels = [(v, bars[bars["versus"] == v]) for v in (reference, VANILLA) if (bars["versus"] == v).any()]
    fig, axes = plt().subplots(1, len(panels), figsize=(6.5 * len(panels), 3.9), squeeze=False)
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
        what = f"recipe − {reference} teacher" if versus == reference else "KD student − vanilla student"
        ax.set_title(f"{what}: student last-epoch accuracy per method at the last checkpoint\n"
                     "error bars: 95 % paired t-interval over teacher seeds (none: n = 1)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=max(1, len(recipes) // 6))
    fig.tight_layout()
    return png(fig)


# ---- Fig. 2 shape: the ablation -------------------------------------------------------------------------

def ablation_figure(ablation: pd.DataFrame, study: Study) -> bytes:
    """Paper Fig. 2 shape: student accuracy vs each ablated term parameter; the ablated recipe starred, the reference
    recipe dashed."""
    if ablation.empty:
        return placeholder_figure("no ablation recipes in this study")
    base, reference = study.config["report"]["ablation_recipe"], study.reference_recipe
    params = list(dict.fromkeys(ablation["parameter"]))
    fig, axes = plt().subplots(1, len(params), figsize=(4.4 * len(params), 3.6), squeeze=False)
    for ax, param in zip(axes.flat, params):
        part = ablation[ablation["parameter"] == param]
        for i, (key, line) in enumerate(part.groupby(["teacher", "student", "method"], sort=False)):
            color = f"C{i}"
            x = list(range(len(line)))
            ax.errorbar(x, line["student_last_mean"], yerr=line["student_last_std"], color=color, marker="o",
                        capsize=3, label=f"{key[0]}→{key[1]}, {key[2]}")
            default = line["is_default"].to_numpy().nonzero()[0]
            ax.plot([x[j] for j in default], line["student_last_mean"].iloc[default], "*", color=color,
                    markersize=16, markeredgecolor="black", label=f"{base} (ablated)" if i == 0 else None)
            ref = line[f"{reference}_student_last_mean"].iloc[0]
            if pd.notna(ref):
                ax.axhline(ref, color=color, linestyle="--", alpha=0.8,
                           label=f"{reference} teacher" if i == 0 else None)
            ax.set_xticks(x, [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in line["value"]])
        ax.set_xlabel(param)  # <term>.<parameter>, as in the recipe
        ax.set_ylabel("student test accuracy (%), last epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Ablation: one term parameter of recipe {base} varied (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return png(fig)


# ---- the teachers per epoch --------------------------------------------------------------------------------

def _band(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per epoch: mean, min and max of ``value`` over teacher seeds."""
    return frame.groupby("epoch")[value].agg(["mean", "min", "max"]).reset_index()


def _history_panels(history: pd.DataFrame, panels: list[tuple[str, str]], title: str,
                    checkpoints: pd.DataFrame | None = None, hline: tuple[float, str] | None = None) -> bytes:
    """One panel per (history column, y label): per teacher arch × recipe, the mean over teacher seeds with a
    min–max band; distilled checkpoints marked on the first panel; ``hline`` drawn on the second."""
    fig, axes = plt().subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    lines = list(history.groupby(TEACHER, sort=False))
    for p, (ax, (value, label)) in enumerate(zip(axes.flat, panels)):
        for i, ((teacher, recipe), part) in enumerate(lines):
            band = _band(part[part[value].notna()], value)
            name = recipe if history["teacher"].nunique() == 1 else f"{teacher}, {recipe}"
            ax.plot(band["epoch"], band["mean"], color=f"C{i}", label=name)
            ax.fill_between(band["epoch"], band["min"], band["max"], color=f"C{i}", alpha=0.2)
            if p == 0 and checkpoints is not None:
                marks = band[band["epoch"].isin(checkpoints[(checkpoints["teacher"] == teacher)
                                                            & (checkpoints["recipe"] == recipe)
                                                            & checkpoints["distilled"]]["teacher_epoch"])]
                ax.plot(marks["epoch"], marks["mean"], "o", color=f"C{i}", markeredgecolor="black",
                        label="distilled checkpoint" if i == 0 else None)
        if p == 1 and hline is not None and not math.isnan(hline[0]):
            ax.axhline(hline[0], color="black", linestyle=":", label=hline[1])
        ax.set_xlabel("teacher epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)


def tv_curves_figure(history: pd.DataFrame, checkpoints: pd.DataFrame, data_reference: dict) -> bytes:
    """Training-split TV to p* per teacher epoch, and the clean training accuracy against E[max p*](train)."""
    if history.empty or history["tv_pstar_train"].isna().all():
        return placeholder_figure("no teacher history with TV to p* (needs synthetic data and per-epoch metrics)")
    return _history_panels(history, [("tv_pstar_train", "TV to p* (train split)"),
                                    ("train_eval_acc", "train-eval accuracy (%)")],
                    "Teacher distance to p* and training fit per epoch (mean over teacher seeds; band: min–max)",
                    checkpoints=checkpoints,
                    hline=(reference_value(data_reference, "expected_max_pstar", "train"), "E[max p*] (train)"))


def teacher_curves_figure(history: pd.DataFrame) -> bytes:
    """Paper Fig. 1(a) shape: running training cross-entropy and test accuracy per teacher epoch."""
    if history.empty or history["train_ce"].isna().all():
        return placeholder_figure("no per-epoch teacher history in the metrics files")
    return _history_panels(history, [("train_ce", "training cross-entropy (running, augmented)"),
                                    ("test_acc", "test accuracy (%)")],
                    "Teacher training curves (mean over teacher seeds; band: min–max)")
