"""Every file the aggregate job writes, declared once: its key (the Snakemake output name), its path, and for
those in the Snakemake HTML report, the caption and category. ``workflow/rules/report.smk`` takes rule
``aggregate``'s outputs from ``rule_outputs``; ``dvc.yaml`` tracks their folders (a study's ``layout.TABLES_DIR``
and ``layout.FIGURES_DIR``), so a new output needs no edit there.

Snakemake imports this module when it parses the rules: it imports neither pandas nor matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from soteacher.core import layout


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


# key: (file name, report caption or None); tables go to the study's tables folder, figures (.png) to its figures
FILES = {
    "csv": ("summary.csv", "summary.rst"),
    "markdown": ("summary.md", None),
    "json": ("summary.json", None),
    "latex": ("summary.tex", None),
    "curves": ("checkpoint_curves.csv", None),
    "delta_csv": ("delta.csv", "delta_table.rst"),
    "delta_markdown": ("delta.md", None),
    "delta_latex": ("delta.tex", None),
    "delta_by_method": ("delta_by_method.csv", None),
    "ablation_csv": ("ablation.csv", None),
    "teachers_csv": ("teachers.csv", None),
    "teachers_markdown": ("teachers.md", None),
    "students_paired_csv": ("students_paired.csv", None),
    "students_paired_markdown": ("students_paired.md", None),
    "early_stopping_csv": ("early_stopping.csv", None),
    "early_stopping_markdown": ("early_stopping.md", None),
    "figure": ("teacher_vs_student.png", "fig1.rst"),
    "delta_figure": ("delta_by_method.png", "delta.rst"),
    "ablation_figure": ("ablation.png", "fig2.rst"),
    "tv_figure": ("tv_curves.png", "tv_curves.rst"),
    "teacher_curves_figure": ("teacher_curves.png", "teacher_curves.rst"),
}
FIGURES = [key for key, (name, _) in FILES.items() if name.endswith(".png")]


def outputs(study: str) -> dict[str, Output]:
    """Every output of study ``study`` (the config's name), in its own folder."""
    tables, figures = str(layout.tables_dir(study)), str(layout.figures_dir(study))
    return {key: _output(figures, name, caption, "Figures") if key in FIGURES else
            _output(tables, name, caption, "Tables") for key, (name, caption) in FILES.items()}


def output_paths(study: str) -> dict[str, Path]:
    return {key: Path(out.path) for key, out in outputs(study).items()}


def rule_outputs(report: Callable[..., object], study: str) -> dict[str, object]:
    """Rule aggregate's outputs: each path, wrapped with Snakemake's ``report`` where it has a caption."""
    return {key: report(o.path, caption=o.caption, category=o.category) if o.caption else o.path
            for key, o in outputs(study).items()}
