# One job per teacher checkpoint × student × seed, training all methods in lockstep on one teacher
# forward (distill.group_methods: true), or one job per method (false).


def _teacher_inputs(w):
    return {
        "checkpoint": jobs.TEACHER_CKPT.format(dataset=w.dataset, tarch=w.tarch, recipe=w.recipe, tseed=w.tseed,
                                               epoch=w.epoch),
        "metrics": jobs.TEACHER_METRICS.format(dataset=w.dataset, tarch=w.tarch, recipe=w.recipe, tseed=w.tseed),
        "data": jobs.DATA_DIR.format(dataset=w.dataset),
    }


def _distill_spec(w, methods):
    spec = jobs.distill_spec(config, w.tarch, w.recipe, w.tseed, w.epoch, w.student, w.seed, methods)
    return json.dumps(spec, sort_keys=True)


if config["distill"]["group_methods"]:

    rule distill:
        input:
            unpack(_teacher_inputs),
        output:
            [_with_wildcards(jobs.STUDENT_METRICS, method=m) for m in config["distill"]["methods"]],
            [_with_wildcards(jobs.STUDENT_MODEL, method=m) for m in config["distill"]["methods"]],
        params:
            spec=lambda w: _distill_spec(w, list(config["distill"]["methods"])),
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            "logs/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{student}-s{seed}.log",
        benchmark:
            "logs/benchmarks/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{student}-s{seed}.tsv"
        shell:
            "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"

else:

    rule distill:
        input:
            unpack(_teacher_inputs),
        output:
            metrics=jobs.STUDENT_METRICS,
            model=jobs.STUDENT_MODEL,
        params:
            spec=lambda w: _distill_spec(w, [w.method]),
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            "logs/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{method}/{student}-s{seed}.log",
        benchmark:
            "logs/benchmarks/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/{method}/{student}-s{seed}.tsv"
        shell:
            "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"
