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
from soteacher.io import read_json, write_json

log = logging.getLogger(__name__)

GROUP = ["teacher", "recipe", "teacher_epoch", "method", "student"]


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
    agg = df.groupby(GROUP, sort=False).agg(
        teacher_acc=("teacher_acc", "mean"),
        teacher_tv_pstar=("teacher_tv_pstar", "mean"),
        student_last_mean=("student_last_acc", "mean"),
        student_last_std=("student_last_acc", "std"),
        student_best_mean=("student_best_acc", "mean"),
        student_best_std=("student_best_acc", "std"),
        n=("student_last_acc", "size"),
    ).reset_index()
    return agg.fillna({"student_last_std": 0.0, "student_best_std": 0.0})


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def markdown(table: pd.DataFrame, title: str, partial: bool) -> str:
    has_pstar = table["teacher_tv_pstar"].notna().any()
    shown = pd.DataFrame({
        "teacher": table["teacher"], "recipe": table["recipe"], "ckpt epoch": table["teacher_epoch"],
        "method": table["method"], "student": table["student"],
        "teacher acc (%)": table["teacher_acc"].map(lambda v: f"{v:.2f}"),
        **({"teacher TV to p*": table["teacher_tv_pstar"].map(lambda v: f"{v:.4f}")} if has_pstar else {}),
        "student acc, last epoch (%)": list(map(_pm, table["student_last_mean"], table["student_last_std"])),
        "student acc, best epoch (%)": list(map(_pm, table["student_best_mean"], table["student_best_std"])),
        "n": table["n"],
    })
    note = ("Student accuracy: mean ± std over seeds (n runs). *last epoch* is the test accuracy after "
            "the final epoch; *best epoch* is the maximum over epochs (optimistic, as many KD papers report).")
    if has_pstar:
        note += " Teacher TV to p*: mean total variation between the teacher's softmax and the true label " \
                "distribution p*(x) on the training set (lower is closer)."
    head = f"# {title}\n\n" + ("**PARTIAL: some runs are missing.**\n\n" if partial else "")
    return head + shown.to_markdown(index=False) + "\n\n" + note + "\n"


def headline(table: pd.DataFrame) -> dict:
    """Per recipe, averages at the last distilled checkpoint: the numbers DVC tracks as metrics."""
    # each recipe's own last checkpoint (an imported teacher's epoch 240 must not hide trained recipes' epoch 15)
    last = table[table["teacher_epoch"] == table.groupby("recipe")["teacher_epoch"].transform("max")]
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


def run(config: dict, allow_partial: bool = False) -> dict[str, Path]:
    df, missing = collect(config, allow_partial)
    if df.empty:
        raise IncompleteResultsError("no student results found at all; run the pipeline first")
    table = summarise(df)
    tables, figures = Path(jobs.TABLES_DIR), Path(jobs.FIGURES_DIR)
    tables.mkdir(parents=True, exist_ok=True)
    outputs = {
        "csv": tables / "summary.csv",
        "markdown": tables / "summary.md",
        "json": tables / "summary.json",
        "curves": tables / "checkpoint_curves.csv",
        "figure": figures / "teacher_vs_student.png",
    }
    tmp = outputs["csv"].with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(outputs["csv"])
    tmp = outputs["markdown"].with_suffix(".md.tmp")
    tmp.write_text(markdown(table, f"Study '{config['name']}'", partial=bool(missing)))
    tmp.replace(outputs["markdown"])
    summary = {"study": config["name"], "partial": bool(missing), "runs": len(df), "recipes": headline(table)}
    write_json(outputs["json"], summary)
    curves = table[["teacher", "recipe", "teacher_epoch", "method", "student", "teacher_acc", "student_last_mean"]]
    tmp = outputs["curves"].with_suffix(".csv.tmp")
    curves.to_csv(tmp, index=False)
    tmp.replace(outputs["curves"])
    figure(table, outputs["figure"])
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return outputs
