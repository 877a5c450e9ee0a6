# Config validation and the wildcards. Paths, the job grid, grouping and specs come from the package
# (soteacher.core.layout, soteacher.study.teacher_jobs, soteacher.study.student_jobs); a training job's threads and
# resources (one GPU, or N ranks) from soteacher.study.resources.
import json
import sys

from soteacher.core import layout
from soteacher.core.specs import to_json
from soteacher.study import config as soteacher_config
from soteacher.study import resources as compute_resources
from soteacher.study import student_jobs
from soteacher.study import teacher_jobs

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
EXPERIMENT = config["name"]  # the study: its MLflow experiment and its results/studies/<name>/ folder
# threads per rank (one-device jobs: per job); jobs without torch work get one
JOB_THREADS = config["compute"]["threads"]


wildcard_constraints:
    **layout.WILDCARDS,
