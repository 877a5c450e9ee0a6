"""Collect every teacher and student metrics file of a study into tables (CSV, Markdown, LaTeX, JSON) and figures.

``collect`` reads the results into frames; ``compare`` summarises them and pairs runs by seed (every Δ comes with
a 95 % paired t-interval, ``soteacher.report.stats``); ``tables`` formats the summary and delta tables,
``theory`` builds the theory-study tables, ``ablation`` the Fig. 2 points, ``figures`` draws every figure;
``outputs`` declares every file written (the Snakemake rule reads it). ``run`` does it all.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def run(config: dict, allow_partial: bool = False) -> dict[str, Path]:
    """Write every output of ``outputs.outputs(study)`` from the study's results; returns their paths by key."""
    # imported here, not at the top: Snakemake imports .outputs (and so this package) when it parses the rules
    from soteacher.core.io import write_json, write_text
    from soteacher.report import ablation, collect, compare, figures, tables, theory
    from soteacher.report.outputs import output_paths

    df, missing = collect.collect(config, allow_partial)
    if df.empty:
        raise collect.IncompleteResultsError("no student results found at all; run the pipeline first")
    table = compare.summarise(df)
    std_pairs, van_pairs = compare.standard_pairs(df), compare.vanilla_pairs(df)
    ref = collect.reference(config)
    checkpoints, history = collect.teacher_frames(config)
    outputs = output_paths(config["name"])
    name = config["name"]
    title = f"Study '{name}'"
    tables.write_csv(outputs["csv"], table)
    write_text(outputs["markdown"], tables.markdown(table, title, partial=bool(missing)))
    write_text(outputs["latex"], tables.latex(tables.shown_table(table), f"{title}. {tables.table_note(table)}",
                                              f"tab:{name}"))
    curves = table[["teacher", "recipe", "teacher_epoch", "method", "student", "teacher_acc", "student_last_mean"]]
    tables.write_csv(outputs["curves"], curves)
    bayes_test = ref.get("bayes_acc", {}).get("test")
    figures.teacher_vs_student_figure(df, outputs["figure"], None if bayes_test is None else float(bayes_test))

    delta = compare.delta_table(df, table)
    tables.write_csv(outputs["delta_csv"], delta)
    write_text(outputs["delta_markdown"], tables.delta_markdown(delta, f"{title}: recipe − standard"))
    write_text(outputs["delta_latex"], tables.delta_latex(delta, title, name))
    bars = compare.delta_by_method(std_pairs, van_pairs)
    tables.write_csv(outputs["delta_by_method"], bars)
    figures.delta_figure(bars, outputs["delta_figure"])

    points = ablation.ablation_table(table, config["teacher"]["recipes"], config["report"]["ablation_recipe"],
                                     config["report"]["reference_recipe"])
    tables.write_csv(outputs["ablation_csv"], points)
    figures.ablation_figure(points, outputs["ablation_figure"])

    teachers = theory.teachers_table(checkpoints, history, ref)
    tables.write_csv(outputs["teachers_csv"], teachers)
    write_text(outputs["teachers_markdown"], theory.teachers_markdown(teachers, f"{title}: teachers and p*", ref))
    students = theory.students_paired_table(df, std_pairs, van_pairs)
    tables.write_csv(outputs["students_paired_csv"], students)
    write_text(outputs["students_paired_markdown"],
               theory.students_paired_markdown(students, f"{title}: students, paired by seed"))
    early, why_empty = theory.early_stopping_table(df, checkpoints)
    tables.write_csv(outputs["early_stopping_csv"], early)
    write_text(outputs["early_stopping_markdown"], theory.early_stopping_markdown(
        early, f"{title}: recipe vs an early-stopped standard teacher", why_empty))
    figures.tv_curves_figure(history, checkpoints, ref, outputs["tv_figure"])
    figures.teacher_curves_figure(history, outputs["teacher_curves_figure"])

    # distinct runs: the vanilla run stands under every teacher checkpoint but was trained once
    summary = {"study": name, "partial": bool(missing), "runs": int(df["run"].nunique()),
               "recipes": compare.headline(table, std_pairs)}
    for recipe, tv in theory.teacher_headline(teachers).items():
        summary["recipes"].setdefault(recipe, {})["teacher_tv_pstar_train"] = tv
    write_json(outputs["json"], summary)
    log.info("wrote %s", ", ".join(str(p) for p in outputs.values()))
    return outputs
