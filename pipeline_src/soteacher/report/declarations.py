"""What a table or figure of the report is: a declaration says once what it reads, how it is computed, which
files it writes, and their captions in the Snakemake HTML report. ``registry`` lists them; the aggregate run
(``soteacher.report.run``) and the Snakemake rule ``aggregate`` both read that list.

A function is named ``"module:function"`` and imported only when the aggregate runs: Snakemake imports the
declarations when it parses the rules, and must import neither pandas nor matplotlib.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soteacher.core import layout

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Study:
    """What a declaration may read (its ``inputs`` name these fields): the study's facts and the frames
    ``collect`` reads from its results."""

    config: dict
    name: str
    reference_recipe: str  # the recipe every other recipe is compared with (config report.reference_recipe)
    primary: dict  # the one primary comparison: recipe, method, checkpoint (config report.primary)
    partial: bool  # some student runs are missing (aggregate --allow-partial)
    students: pd.DataFrame  # one row per student run
    checkpoints: pd.DataFrame  # one row per saved teacher checkpoint
    history: pd.DataFrame  # one row per teacher epoch
    data_reference: dict  # the data manifest's Bayes reference ({} for real data)

    @property
    def title(self) -> str:
        return f"Study '{self.name}'"


STUDY_INPUTS = tuple(f.name for f in fields(Study))


@dataclass(frozen=True)
class File:
    """One file a declaration writes: a .png goes to the study's figures folder, anything else to its tables
    folder (``dvc.yaml`` tracks both folders whole, so a new file needs no edit there)."""

    name: str
    render: str  # "module:function": the file's content (str or bytes) from (the table's value, Study), or
    # from a figure's inputs
    caption: str | None = None  # a file of workflow/report/: with one, the file is in the HTML report

    @property
    def key(self) -> str:
        """Its name among rule aggregate's outputs and in ``run``'s result: ``summary.csv`` -> ``summary_csv``."""
        return self.name.replace(".", "_")

    @property
    def category(self) -> str:
        """The report's section, after the file's folder."""
        return "Figures" if self.name.endswith(".png") else "Tables"

    def path(self, study: str) -> Path:
        folder = layout.figures_dir(study) if self.name.endswith(".png") else layout.tables_dir(study)
        return folder / self.name


@dataclass(frozen=True)
class Table:
    """A table: ``compute(*inputs)`` is its value, each file renders that value. ``inputs`` name fields of
    ``Study`` or earlier tables (their values)."""

    name: str
    inputs: tuple[str, ...]
    compute: str  # "module:function" (*inputs) -> the value
    files: tuple[File, ...]


@dataclass(frozen=True)
class Figure:
    """A figure drawn from its inputs (fields of ``Study`` or tables' values): ``file.render(*inputs)`` -> PNG
    bytes. A figure that draws one table's value is a file of that table instead."""

    inputs: tuple[str, ...]
    file: File

    @property
    def files(self) -> tuple[File, ...]:
        return (self.file,)


def function(name: str) -> Callable[..., Any]:
    """The function a declaration names, ``"module:function"``, imported now."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def check(tables: list[Table], figures: list[Figure]) -> None:
    """Fail on declarations that cannot run: an input that is neither a Study field nor an earlier table, a
    name used twice, a file name that is no output name."""
    known = set(STUDY_INPUTS)
    for table in tables:
        unknown = [i for i in table.inputs if i not in known]
        if unknown or table.name in known:
            raise ValueError(f"table {table.name!r}: " + (f"unknown inputs {unknown} (a Study field or an earlier "
                             "table's name)" if unknown else "its name is already a Study field or a table"))
        known.add(table.name)
    for figure in figures:
        if unknown := [i for i in figure.inputs if i not in known]:
            raise ValueError(f"figure {figure.file.name!r}: unknown inputs {unknown}")
    files = [file for declared in [*tables, *figures] for file in declared.files]
    names = [file.name for file in files]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"files declared twice: {twice}")
    if bad := [f.name for f in files if not f.key.isidentifier()]:
        raise ValueError(f"file names that make no output name (letters, digits, _ and dots): {bad}")
