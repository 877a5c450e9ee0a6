rule aggregate:
    input:
        STUDENT_OUTPUTS,
        TEACHER_OUTPUTS,
    output:
        csv=report(f"{jobs.TABLES_DIR}/summary.csv", caption="../report/summary.rst", category="Tables"),
        markdown=f"{jobs.TABLES_DIR}/summary.md",
        json=f"{jobs.TABLES_DIR}/summary.json",
        curves=f"{jobs.TABLES_DIR}/checkpoint_curves.csv",
        figure=report(f"{jobs.FIGURES_DIR}/teacher_vs_student.png", caption="../report/fig1.rst",
                      category="Figures"),
        latex=f"{jobs.TABLES_DIR}/summary.tex",
        delta_csv=report(f"{jobs.TABLES_DIR}/delta.csv", caption="../report/delta_table.rst", category="Tables"),
        delta_markdown=f"{jobs.TABLES_DIR}/delta.md",
        delta_latex=f"{jobs.TABLES_DIR}/delta.tex",
        delta_by_method=f"{jobs.TABLES_DIR}/delta_by_method.csv",
        ablation_csv=f"{jobs.TABLES_DIR}/ablation.csv",
        delta_figure=report(f"{jobs.FIGURES_DIR}/delta_by_method.png", caption="../report/delta.rst",
                            category="Figures"),
        ablation_figure=report(f"{jobs.FIGURES_DIR}/ablation.png", caption="../report/fig2.rst",
                               category="Figures"),
    params:
        spec=lambda w: json.dumps({k: v for k, v in config.items() if k != "tracking"}, sort_keys=True),
    log:
        "logs/aggregate.log",
    shell:
        "python -m soteacher aggregate --spec {params.spec:q} > {log:q} 2>&1"
