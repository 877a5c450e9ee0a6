# soteacher study: data -> teachers (standard / SoTeacher) -> distillation of every saved checkpoint -> tables.
# Thin on purpose: the rules call `python -m soteacher ...`; paths and the job grid live in the package.


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,


rule teachers:
    input:
        teacher_jobs.teacher_outputs(config),
