"""Registry of teacher terms: name -> term class. Adding a term = one file + one line here + its schema block.

The order here is the order the teacher's loss sums its terms in (whatever order a recipe lists them).
"""

from __future__ import annotations

from soteacher.teachers.terms.base import TeacherSetup, TeacherTerm
from soteacher.teachers.terms.ce import CrossEntropy
from soteacher.teachers.terms.consistency import Consistency
from soteacher.teachers.terms.label_smoothing import LabelSmoothing
from soteacher.teachers.terms.lipschitz import Lipschitz

TERMS: dict[str, type[TeacherTerm]] = {
    cls.name: cls for cls in (
        CrossEntropy,
        LabelSmoothing,
        Lipschitz,
        Consistency,
    )
}

__all__ = ["TERMS", "TeacherSetup", "TeacherTerm"]
