"""Where a study's files live: the results tree, the logs and the job-state folders. Every writer, reader and rule
takes its paths from here, so each path is spelled once.

Patterns are ``str.format`` templates over the job fields of ``WILDCARDS`` (the same names are Snakemake's
wildcards). A *teacher* is identified by (dataset, teacher_arch, recipe, teacher_seed); a *checkpoint* adds its
epoch; a *student* adds method, student (its architecture) and seed, or, trained alone, has no teacher fields.
"""

from __future__ import annotations

from pathlib import Path

WILDCARDS = {
    "dataset": "[a-z0-9_]+",
    "teacher_arch": "[A-Za-z0-9_]+",
    "student": "[A-Za-z0-9_]+",
    "recipe": "[a-z0-9_]+",
    "method": "[a-z0-9_]+",
    "teacher_seed": "[0-9]+",
    "seed": "[0-9]+",
    "epoch": "[0-9]+",
}

RESULTS = "results"
LOGS = "logs"
DATA_DIR = RESULTS + "/data/{dataset}"
TEACHER = "{dataset}/{teacher_arch}-{recipe}-s{teacher_seed}"  # a teacher's name in results/ and logs/
TEACHER_DIR = RESULTS + "/teachers/" + TEACHER
CHECKPOINT_FILE = "ep{epoch}.pt"
TEACHER_CHECKPOINT = TEACHER_DIR + "/" + CHECKPOINT_FILE
TEACHER_METRICS = TEACHER_DIR + "/metrics.json"
# the students of one teacher checkpoint, and those trained alone (no teacher: one folder per student x seed)
CHECKPOINT_STUDENTS = "{dataset}/{teacher_arch}-{recipe}-s{teacher_seed}/ep{epoch}"
ALONE_STUDENTS = "{dataset}/alone"
STUDENTS_DIR = RESULTS + "/students/"
STUDENT_DIR = STUDENTS_DIR + CHECKPOINT_STUDENTS + "/{method}/{student}/seed{seed}"
ALONE_DIR = STUDENTS_DIR + ALONE_STUDENTS + "/{student}/seed{seed}"
STUDENT_METRICS_FILE = "metrics.json"
STUDENT_MODEL_FILE = "model.pt"
RESUME_DIR = ".resume"  # a job's training state, beside its outputs until the job succeeds
RESUME_STATE = "state.pt"  # the loop's full state, in the job's resume folder
INIT_STATE = "init{epochs}.pt"  # a distill job's init stage (staged methods), likewise
TABLES_DIR = RESULTS + "/tables"
FIGURES_DIR = RESULTS + "/figures"


def data_dir(dataset: str) -> Path:
    return Path(DATA_DIR.format(dataset=dataset))


def teacher_dir(teacher: dict) -> Path:
    """``teacher``: the job fields dataset, teacher_arch, recipe, teacher_seed (others are ignored)."""
    return Path(TEACHER_DIR.format(**teacher))


def teacher_checkpoint(teacher: dict, epoch: int) -> Path:
    return Path(TEACHER_CHECKPOINT.format(**{**teacher, "epoch": epoch}))


def teacher_metrics(teacher: dict) -> Path:
    return Path(TEACHER_METRICS.format(**teacher))


def student_dir(student: dict) -> Path:
    """A student's folder: under its teacher checkpoint, or, with no ``teacher_arch``, under ``alone``."""
    return Path((STUDENT_DIR if "teacher_arch" in student else ALONE_DIR).format(**student))


def student_group_dir(job: dict) -> Path:
    """The folder of all students a distill job trains: their teacher checkpoint's, or the student-alone one."""
    return Path(STUDENTS_DIR + (CHECKPOINT_STUDENTS if "teacher_arch" in job else ALONE_STUDENTS).format(**job))


AGGREGATE_LOG = LOGS + "/aggregate.log"


def log(kind: str, name: str) -> str:
    """A job's log file: ``logs/<kind>/<name>.log`` (``name`` may hold wildcards)."""
    return f"{LOGS}/{kind}/{name}.log"


def benchmark(kind: str, name: str) -> str:
    """A job's Snakemake benchmark file (wall time, memory): ``logs/benchmarks/<kind>/<name>.tsv``."""
    return f"{LOGS}/benchmarks/{kind}/{name}.tsv"


def with_wildcards(pattern: str, **fixed) -> str:
    """Fill some fields of a pattern, leaving the others as ``{wildcards}`` for Snakemake."""
    return pattern.format(**{key: fixed.get(key, "{" + key + "}") for key in WILDCARDS})
