"""What a teacher job receives (the rule hands it over as JSON; ``core.specs`` turns it back into these): every
setting its numbers depend on, and where it writes. Built by ``soteacher.study.teacher_jobs``."""

from __future__ import annotations

from dataclasses import dataclass

from soteacher.core.settings import Compute, Optim


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher to train: ``arch`` with recipe ``recipe`` (its ``terms``), seed ``seed``, ``epochs`` epochs,
    checkpoints saved at ``checkpoint_epochs``, evaluated every ``eval_every`` epochs, the last and every checkpoint
    epoch (``training.loop.evaluated_epochs``)."""

    name: str  # its folder's name: <arch>-<recipe>-s<seed>-<identity>
    dir: str  # results/teachers/<data id>/<name>
    identity: str
    data: dict  # the study's data section
    data_dir: str  # the prepared data set
    compute: Compute
    arch: str
    recipe: str
    terms: dict  # the recipe's terms and their parameters, defaults filled
    seed: int
    epochs: int
    checkpoint_epochs: list[int]
    optim: Optim
    filter_table: dict | None = None  # teacher.filter_table: record Filter-KD's table ({alpha, temperature}); None: off
    eval_every: int = 1  # teacher.eval_every


@dataclass(frozen=True)
class ImportSpec:
    """A published teacher checkpoint (``teacher.imports``) to evaluate and publish like a trained teacher."""

    name: str  # its folder's name: <arch>-<import name>-s<seed>-<identity>
    dir: str
    identity: str
    data: dict
    data_dir: str
    compute: Compute
    arch: str
    recipe: str  # the import's name, which stands where a trained teacher's recipe does
    seed: int
    source: str  # the checkpoint file
    epoch: int
