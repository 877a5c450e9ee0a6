rule train_teacher:
    input:
        data=layout.with_wildcards(layout.DATA_DIR),
    output:
        **teacher_jobs.train_outputs(config),
    log:
        layout.log("teachers", layout.TEACHER),
    benchmark:
        layout.benchmark("teachers", layout.TEACHER)
    wildcard_constraints:
        recipe=teacher_jobs.trained_recipe_pattern(config),
    threads: compute_resources.job_threads(config["compute"])
    resources:
        **compute_resources.job_resources(config["compute"]),
    params:
        spec=lambda w: to_json(teacher_jobs.train_spec(config, dict(w))),
    shell:
        "python -m soteacher train-teacher --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} "
        "--experiment {EXPERIMENT:q} > {log:q} 2>&1"


# teacher.imports: one rule per imported checkpoint (its epoch fixes the output name), writing what
# train_teacher writes, so distill and aggregate take it like a trained teacher.
for _import in teacher_jobs.import_jobs(config):

    rule:
        name:
            f"import_teacher_{_import['name']}"
        input:
            source=_import["source"],
            data=_import["data"],
        output:
            checkpoint=_import["checkpoint"],
            metrics=_import["metrics"],
        log:
            _import["log"],
        threads: JOB_THREADS
        # one evaluation pass on one device, whatever compute.gpus_per_job says; set here because the rule's name
        # comes from the config, so the SLURM profile's set-resources cannot list it
        resources:
            gpu=1,
            runtime=60,
            mem_mb=16000,
        params:
            spec=to_json(_import["spec"]),
        shell:
            "python -m soteacher import-teacher --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} "
            "--experiment {EXPERIMENT:q} > {log:q} 2>&1"
