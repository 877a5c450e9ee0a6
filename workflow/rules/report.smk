# The aggregate job's outputs and their report captions: the package's table and figure declarations.
from soteacher.report import registry as report_registry


rule aggregate:
    input:
        student_jobs.student_outputs(config),
        teacher_jobs.teacher_outputs(config),
    output:
        **report_registry.rule_outputs(report, config["name"]),
    log:
        layout.aggregate_log(config["name"]),
    params:
        spec=lambda w: json.dumps({k: v for k, v in config.items() if k != "tracking"}, sort_keys=True),
    shell:
        "python -m soteacher aggregate --spec {params.spec:q} > {log:q} 2>&1"
