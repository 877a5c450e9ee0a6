"""What a distill job receives (the rule hands it over as JSON; ``core.specs`` turns it back into these): the
students it trains in one loop, their settings, the teacher checkpoint they learn from, and where everything goes.
Built by ``soteacher.study.student_jobs``."""

from __future__ import annotations

from dataclasses import dataclass

from soteacher.core.settings import Compute, Optim


@dataclass(frozen=True)
class TeacherCheckpoint:
    """The teacher checkpoint a distill job's students learn from."""

    name: str  # the teacher's folder name
    arch: str
    recipe: str
    seed: int
    epoch: int
    checkpoint: str  # the ep<epoch>.pt file
    metrics: str  # the teacher's metrics.json


@dataclass(frozen=True)
class StudentRun:
    """One student of a distill job: ``method`` from seed ``seed``, written to ``dir``."""

    method: str
    seed: int
    identity: str
    dir: str


@dataclass(frozen=True)
class DistillSpec:
    """Students of one teacher checkpoint (or vanilla students, ``teacher`` None) and one architecture, trained in
    one loop that computes the teacher's outputs once per batch for all of them."""

    name: str  # the job's name within its folder of students (its log and resume folder)
    resume_dir: str  # its training state until it succeeds
    data: dict
    data_dir: str
    compute: Compute
    student: str  # the students' architecture
    teacher: TeacherCheckpoint | None
    epochs: int
    optim: Optim
    methods: dict[str, dict]  # method -> its parameters, defaults filled
    students: list[StudentRun]  # in training order: seed-major, then method
    eval_every: int = 1  # distill.eval_every: the main phase evaluates every this many epochs and the last

    @property
    def seeds(self) -> list[int]:
        return [s.seed for s in self.students]
