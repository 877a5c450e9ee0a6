# Config validation, the job grid and input functions. Everything else is in soteacher.common.jobs.
import itertools
import json
import sys

from soteacher.common import config as soteacher_config
from soteacher.common import jobs

# `--configfile STUDY` (make run CONFIG=...) is the whole study: without this Snakemake would merge it key by key
# into config/config.yaml, adding e.g. the default's fitnet to a study that lists only kd
# (same as --replace-workflow-config; --config key=value overrides still apply on top)
if workflow.overwrite_configfiles:
    config = dict(workflow.config_settings.overwrite_config)

try:
    config = soteacher_config.validate(config)
except soteacher_config.ConfigError as err:
    sys.stderr.write(f"\n{err}\n\n")
    raise SystemExit(2)

TRACKING_URI = config["tracking"]["uri"]
DATASET = config["data"]["dataset"]
# threads per job; jobs without torch work get one
JOB_THREADS = config["compute"]["threads"]


wildcard_constraints:
    **jobs.WILDCARD_PATTERNS,


def _expand(pattern, grid):
    return [pattern.format(**job) for job in grid]


def _with_wildcards(pattern, **fixed):
    """Fill some fields of a layout pattern, leaving the others as {wildcards} for Snakemake."""
    return pattern.format(**{key: fixed.get(key, "{" + key + "}") for key in jobs.WILDCARD_PATTERNS})


TEACHER_OUTPUTS = _expand(jobs.TEACHER_METRICS, jobs.teacher_jobs(config))
STUDENT_OUTPUTS = sorted({jobs.student_metrics(job) for job in jobs.student_jobs(config)})
