"""Sizing a study from a pilot (report/sample_size.py): variance components and half-widths by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as sps

from soteacher.report.sample_size import Components, variance_components
from soteacher.report.stats import teacher_seed_interval


def _pilot(values: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"teacher_seed": t, "seed": s, "d": v} for t, vs in values.items()
                         for s, v in enumerate(vs)])


def test_variance_components_by_hand_and_the_pilot_gives_back_its_own_interval():
    pilot = _pilot({1: [1.0, 3.0], 2: [4.0, 6.0], 3: [2.0, 2.0]})
    c = variance_components(pilot, "d")
    # teacher-seed means 2, 5, 2 (grand mean 3); MS_within = (1 + 1 + 1 + 1 + 0 + 0) / (3 · 1) = 4/3;
    # MS_between = 2 · ((−1)² + 2² + (−1)²) / 2 = 6; σ_T² = (6 − 4/3) / 2 = 7/3
    assert (c.teachers, c.students, c.mean) == (3, 2, 3.0)
    assert c.sigma_student == pytest.approx(math.sqrt(4 / 3), rel=1e-12)
    assert c.sigma_teacher == pytest.approx(math.sqrt(7 / 3), rel=1e-12)
    # σ_T² + σ_S²/2 = 3, the sample variance of the seed means: the half-width at (3, 2) is the pilot's own
    mean, low, high, n = teacher_seed_interval(pilot, "d")
    assert n == 3 and c.half_width(3, 2) == pytest.approx((high - low) / 2, rel=1e-12)
    assert c.half_width(3, 2) == pytest.approx(sps.t.ppf(0.975, 2) * 1.0, rel=1e-12)


def test_student_seeds_shrink_only_their_share_and_teachers_needed_is_the_first_to_reach_the_target():
    c = Components(sigma_teacher=1.0, sigma_student=2.0, mean=0.0, teachers=4, students=2)
    # S = 4: per teacher seed 1 + 4/4 = 2; T = 33: t(0.975, 32) · √(2/33) ≈ 2.0369 · 0.2462 ≈ 0.5015 > 0.5
    assert c.half_width(33, 4) > 0.5
    need = c.teachers_needed(students=4, target=0.5)
    assert need == 34 and c.half_width(34, 4) <= 0.5
    # no number of student seeds removes σ_T: with S huge, still ≥ t · σ_T / √T
    assert c.half_width(10, 10**9) >= sps.t.ppf(0.975, 9) * 1.0 / math.sqrt(10) * (1 - 1e-6)
    assert c.half_width(1, 4) == math.inf


def test_sigma_teacher_is_floored_at_zero_when_the_seed_means_vary_less_than_student_noise_predicts():
    c = variance_components(_pilot({1: [0.0, 4.0], 2: [4.0, 0.0]}), "d")  # equal seed means, large within
    assert c.sigma_teacher == 0.0 and c.sigma_student == pytest.approx(math.sqrt(8.0), rel=1e-12)


def test_an_unbalanced_pilot_is_refused_in_words():
    with pytest.raises(ValueError, match="balanced pilot"):
        variance_components(_pilot({1: [1.0, 2.0], 2: [3.0]}), "d")
