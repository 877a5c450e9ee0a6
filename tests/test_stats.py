"""The paired t-interval and its verdict, against hand computations (t quantiles from a t table)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as sps

from soteacher.report import stats


def test_interval_of_four_differences_by_hand():
    # mean 3; deviations -2, -1, 0, 3: s^2 = 14 / 3; s / sqrt(4) = 1.080123; t_{0.975, 3} = 3.182446 (t table)
    half = 3.182446 * math.sqrt(14 / 3) / 2
    mean, low, high, n = stats.paired_interval([1, 2, 3, 6])
    assert (mean, n) == (3.0, 4)
    assert low == pytest.approx(3 - half, abs=1e-5) and high == pytest.approx(3 + half, abs=1e-5)
    assert low == pytest.approx(-0.437434, abs=1e-5)


def test_other_confidence_and_nan_left_out():
    # t_{0.95, 2} = 2.919986; [2, 4, 6] has s = 2, s / sqrt(3) = 1.154701
    mean, low, high, n = stats.paired_interval([2, float("nan"), 4, 6], confidence=0.90)
    assert (mean, n) == (4.0, 3)
    assert high - mean == pytest.approx(2.919986 * 2 / math.sqrt(3), abs=1e-5)


def test_one_and_no_differences():
    mean, low, high, n = stats.paired_interval([2.5])
    assert mean == 2.5 and n == 1 and math.isnan(low) and math.isnan(high)
    assert stats.verdict(low, high, n) == "n = 1, no interval"
    mean, low, high, n = stats.paired_interval([])
    assert n == 0 and math.isnan(mean)
    assert stats.verdict(low, high, n) == "no pairs"


def test_verdict_at_the_boundary():
    assert stats.verdict(0.0, 2.0, 4) == "inconclusive"  # an endpoint exactly at 0 does not exclude it
    assert stats.verdict(-2.0, 0.0, 4) == "inconclusive"
    assert stats.verdict(1e-12, 2.0, 4) == "better"
    assert stats.verdict(-2.0, -1e-12, 4) == "worse"
    assert stats.verdict(-1.0, 1.0, 4) == "inconclusive"
    # lower is better (TV, KL): an interval above 0 means the recipe is further from p*
    assert stats.verdict(1e-12, 2.0, 4, higher_is_better=False) == "worse"
    assert stats.verdict(-2.0, -1e-12, 4, higher_is_better=False) == "better"


def test_pair_and_intervals():
    treated = pd.DataFrame({"cell": ["a", "a", "b"], "seed": [0, 1, 0], "acc": [3.0, 5.0, 1.0]})
    reference = pd.DataFrame({"cell": ["a", "a", "b"], "seed": [0, 1, 1], "acc": [1.0, 2.0, 9.0]})
    pairs = stats.pair(treated, reference, on=["cell", "seed"], values=["acc"])
    assert list(pairs["d_acc"]) == [2.0, 3.0]  # cell b has no seed-0 reference: no pair
    table = stats.intervals(pairs, ["cell"], "d_acc", "delta").set_index("cell")
    half = 12.706205 * math.sqrt(0.5) / math.sqrt(2)  # t_{0.975, 1}
    assert table.loc["a", "delta_mean"] == 2.5 and table.loc["a", "delta_n"] == 2
    assert table.loc["a", "delta_high"] == pytest.approx(2.5 + half, abs=1e-5)
    assert table.loc["a", "delta_verdict"] == "inconclusive"


# 3 teacher seeds × 2 student seeds; paired differences per (teacher seed, student seed). Teacher seed means 4, 3, 1:
# mean 8/3, deviations 4/3, 1/3, -5/3, s^2 = (16 + 1 + 25) / 9 / 2 = 7/3, s / sqrt(3) = sqrt(7/9)
THREE_TEACHERS = pd.DataFrame({"teacher_seed": [0, 0, 1, 1, 2, 2], "seed": [0, 1, 0, 1, 0, 1],
                               "d": [3.0, 5.0, 2.0, 4.0, 0.0, 2.0]})


def test_teacher_seed_interval_by_hand_and_where_it_disagrees_with_six_pairs():
    t2 = sps.t.ppf(0.975, 2)
    mean, low, high, n = stats.teacher_seed_interval(THREE_TEACHERS, "d")
    assert n == 3 and mean == pytest.approx(8 / 3)
    assert low == pytest.approx(8 / 3 - t2 * math.sqrt(7 / 9), abs=1e-12)
    assert high == pytest.approx(8 / 3 + t2 * math.sqrt(7 / 9), abs=1e-12)
    assert stats.verdict(low, high, n) == "inconclusive"  # low = -1.13: three teachers do not settle it
    # the old analysis, the six pairs as if independent: squared deviations from 8/3 sum to 46/3, s^2 = 46/15,
    # half-width t_{0.975, 5} · sqrt(46/90) = 1.84: excludes 0, a verdict the teachers do not support
    old = stats.paired_interval(THREE_TEACHERS["d"])
    assert old[1] == pytest.approx(8 / 3 - sps.t.ppf(0.975, 5) * math.sqrt(46 / 90), abs=1e-12)
    assert old[3] == 6 and stats.verdict(old[1], old[2], old[3]) == "better"


def test_teacher_seed_means_average_student_seeds_within_each_group():
    pairs = THREE_TEACHERS.assign(cell=["a", "a", "a", "b", "b", "b"], d=[1.0, 3.0, 5.0, 7.0, math.nan, 4.0])
    means = stats.teacher_seed_means(pairs, ["cell"], ["d"])
    # cell a: teacher seed 0 -> (1 + 3) / 2, seed 1 -> 5; cell b: seed 1 -> 7, seed 2 -> 4 (the NaN left out)
    assert list(zip(means["cell"], means["teacher_seed"], means["d"])) == [
        ("a", 0, 2.0), ("a", 1, 5.0), ("b", 1, 7.0), ("b", 2, 4.0)]
    table = stats.teacher_seed_intervals(pairs, ["cell"], "d", "delta").set_index("cell")
    assert table.loc["a", "delta_n"] == 2 and table.loc["a", "delta_mean"] == 3.5
    # [2, 5]: s = 3 / sqrt(2), s / sqrt(2) = 1.5, t_{0.975, 1} = 12.706205 (t table)
    assert table.loc["a", "delta_high"] == pytest.approx(3.5 + 12.706205 * 1.5, abs=1e-5)
