import re


rule train_teacher:
    input:
        data=_with_wildcards(jobs.DATA_DIR),
    output:
        checkpoints=[
            _with_wildcards(jobs.TEACHER_CKPT, epoch=e)
            for e in soteacher_config.checkpoint_epochs(config["teacher"])
        ],
        metrics=jobs.TEACHER_METRICS,
    wildcard_constraints:
        # trained recipes only: imported teachers (below) write the same layout
        recipe="|".join(re.escape(r) for r in config["teacher"]["recipes"]) or "(?!)",
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


# teacher.imports: one rule per imported checkpoint (its epoch fixes the output name), writing what
# train_teacher writes, so distill and aggregate take it like a trained teacher.
for _name, _imp in config["teacher"]["imports"].items():
    _dir = jobs.TEACHER_DIR.format(dataset=DATASET, tarch=_imp["arch"], recipe=_name, tseed=_imp["seed"])

    rule:
        name:
            f"import_teacher_{_name}"
        input:
            source=_imp["path"],
            data=jobs.DATA_DIR.format(dataset=DATASET),
        output:
            checkpoint=f"{_dir}/ep{_imp['epoch']}.pt",
            metrics=f"{_dir}/metrics.json",
        params:
            spec=json.dumps(jobs.import_spec(config, _name), sort_keys=True),
        threads: JOB_THREADS
        # one evaluation pass; set here because the rule's name comes from the config, so the SLURM profile's
        # set-resources cannot list it
        resources:
            gpu=1,
            runtime=60,
            mem_mb=16000,
        log:
            f"logs/teachers/{DATASET}/{_imp['arch']}-{_name}-s{_imp['seed']}.log",
        shell:
            "python -m soteacher import-teacher --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"
