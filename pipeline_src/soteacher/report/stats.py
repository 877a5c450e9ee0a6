"""Paired differences with the teacher seed as the unit: the mean, a t-interval, and what the interval says.

Every comparison in the study pairs runs that share their seeds (same teacher seed, same student seed), so
the seed-to-seed noise common to both sides cancels. The unit of replication is the independently trained
teacher: the student seeds under one teacher seed share that teacher and are not independent replicates of the
comparison. So the paired differences are first averaged over the student seeds (and any other cells pooled)
within each teacher seed (``teacher_seed_means``), and the interval is the Student-t interval of the mean of
those T per-teacher-seed differences: mean ± t_{(1+c)/2, T-1} · s / √T, with s the sample std (ddof 1) and
n = T teacher seeds.

Why this one method: studies have few teacher seeds and a balanced design (every teacher seed has the same
student seeds), and for a balanced two-level design the t-interval of the seed means is the exact analysis, the
same interval as the fixed effect of a mixed model with a random teacher-seed effect (statsmodels is no
dependency). Teacher-only comparisons (teacher accuracy, TV to p*) already have one value per teacher seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

CONFIDENCE = 0.95
NO_INTERVAL = "n = 1, no interval"
NO_PAIRS = "no pairs"
TEACHER_SEED = "teacher_seed"  # the unit of replication


def paired_interval(diffs: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the paired differences; NaN values (a run without that metric) are left out.
    With one difference there is no spread, so low/high are NaN; with none, everything but n is NaN."""
    values = np.asarray([float(d) for d in diffs], dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def verdict(low: float, high: float, n: int, higher_is_better: bool = True) -> str:
    """"better"/"worse" when the interval excludes 0 (strictly: an endpoint at exactly 0 does not), else
    "inconclusive"."""
    if n == 0:
        return NO_PAIRS
    if n == 1:
        return NO_INTERVAL
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "inconclusive"


def pair(treated: pd.DataFrame, reference: pd.DataFrame, on: list[str], values: list[str]) -> pd.DataFrame:
    """``treated`` rows joined to the one ``reference`` row with the same ``on`` values (unmatched rows are
    dropped), with ``d_<value>`` = treated − reference for each value."""
    ref = reference[on + values].rename(columns={v: f"{v}_ref" for v in values})
    merged = treated.merge(ref, on=on, how="inner", validate="many_to_one")
    for v in values:
        merged[f"d_{v}"] = merged[v] - merged[f"{v}_ref"]
    return merged


def teacher_seed_means(pairs: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Per ``by`` group and teacher seed, the mean of each of ``values`` over the group's rows of that teacher
    seed (its student seeds, and any cells pooled into the group): one row per unit of replication. NaN values
    are left out of a mean; a teacher seed with none stays NaN (``paired_interval`` then leaves it out)."""
    keys = [*by, TEACHER_SEED]
    if pairs.empty:
        return pd.DataFrame(columns=[*keys, *values])
    return pairs.groupby(keys, sort=False, dropna=False)[values].mean().reset_index()


def teacher_seed_interval(pairs: pd.DataFrame, value: str,
                          confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """(mean, low, high, n teacher seeds) of paired differences ``value`` given per (teacher seed, student seed,
    …) row: averaged within each teacher seed first, then ``paired_interval`` over the teacher seeds."""
    return paired_interval(teacher_seed_means(pairs, [], [value])[value], confidence)


def teacher_seed_intervals(pairs: pd.DataFrame, by: list[str], value: str, prefix: str,
                           higher_is_better: bool = True) -> pd.DataFrame:
    """``intervals`` of the per-teacher-seed means of ``value`` (``teacher_seed_means``): n counts teacher seeds."""
    return intervals(teacher_seed_means(pairs, by, [value]), by, value, prefix, higher_is_better)


def intervals(frame: pd.DataFrame, by: list[str], value: str, prefix: str,
              higher_is_better: bool = True) -> pd.DataFrame:
    """One row per ``by`` group: ``<prefix>_mean/_low/_high/_n/_verdict`` of ``value`` over the group's rows,
    each row one unit (a teacher seed's paired difference, or one teacher's value for a plain mean)."""
    columns = [*by, f"{prefix}_mean", f"{prefix}_low", f"{prefix}_high", f"{prefix}_n", f"{prefix}_verdict"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, part in frame.groupby(by, sort=False, dropna=False):
        mean, low, high, n = paired_interval(part[value])
        rows.append([*(key if isinstance(key, tuple) else (key,)), mean, low, high, n,
                     verdict(low, high, n, higher_is_better)])
    return pd.DataFrame(rows, columns=columns)
