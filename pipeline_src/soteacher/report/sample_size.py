"""How many teacher seeds a study needs: the variance components of a paired comparison measured on a pilot, and
the number of teacher seeds T (with S student seeds each) whose 95 % interval reaches a target half-width.

Model: the paired difference of student seed s under teacher seed t is d_ts = μ + a_t + e_ts, with a_t of variance
σ_T² between teacher seeds and e_ts of variance σ_S² between the student seeds of one teacher seed. The study's
estimate is the mean of the T per-teacher-seed means (``stats``), of variance σ_T²/T + σ_S²/(T·S), so its 95 %
half-width is t_{0.975, T−1} · √((σ_T² + σ_S²/S) / T): student seeds shrink only the second term, teacher seeds
both. From a balanced pilot (T₀ teacher seeds × S₀ student seeds) the one-way analysis of variance gives
σ_S² = MS_within and σ_T² = max(0, (MS_between − MS_within) / S₀); with the floor not reached,
σ_T² + σ_S²/S₀ is the sample variance of the pilot's teacher-seed means, so the formula at (T₀, S₀) gives back
the pilot's own interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from soteacher.report.stats import CONFIDENCE, TEACHER_SEED


@dataclass(frozen=True)
class Components:
    sigma_teacher: float  # σ_T, pp
    sigma_student: float  # σ_S, pp
    mean: float
    teachers: int  # T₀ of the pilot
    students: int  # S₀: student seeds per teacher seed

    def half_width(self, teachers: int, students: int, confidence: float = CONFIDENCE) -> float:
        """The 95 % half-width with ``teachers`` teacher seeds of ``students`` student seeds each."""
        if teachers < 2:
            return math.inf
        var = (self.sigma_teacher**2 + self.sigma_student**2 / students) / teachers
        return float(sps.t.ppf((1 + confidence) / 2, teachers - 1) * math.sqrt(var))

    def teachers_needed(self, students: int, target: float, most: int = 500) -> int | None:
        """The fewest teacher seeds (≥ 2) whose half-width is at most ``target``; None beyond ``most``."""
        return next((t for t in range(2, most + 1) if self.half_width(t, students) <= target), None)


def variance_components(pairs: pd.DataFrame, value: str) -> Components:
    """σ_T and σ_S of ``value`` (one row per teacher seed × student seed, column ``seed`` the student seed) by the
    one-way analysis of variance above. Refuses an unbalanced pilot or one without two seeds of each kind."""
    counts = pairs.groupby(TEACHER_SEED)["seed"].nunique()
    if len(counts) < 2 or counts.min() < 2 or counts.nunique() != 1 or len(pairs) != counts.sum():
        raise ValueError("variance components need a balanced pilot: ≥ 2 teacher seeds, each with the same ≥ 2 "
                         f"student seeds and one row per pair (found student seeds per teacher seed: "
                         f"{counts.to_dict()}, {len(pairs)} rows)")
    teachers, students = len(counts), int(counts.iloc[0])
    groups = pairs.groupby(TEACHER_SEED)[value]
    means = groups.transform("mean")
    ms_within = float(((pairs[value] - means) ** 2).sum()) / (teachers * (students - 1))
    seed_means = groups.mean().to_numpy()
    ms_between = students * float(np.var(seed_means, ddof=1))
    sigma_t2 = max(0.0, (ms_between - ms_within) / students)
    return Components(math.sqrt(sigma_t2), math.sqrt(ms_within), float(seed_means.mean()), teachers, students)


def arithmetic(components: Components, target: float, student_counts: tuple[int, ...] = (1, 2, 3, 4)) -> str:
    """The sizing in words: the pilot's components and, per number of student seeds, the teacher seeds needed."""
    c = components
    lines = [f"pilot: {c.teachers} teacher seeds × {c.students} student seeds, mean difference {c.mean:+.3f} pp",
             f"σ_T = {c.sigma_teacher:.3f} pp (between teacher seeds), σ_S = {c.sigma_student:.3f} pp "
             "(between the student seeds of one teacher seed)",
             f"half-width = t(0.975, T−1) · √((σ_T² + σ_S²/S) / T); target ≤ {target} pp"]
    for s in student_counts:
        need = c.teachers_needed(s, target)
        at = "more than 500" if need is None else f"{need} (half-width {c.half_width(need, s):.3f} pp)"
        lines.append(f"  S = {s}: T = {at}")
    return "\n".join(lines) + "\n"
