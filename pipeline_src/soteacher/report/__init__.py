"""Collect every teacher and student metrics file of a study into tables (CSV, Markdown, LaTeX, JSON) and figures.

Each table and figure is declared once in ``registry`` (``declarations`` says what a declaration is): what it
reads, its computation, its files and their report captions. ``collect`` reads the results into frames;
``compare`` summarises them and pairs runs by seed (every Δ comes with a 95 % paired t-interval over teacher
seeds, ``stats``); ``teachers``, ``students`` and ``early_stopping`` build the tables against p* and the paired and
early-stopping comparisons, ``premise`` the premise test, ``headline`` the numbers of summary.json, ``ablation`` the
Fig. 2 points; ``tables`` formats tables, ``figures`` draws. ``run`` computes and writes them all.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def run(config: dict, allow_partial: bool = False) -> dict[str, Path]:
    """Write every declared file from the study's results; returns their paths by key (``File.key``)."""
    # imported here, not at the top: Snakemake imports .registry (and so this package) when it parses the rules
    from soteacher.core.io import atomic_write
    from soteacher.report import collect, registry
    from soteacher.report.declarations import STUDY_INPUTS, File, check, function

    check(registry.TABLES, registry.FIGURES)
    study = collect.study(config, allow_partial)
    values = {name: getattr(study, name) for name in STUDY_INPUTS}
    written: dict[str, Path] = {}

    def write(file: File, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        written[file.key] = file.path(study.name)
        atomic_write(written[file.key], lambda f: f.write(data))

    for table in registry.TABLES:
        value = values[table.name] = function(table.compute)(*(values[i] for i in table.inputs))
        for file in table.files:
            write(file, function(file.render)(value, study))
    for figure in registry.FIGURES:
        write(figure.file, function(figure.file.render)(*(values[i] for i in figure.inputs)))
    log.info("wrote %s", ", ".join(map(str, written.values())))
    return written
