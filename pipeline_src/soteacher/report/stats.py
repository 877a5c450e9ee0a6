"""Paired differences over seeds: the mean, a t-interval, and what the interval says.

Every comparison in the study pairs runs that share their seeds (same teacher seed, same student seed), so
the seed-to-seed noise common to both sides cancels. The interval is the Student-t interval of the mean of
the paired differences: mean ± t_{(1+c)/2, n-1} · s / √n, with s the sample std (ddof 1).
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


def intervals(frame: pd.DataFrame, by: list[str], value: str, prefix: str,
              higher_is_better: bool = True) -> pd.DataFrame:
    """One row per ``by`` group: ``<prefix>_mean/_low/_high/_n/_verdict`` of ``value`` over the group's rows
    (each row one pair, or one seed for a plain mean with its interval)."""
    columns = [*by, f"{prefix}_mean", f"{prefix}_low", f"{prefix}_high", f"{prefix}_n", f"{prefix}_verdict"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, part in frame.groupby(by, sort=False, dropna=False):
        mean, low, high, n = paired_interval(part[value])
        rows.append([*(key if isinstance(key, tuple) else (key,)), mean, low, high, n,
                     verdict(low, high, n, higher_is_better)])
    return pd.DataFrame(rows, columns=columns)
