# The aggregate job's outputs and their report captions are declared once, in the package.
from soteacher.student_side.aggregate.outputs import OUTPUTS as aggregate_outputs


rule aggregate:
    input:
        student_jobs.student_outputs(config),
        teacher_jobs.teacher_outputs(config),
    output:
        **{key: report(o.path, caption=o.caption, category=o.category) if o.caption else o.path
           for key, o in aggregate_outputs.items()},
    params:
        spec=lambda w: json.dumps({k: v for k, v in config.items() if k != "tracking"}, sort_keys=True),
    log:
        "logs/aggregate.log",
    shell:
        "python -m soteacher aggregate --spec {params.spec:q} > {log:q} 2>&1"
