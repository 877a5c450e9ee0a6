rule train_teacher:
    input:
        data=_with_wildcards(jobs.DATA_DIR),
    output:
        checkpoints=[
            _with_wildcards(jobs.TEACHER_CKPT, epoch=e)
            for e in soteacher_config.checkpoint_epochs(config["teacher"])
        ],
        metrics=jobs.TEACHER_METRICS,
    params:
        spec=lambda w: json.dumps(jobs.teacher_spec(config, w.tarch, w.recipe, w.tseed), sort_keys=True),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        "logs/teachers/{dataset}/{tarch}-{recipe}-s{tseed}.log",
    benchmark:
        "logs/benchmarks/teachers/{dataset}/{tarch}-{recipe}-s{tseed}.tsv"
    shell:
        "python -m soteacher train-teacher --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"
