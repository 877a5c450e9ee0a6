# The aggregate job's outputs and their report captions are declared once, in the package.
from soteacher.report import outputs as aggregate_outputs


rule aggregate:
    input:
        student_jobs.student_outputs(config),
        teacher_jobs.teacher_outputs(config),
    output:
        **aggregate_outputs.rule_outputs(report, config["name"]),
    log:
        layout.aggregate_log(config["name"]),
    params:
        spec=lambda w: json.dumps({k: v for k, v in config.items() if k != "tracking"}, sort_keys=True),
    shell:
        "python -m soteacher aggregate --spec {params.spec:q} > {log:q} 2>&1"
