"""Every table and figure the aggregate job writes, declared once (``declarations``): the aggregate run computes
and writes them in this order, and ``workflow/rules/report.smk`` takes rule ``aggregate``'s outputs from
``rule_outputs``. Adding a table is one declaration here (and its functions).

Snakemake imports this module when it parses the rules: it imports neither pandas nor matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soteacher.report.declarations import Figure, File, Table, check

CSV = "soteacher.report.tables:csv"

TABLES: list[Table] = [
    Table("summary", ("students", "reference_recipe"), "soteacher.report.compare:summarise", (
        File("summary.csv", CSV, caption="summary.rst"),
        File("summary.md", "soteacher.report.tables:summary_markdown"),
        File("summary.tex", "soteacher.report.tables:summary_latex"),
        File("checkpoint_curves.csv", "soteacher.report.tables:checkpoint_curves_csv"))),
    Table("delta", ("students", "summary", "reference_recipe", "primary"), "soteacher.report.compare:delta_table", (
        File("delta.csv", CSV, caption="delta_table.rst"),
        File("delta.md", "soteacher.report.tables:delta_markdown"),
        File("delta.tex", "soteacher.report.tables:delta_latex"))),
    Table("delta_by_method", ("students", "reference_recipe", "primary"), "soteacher.report.compare:delta_by_method", (
        File("delta_by_method.csv", CSV),
        File("delta_by_method.png", "soteacher.report.figures:delta_figure", caption="delta.rst"))),
    Table("ablation", ("summary", "config"), "soteacher.report.registry:ablation_table", (
        File("ablation.csv", CSV),
        File("ablation.png", "soteacher.report.figures:ablation_figure", caption="fig2.rst"))),
    Table("teachers", ("checkpoints", "history", "data_reference", "reference_recipe"),
          "soteacher.report.teachers:teachers_table", (
              File("teachers.csv", CSV),
              File("teachers.md", "soteacher.report.teachers:teachers_markdown"))),
    Table("students_paired", ("students", "reference_recipe"), "soteacher.report.students:students_paired_table", (
        File("students_paired.csv", CSV),
        File("students_paired.md", "soteacher.report.students:students_paired_markdown"))),
    Table("early_stopping", ("students", "checkpoints", "reference_recipe"),
          "soteacher.report.early_stopping:early_stopping_table", (
              File("early_stopping.csv", "soteacher.report.early_stopping:early_stopping_csv"),
              File("early_stopping.md", "soteacher.report.early_stopping:early_stopping_markdown"))),
    Table("premise", ("students", "history", "primary"), "soteacher.report.premise:premise_table", (
        File("premise.csv", "soteacher.report.premise:premise_csv"),
        File("premise.png", "soteacher.report.premise:premise_figure", caption="premise.rst"))),
    Table("headline", ("name", "partial", "students", "summary", "teachers", "reference_recipe", "primary"),
          "soteacher.report.headline:headline", (
              File("summary.json", "soteacher.report.tables:json_text"),)),
]

FIGURES: list[Figure] = [
    Figure(("students", "data_reference"),
           File("teacher_vs_student.png", "soteacher.report.figures:teacher_vs_student_figure", caption="fig1.rst")),
    Figure(("history", "checkpoints", "data_reference"),
           File("tv_curves.png", "soteacher.report.figures:tv_curves_figure", caption="tv_curves.rst")),
    Figure(("history",),
           File("teacher_curves.png", "soteacher.report.figures:teacher_curves_figure", caption="teacher_curves.rst")),
]


def ablation_table(summary, config: dict):
    """The ablation's points (``ablation``) from the study's recipes."""
    from soteacher.report import ablation

    return ablation.ablation_table(summary, config["teacher"]["recipes"], config["report"]["ablation_recipe"],
                                   config["report"]["reference_recipe"])


@dataclass(frozen=True)
class Output:
    path: Path
    caption: str | None  # a file of workflow/report/, or None: not in the HTML report
    category: str  # the report's section


def outputs(study: str) -> dict[str, Output]:
    """Every file the declarations write for study ``study`` (the config's name), by key."""
    check(TABLES, FIGURES)
    return {file.key: Output(file.path(study), file.caption, file.category)
            for declared in [*TABLES, *FIGURES] for file in declared.files}


def rule_outputs(report: Callable[..., object], study: str) -> dict[str, object]:
    """Rule aggregate's outputs: each path, wrapped with Snakemake's ``report`` where it has a caption (a path
    relative to the rule file's folder, as Snakemake reads it)."""
    return {key: report(str(o.path), caption=f"../report/{o.caption}", category=o.category) if o.caption
            else str(o.path) for key, o in outputs(study).items()}
