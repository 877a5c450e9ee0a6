"""The premise test: does a teacher's closeness to p* predict its student better than the teacher's own accuracy?

Over every distilled checkpoint (teacher arch × recipe × teacher seed × teacher epoch, pooled over teacher and
student archs: one point per checkpoint and student arch), with the student's last-epoch test accuracy for the
primary method (config ``report.primary.method``) averaged over student seeds:

    difference = Spearman(−teacher train-split TV to p*, student acc) − Spearman(teacher test acc, student acc)

> 0: closeness to p* ranks the students better than teacher accuracy does. Its 95 % interval is a percentile
cluster bootstrap that resamples whole teacher seeds (all checkpoints of all recipes with that teacher seed move
together: they share the seed's data order and initialisation, so they are not independent points), with a fixed
RNG seed. The TV is the teacher history's ``tv_pstar_train`` at the checkpoint's epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from soteacher.report.collect import distilled
from soteacher.report.declarations import Study

BOOTSTRAPS = 2000
RNG_SEED = 0  # fixed: the same results give the same interval
CONFIDENCE = 0.95
POINT = ["teacher", "recipe", "teacher_seed", "teacher_epoch", "student"]
COLUMNS = ["method", "rho_tv", "rho_acc", "difference", "low", "high", "n_checkpoints", "n_teacher_seeds", "B",
           "note"]


class Premise(NamedTuple):
    table: pd.DataFrame  # one row: COLUMNS (its note: why the interval, or everything, is NaN; else empty)
    points: pd.DataFrame  # one row per checkpoint and student arch: POINT, tv_pstar_train, teacher_acc, student_acc
    note: str  # why the interval (or everything) is NaN; "" when it is not


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation (scipy; ties get average ranks); NaN where either side is constant."""
    if x.nunique() < 2 or y.nunique() < 2:
        return math.nan
    return float(sps.spearmanr(x, y).statistic)


def premise_difference(points: pd.DataFrame) -> float:
    """Spearman(−TV to p* on train, student acc) − Spearman(teacher acc, student acc)."""
    return spearman(-points["tv_pstar_train"], points["student_acc"]) - spearman(points["teacher_acc"],
                                                                                 points["student_acc"])


def cluster_bootstrap(frame: pd.DataFrame, cluster: str, statistic: Callable[[pd.DataFrame], float],
                      bootstraps: int = BOOTSTRAPS, seed: int = RNG_SEED) -> np.ndarray:
    """``statistic`` of ``bootstraps`` resamples of ``frame``, each drawing as many clusters as it has, with
    replacement, and taking every row of each drawn cluster (a cluster drawn twice counts twice)."""
    rng = np.random.default_rng(seed)
    parts = [part for _, part in frame.groupby(cluster, sort=True)]
    draws = rng.integers(0, len(parts), size=(bootstraps, len(parts)))
    return np.array([statistic(pd.concat([parts[i] for i in draw], ignore_index=True)) for draw in draws])


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of the bootstrap ``values``; resamples whose statistic is undefined (NaN: a resample
    of one repeated cluster can have constant ranks) are left out."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return float(low), float(high)


def premise_points(students: pd.DataFrame, history: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per distilled checkpoint and student arch of ``method``: the teacher's train-split TV to p* at that
    epoch (its history), its test accuracy, and the student's last-epoch accuracy averaged over student seeds."""
    runs = distilled(students[students["method"] == method])
    columns = [*POINT, "tv_pstar_train", "teacher_acc", "student_acc"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    points = runs.groupby(POINT, sort=False).agg(teacher_acc=("teacher_acc", "first"),
                                                 student_acc=("student_last_acc", "mean")).reset_index()
    tv = history.rename(columns={"epoch": "teacher_epoch"})[
        ["teacher", "recipe", "teacher_seed", "teacher_epoch", "tv_pstar_train"]]
    return points.merge(tv, on=POINT[:4], how="left")[columns]


def premise_table(students: pd.DataFrame, history: pd.DataFrame, primary: dict,
                  bootstraps: int = BOOTSTRAPS) -> Premise:
    """The premise difference over the primary method's distilled checkpoints, with its cluster-bootstrap interval
    over teacher seeds; NaN and a note where the study cannot make it."""
    method = primary["method"]
    points = premise_points(students, history, method)
    known = points[points["tv_pstar_train"].notna() & points["teacher_acc"].notna()]
    seeds = known["teacher_seed"].nunique()
    rho_tv = spearman(-known["tv_pstar_train"], known["student_acc"]) if len(known) else math.nan
    rho_acc = spearman(known["teacher_acc"], known["student_acc"]) if len(known) else math.nan
    low = high = math.nan
    if points.empty:
        note = f"No {method} students in this study: no premise test."
    elif known.empty:
        note = "No teacher TV to p* on train (real data, or histories that predate it): no premise test."
    elif seeds < 2 or len(known) < 3:
        note = (f"{len(known)} checkpoint(s) from {seeds} teacher seed(s): a rank correlation needs at least 3 "
                "checkpoints and the interval at least 2 teacher seeds to resample; no interval.")
    else:
        low, high = percentile_interval(cluster_bootstrap(known, "teacher_seed", premise_difference, bootstraps))
        note = "" if not math.isnan(rho_tv - rho_acc) else \
            "A Spearman correlation is undefined (constant teacher TV, teacher accuracy or student accuracy)."
    row = [method, rho_tv, rho_acc, rho_tv - rho_acc, low, high, len(known), seeds, bootstraps, note]
    return Premise(pd.DataFrame([row], columns=COLUMNS), points, note)


def premise_csv(result: Premise, study: Study) -> str:
    return result.table.to_csv(index=False)


def premise_figure(result: Premise, study: Study) -> bytes:
    """Student accuracy against the teacher's train-split TV to p*, one colour per recipe, the difference and its
    interval in the title; a placeholder that says why where there is nothing to plot."""
    from soteacher.report.figures import placeholder_figure, plt, png

    known = result.points[result.points["tv_pstar_train"].notna()]
    if len(known) < 3:
        return placeholder_figure(result.note or "too few checkpoints for the premise test")
    row = result.table.iloc[0]
    fig, ax = plt().subplots(figsize=(6.0, 4.2))
    for i, (recipe, part) in enumerate(known.groupby("recipe", sort=False)):
        ax.scatter(part["tv_pstar_train"], part["student_acc"], color=f"C{i}", label=recipe, s=24)
    ax.set_xlabel("teacher TV to p* (train split, at the distilled checkpoint)")
    ax.set_ylabel(f"{row['method']} student test acc, last epoch (%)")
    interval = "no interval" if pd.isna(row["low"]) else \
        f"95 % cluster bootstrap [{row['low']:+.2f}, {row['high']:+.2f}]"
    ax.set_title(f"ρ(−TV, student) − ρ(teacher acc, student) = {row['difference']:+.2f} ({interval})\n"
                 f"{int(row['n_checkpoints'])} checkpoints, {int(row['n_teacher_seeds'])} teacher seeds; pooled "
                 "over teacher and student archs", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
