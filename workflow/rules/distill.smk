# Distillation of every teacher checkpoint, and the teacherless students (vanilla, oracle; rule train_vanilla). What a
# job groups, its outputs, log and spec: soteacher.study.student_jobs.


rule distill:
    input:
        unpack(lambda w: student_jobs.teacher_inputs(dict(w))),
    output:
        student_jobs.job_outputs(config),
    log:
        student_jobs.job_log(config),
    benchmark:
        student_jobs.job_benchmark(config)
    wildcard_constraints:
        method=student_jobs.method_pattern(config),
    threads: compute_resources.job_threads(config["compute"])
    resources:
        **compute_resources.job_resources(config["compute"]),
    params:
        spec=lambda w: to_json(student_jobs.job_spec(config, dict(w))),
    shell:
        "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} "
        "--experiment {EXPERIMENT:q} > {log:q} 2>&1"


rule train_vanilla:
    input:
        data=layout.with_wildcards(layout.DATA_DIR),
    output:
        student_jobs.job_outputs(config, vanilla=True),
    log:
        student_jobs.job_log(config, vanilla=True),
    benchmark:
        student_jobs.job_benchmark(config, vanilla=True)
    wildcard_constraints:
        method=student_jobs.method_pattern(config, vanilla=True),
    threads: compute_resources.job_threads(config["compute"])
    resources:
        **compute_resources.job_resources(config["compute"]),
    params:
        spec=lambda w: to_json(student_jobs.job_spec(config, dict(w), vanilla=True)),
    shell:
        "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} "
        "--experiment {EXPERIMENT:q} > {log:q} 2>&1"
