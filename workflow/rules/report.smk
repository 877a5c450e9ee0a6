rule aggregate:
    input:
        student_jobs.student_outputs(config),
        teacher_jobs.teacher_outputs(config),
    output:
        csv=report(f"{layout.TABLES_DIR}/summary.csv", caption="../report/summary.rst", category="Tables"),
        markdown=f"{layout.TABLES_DIR}/summary.md",
        json=f"{layout.TABLES_DIR}/summary.json",
        curves=f"{layout.TABLES_DIR}/checkpoint_curves.csv",
        figure=report(f"{layout.FIGURES_DIR}/teacher_vs_student.png", caption="../report/fig1.rst",
                      category="Figures"),
        latex=f"{layout.TABLES_DIR}/summary.tex",
        delta_csv=report(f"{layout.TABLES_DIR}/delta.csv", caption="../report/delta_table.rst", category="Tables"),
        delta_markdown=f"{layout.TABLES_DIR}/delta.md",
        delta_latex=f"{layout.TABLES_DIR}/delta.tex",
        delta_by_method=f"{layout.TABLES_DIR}/delta_by_method.csv",
        ablation_csv=f"{layout.TABLES_DIR}/ablation.csv",
        delta_figure=report(f"{layout.FIGURES_DIR}/delta_by_method.png", caption="../report/delta.rst",
                            category="Figures"),
        ablation_figure=report(f"{layout.FIGURES_DIR}/ablation.png", caption="../report/fig2.rst",
                               category="Figures"),
        teachers_csv=f"{layout.TABLES_DIR}/teachers.csv",
        teachers_markdown=f"{layout.TABLES_DIR}/teachers.md",
        students_paired_csv=f"{layout.TABLES_DIR}/students_paired.csv",
        students_paired_markdown=f"{layout.TABLES_DIR}/students_paired.md",
        early_stopping_csv=f"{layout.TABLES_DIR}/early_stopping.csv",
        early_stopping_markdown=f"{layout.TABLES_DIR}/early_stopping.md",
        tv_figure=report(f"{layout.FIGURES_DIR}/tv_curves.png", caption="../report/tv_curves.rst", category="Figures"),
        teacher_curves_figure=report(f"{layout.FIGURES_DIR}/teacher_curves.png", caption="../report/teacher_curves.rst",
                                     category="Figures"),
    params:
        spec=lambda w: json.dumps({k: v for k, v in config.items() if k != "tracking"}, sort_keys=True),
    log:
        "logs/aggregate.log",
    shell:
        "python -m soteacher aggregate --spec {params.spec:q} > {log:q} 2>&1"
