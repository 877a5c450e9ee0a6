"""Every file the aggregate job writes, declared once: its key (the Snakemake output name), its path, and for
those in the Snakemake HTML report, the caption and category. ``workflow/rules/report.smk`` takes rule
``aggregate``'s outputs from ``rule_outputs``; ``dvc.yaml`` tracks their folders, ``layout.TABLES_DIR`` and
``layout.FIGURES_DIR``, so a new output needs no edit there.

Snakemake imports this module when it parses the rules: it imports neither pandas nor matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soteacher.common import layout


@dataclass(frozen=True)
class Output:
    path: str
    caption: str | None = None  # relative to workflow/rules/ (Snakemake reads a rule file's paths from its folder)
    category: str | None = None  # the report's section


def _output(folder: str, name: str, caption: str | None, category: str) -> Output:
    """``caption``: a file of workflow/report/; without one the file is not in the report."""
    if caption is None:
        return Output(f"{folder}/{name}")
    return Output(f"{folder}/{name}", f"../report/{caption}", category)


def _table(name: str, caption: str | None = None) -> Output:
    return _output(layout.TABLES_DIR, name, caption, "Tables")


def _figure(name: str, caption: str | None = None) -> Output:
    return _output(layout.FIGURES_DIR, name, caption, "Figures")


OUTPUTS = {
    "csv": _table("summary.csv", "summary.rst"),
    "markdown": _table("summary.md"),
    "json": _table("summary.json"),
    "latex": _table("summary.tex"),
    "curves": _table("checkpoint_curves.csv"),
    "delta_csv": _table("delta.csv", "delta_table.rst"),
    "delta_markdown": _table("delta.md"),
    "delta_latex": _table("delta.tex"),
    "delta_by_method": _table("delta_by_method.csv"),
    "ablation_csv": _table("ablation.csv"),
    "teachers_csv": _table("teachers.csv"),
    "teachers_markdown": _table("teachers.md"),
    "students_paired_csv": _table("students_paired.csv"),
    "students_paired_markdown": _table("students_paired.md"),
    "early_stopping_csv": _table("early_stopping.csv"),
    "early_stopping_markdown": _table("early_stopping.md"),
    "figure": _figure("teacher_vs_student.png", "fig1.rst"),
    "delta_figure": _figure("delta_by_method.png", "delta.rst"),
    "ablation_figure": _figure("ablation.png", "fig2.rst"),
    "tv_figure": _figure("tv_curves.png", "tv_curves.rst"),
    "teacher_curves_figure": _figure("teacher_curves.png", "teacher_curves.rst"),
}
FIGURES = [key for key, out in OUTPUTS.items() if out.path.startswith(layout.FIGURES_DIR + "/")]


def output_paths() -> dict[str, Path]:
    return {key: Path(out.path) for key, out in OUTPUTS.items()}


def rule_outputs(report: Callable[..., object]) -> dict[str, object]:
    """Rule aggregate's outputs: each path, wrapped with Snakemake's ``report`` where it has a caption."""
    return {key: report(o.path, caption=o.caption, category=o.category) if o.caption else o.path
            for key, o in OUTPUTS.items()}
