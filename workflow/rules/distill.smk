import re

# Distillation of every teacher checkpoint. A job trains, in one loop, the students of one teacher checkpoint ×
# student that it groups: all methods (distill.group_methods, sharing the teacher forward) and all seeds
# (distill.group_seeds); the dimensions it does not group are wildcards, one job per value. The student trained
# alone (the vanilla method) needs no teacher: rule train_alone trains it once per student × seed.
_DISTILL = config["distill"]
_METHODS = jobs.distilled_methods(config)
_GROUPED = {dim: values for dim, values, grouped in (("method", _METHODS, _DISTILL["group_methods"]),
                                                     ("seed", _DISTILL["seeds"], _DISTILL["group_seeds"])) if grouped}
_JOB_NAME = ("" if _DISTILL["group_methods"] else "{method}/") + "{student}" + ("" if _DISTILL["group_seeds"] else "-s{seed}")


def _job_outputs(pattern):
    return [_with_wildcards(pattern, **dict(zip(_GROUPED, values))) for values in itertools.product(*_GROUPED.values())]


def _teacher_inputs(w):
    return {
        "checkpoint": jobs.TEACHER_CKPT.format(dataset=w.dataset, tarch=w.tarch, recipe=w.recipe, tseed=w.tseed,
                                               epoch=w.epoch),
        "metrics": jobs.TEACHER_METRICS.format(dataset=w.dataset, tarch=w.tarch, recipe=w.recipe, tseed=w.tseed),
        "data": jobs.DATA_DIR.format(dataset=w.dataset),
    }


def _distill_spec(w):
    methods = _GROUPED.get("method") or [w.method]
    seeds = _GROUPED.get("seed") or [int(w.seed)]
    return json.dumps(jobs.distill_spec(config, w.tarch, w.recipe, w.tseed, w.epoch, w.student, seeds, methods),
                      sort_keys=True)


rule distill:
    wildcard_constraints:
        method="|".join(re.escape(m) for m in _METHODS) or "(?!)",
    input:
        unpack(_teacher_inputs),
    output:
        _job_outputs(jobs.STUDENT_METRICS),
        _job_outputs(jobs.STUDENT_MODEL),
    params:
        spec=_distill_spec,
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        "logs/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/" + _JOB_NAME + ".log",
    benchmark:
        "logs/benchmarks/students/{dataset}/{tarch}-{recipe}-s{tseed}/ep{epoch}/" + _JOB_NAME + ".tsv"
    shell:
        "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"


def _alone_outputs(pattern):
    seeds = _DISTILL["seeds"] if _DISTILL["group_seeds"] else ["{seed}"]
    return [_with_wildcards(pattern, seed=seed) for seed in seeds]


rule train_alone:
    input:
        data=_with_wildcards(jobs.DATA_DIR),
    output:
        _alone_outputs(jobs.ALONE_METRICS),
        _alone_outputs(jobs.ALONE_MODEL),
    params:
        spec=lambda w: json.dumps(jobs.distill_spec(config, None, None, None, None, w.student,
                                                    _DISTILL["seeds"] if _DISTILL["group_seeds"] else [int(w.seed)],
                                                    [jobs.ALONE]), sort_keys=True),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        "logs/students/{dataset}/alone/{student}" + ("" if _DISTILL["group_seeds"] else "-s{seed}") + ".log",
    benchmark:
        "logs/benchmarks/students/{dataset}/alone/{student}" + ("" if _DISTILL["group_seeds"] else "-s{seed}") + ".tsv"
    shell:
        "python -m soteacher distill --spec {params.spec:q} --tracking-uri {TRACKING_URI:q} > {log:q} 2>&1"
