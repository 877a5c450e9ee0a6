"""The premise test (soteacher.report.premise): Spearman correlations against hand-computed ranks, the cluster
bootstrap on cases whose resamples are known, and the table on tiny hand-made studies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from soteacher.report import premise

PRIMARY = {"recipe": "soteacher", "method": "kd", "checkpoint": "last"}
# five checkpoints: −TV ranks 1..5, student acc ranks 2, 1, 4, 3, 5 (d = −1, 1, −1, 1, 0: Σd² = 4,
# rho = 1 − 6 · 4 / (5 · 24) = 0.8); teacher acc ranks 5..1, the reverse: rho = −0.8
TV = [0.5, 0.4, 0.3, 0.2, 0.1]
STUDENT = [61.0, 60.0, 63.0, 62.0, 64.0]
TEACHER = [75.0, 74.0, 73.0, 72.0, 71.0]


def _points() -> pd.DataFrame:
    return pd.DataFrame({"tv_pstar_train": TV, "student_acc": STUDENT, "teacher_acc": TEACHER})


def test_spearman_and_the_difference_by_hand():
    points = _points()
    assert premise.spearman(-points["tv_pstar_train"], points["student_acc"]) == pytest.approx(0.8, abs=1e-12)
    assert premise.spearman(points["teacher_acc"], points["student_acc"]) == pytest.approx(-0.8, abs=1e-12)
    assert premise.premise_difference(points) == pytest.approx(1.6, abs=1e-12)
    assert math.isnan(premise.spearman(pd.Series([1.0, 1.0, 1.0]), pd.Series([1.0, 2.0, 3.0])))


def test_identical_clusters_collapse_the_interval_to_the_point():
    # each teacher seed has the same five checkpoints: any resample of whole seeds is those points repeated, whose
    # average ranks are an affine map of the originals, so every resample gives 1.6
    frame = pd.concat([_points().assign(teacher_seed=s) for s in range(3)], ignore_index=True)
    values = premise.cluster_bootstrap(frame, "teacher_seed", premise.premise_difference, bootstraps=50)
    assert values == pytest.approx(np.full(50, 1.6), abs=1e-12)
    assert premise.percentile_interval(values) == pytest.approx((1.6, 1.6), abs=1e-12)


def test_resampling_clusters_moves_their_rows_together():
    # two clusters of two rows, values 0 and 1: a cluster resample has 4 rows and mean 0, 1/2 or 1 (probabilities
    # 1/4, 1/2, 1/4); a row resample could also give 1/4 and 3/4
    frame = pd.DataFrame({"teacher_seed": [0, 0, 1, 1], "v": [0.0, 0.0, 1.0, 1.0]})
    sizes = premise.cluster_bootstrap(frame, "teacher_seed", len, bootstraps=200)
    assert set(sizes) == {4}
    means = premise.cluster_bootstrap(frame, "teacher_seed", lambda f: f["v"].mean(), bootstraps=2000)
    assert set(means) == {0.0, 0.5, 1.0}
    # binomial sd of a proportion 1/2 over 2000 draws: √(0.25 / 2000) = 0.011; 5 sd
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=5 * math.sqrt(0.25 / 2000))
    again = premise.cluster_bootstrap(frame, "teacher_seed", lambda f: f["v"].mean(), bootstraps=2000)
    assert (again == means).all()  # the RNG seed is fixed


def _study(teacher_seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Students (two student seeds a checkpoint, ±0.5 around STUDENT) and teacher histories: for each teacher
    seed the five checkpoints of ``_points`` (recipe standard at epochs 1, 2; soteacher at epochs 1, 2, 3)."""
    cells = [("standard", 1), ("standard", 2), ("soteacher", 1), ("soteacher", 2), ("soteacher", 3)]
    students, history = [], []
    for ts in teacher_seeds:
        for (recipe, epoch), tv, acc, tacc in zip(cells, TV, STUDENT, TEACHER):
            history.append({"teacher": "resnet8", "recipe": recipe, "teacher_seed": ts, "epoch": epoch,
                            "tv_pstar_train": tv})
            for seed, shift in ((0, -0.5), (1, 0.5)):
                for method, extra in (("kd", 0.0), ("fitnet", -100.0 * seed)):  # fitnet must not count
                    students.append({"teacher": "resnet8", "recipe": recipe, "teacher_seed": ts,
                                     "teacher_epoch": epoch, "method": method, "student": "resnet8", "seed": seed,
                                     "teacher_acc": tacc, "student_last_acc": acc + shift + extra})
    return pd.DataFrame(students), pd.DataFrame(history)


def test_premise_table_on_a_tiny_study():
    students, history = _study([0, 1])
    result = premise.premise_table(students, history, PRIMARY, bootstraps=100)
    row = result.table.iloc[0]
    # the student seeds average to STUDENT; both teacher seeds alike: the interval is the point
    assert (row["rho_tv"], row["rho_acc"]) == pytest.approx((0.8, -0.8), abs=1e-12)
    assert (row["difference"], row["low"], row["high"]) == pytest.approx((1.6, 1.6, 1.6), abs=1e-12)
    assert (row["n_checkpoints"], row["n_teacher_seeds"], row["B"], row["method"]) == (10, 2, 100, "kd")
    assert result.note == ""
    assert list(result.points["student_acc"][:5]) == STUDENT


def test_one_teacher_seed_or_too_few_checkpoints_give_no_interval():
    students, history = _study([0])
    result = premise.premise_table(students, history, PRIMARY, bootstraps=100)
    row = result.table.iloc[0]
    assert row["difference"] == pytest.approx(1.6) and math.isnan(row["low"]) and math.isnan(row["high"])
    assert "1 teacher seed(s)" in result.note and row["note"] == result.note
    few = students[students["teacher_epoch"] == 1], history
    result = premise.premise_table(*few, PRIMARY, bootstraps=100)
    assert math.isnan(result.table.iloc[0]["low"]) and "2 checkpoint(s)" in result.note
    no_pstar = premise.premise_table(students, history.assign(tv_pstar_train=math.nan), PRIMARY)
    assert math.isnan(no_pstar.table.iloc[0]["difference"]) and "No teacher TV to p*" in no_pstar.note
    assert "No dkd students" in premise.premise_table(students, history, {**PRIMARY, "method": "dkd"}).note
