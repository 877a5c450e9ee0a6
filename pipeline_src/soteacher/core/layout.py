"""Where a study's files live: the results tree, the logs and the job-state folders. Every writer, reader and rule
takes its paths from here, so each path is spelled once.

Patterns are ``str.format`` templates over the job fields of ``WILDCARDS`` (the same names are Snakemake's
wildcards). Trained things are named by what they are (``soteacher.study.identity`` gives every hash), so that
studies sharing a workspace share them and never collide: a *data set* folder by its data id (``data``:
``<dataset>-<hash>``), a *teacher* by (teacher_arch, recipe, teacher_seed) and its identity (``teacher_hash``), a
*checkpoint* adds its epoch, a *student* adds method, its identity (``student_hash``), its architecture and seed.
The vanilla student (no teacher) sits directly under its data set. A study's tables and figures are its own:
``results/studies/<name>/``.
"""

from __future__ import annotations

from pathlib import Path

from soteacher.core.digest import HASH_LENGTH

REPO_ROOT = Path(__file__).resolve().parents[3]  # the checkout: the workflow, its schema and configs
WILDCARDS = {
    "data": f"[a-z0-9_]+-[0-9a-f]{{{HASH_LENGTH}}}",
    "teacher_arch": "[A-Za-z0-9_]+",
    "student": "[A-Za-z0-9_]+",
    "recipe": "[a-z0-9_]+",
    "method": "[a-z0-9_]+",
    "teacher_seed": "[0-9]+",
    "seed": "[0-9]+",
    "epoch": "[0-9]+",
    "teacher_hash": f"[0-9a-f]{{{HASH_LENGTH}}}",
    "student_hash": f"[0-9a-f]{{{HASH_LENGTH}}}",
}

TEACHER_FIELDS = ("data", "teacher_arch", "recipe", "teacher_seed", "teacher_hash")  # what names a teacher

RESULTS = "results"
LOGS = "logs"
DATA_DIR = RESULTS + "/data/{data}"
TEACHER = "{data}/{teacher_arch}-{recipe}-s{teacher_seed}-{teacher_hash}"  # a teacher's name in results/ and logs/
TEACHER_DIR = RESULTS + "/teachers/" + TEACHER
CHECKPOINT_FILE = "ep{epoch}.pt"
TEACHER_CHECKPOINT = TEACHER_DIR + "/" + CHECKPOINT_FILE
METRICS_FILE = "metrics.json"  # a teacher's or student's numbers
TEACHER_METRICS = TEACHER_DIR + "/" + METRICS_FILE
# the students of one teacher checkpoint, and the vanilla students (no teacher), directly under their data set
CHECKPOINT_STUDENTS = TEACHER + "/ep{epoch}"
VANILLA_STUDENTS = "{data}"
STUDENT = "{method}-{student_hash}/{student}/seed{seed}"
STUDENTS_DIR = RESULTS + "/students/"
STUDENT_DIR = STUDENTS_DIR + CHECKPOINT_STUDENTS + "/" + STUDENT
VANILLA_DIR = STUDENTS_DIR + VANILLA_STUDENTS + "/" + STUDENT
STUDENT_MODEL_FILE = "model.pt"
RESUME_DIR = ".resume"  # a job's training state, beside its outputs until the job succeeds
RESUME_STATE = "state.pt"  # the loop's full state, in the job's resume folder
INIT_STATE = "init{epochs}.pt"  # a distill job's init stage (staged methods), likewise
STUDY_DIR = RESULTS + "/studies/{study}"  # a study's own outputs (the config's name)
TABLES_DIR = STUDY_DIR + "/tables"
STUDY_METRICS = STUDY_DIR + "/summary.json"  # a copy of tables/summary.json, for DVC's metrics (see study_links)
STUDY_PLAN = STUDY_DIR + "/plan.txt"  # what `python -m soteacher plan` printed last
STUDY_REPORT = STUDY_DIR + "/report.html"  # Snakemake's HTML report (`make report`)
FIGURES_DIR = STUDY_DIR + "/figures"
AGGREGATE_LOG = LOGS + "/studies/{study}/aggregate.log"
STUDY_PARTS = ("teachers", "students")  # a study's links to the shared results it used (its DVC outputs)


def data_dir(data: str) -> Path:
    """``data``: a data id (``study.identity.data_id``)."""
    return Path(DATA_DIR.format(data=data))


def teacher_dir(teacher: dict) -> Path:
    """``teacher``: the job fields data, teacher_arch, recipe, teacher_seed, teacher_hash (others are ignored)."""
    return Path(TEACHER_DIR.format(**teacher))


def teacher_checkpoint(teacher: dict, epoch: int) -> Path:
    return Path(TEACHER_CHECKPOINT.format(**{**teacher, "epoch": epoch}))


def teacher_metrics(teacher: dict) -> Path:
    return Path(TEACHER_METRICS.format(**teacher))


def student_dir(student: dict) -> Path:
    """A student's folder: under its teacher checkpoint, or, with no ``teacher_arch`` (the vanilla student), under its
    data set."""
    return Path((STUDENT_DIR if "teacher_arch" in student else VANILLA_DIR).format(**student))


def student_group_dir(job: dict) -> Path:
    """The folder of all students a distill job trains: their teacher checkpoint's, or their data set's."""
    return Path(STUDENTS_DIR + (CHECKPOINT_STUDENTS if "teacher_arch" in job else VANILLA_STUDENTS).format(**job))


def tables_dir(study: str) -> Path:
    return Path(TABLES_DIR.format(study=study))


def figures_dir(study: str) -> Path:
    return Path(FIGURES_DIR.format(study=study))


def study_metrics(study: str) -> Path:
    return Path(STUDY_METRICS.format(study=study))


def study_plan(study: str) -> Path:
    return Path(STUDY_PLAN.format(study=study))


def study_report(study: str) -> Path:
    return Path(STUDY_REPORT.format(study=study))


def study_part_dir(study: str, part: str) -> Path:
    """Where a study keeps links to the shared results it used: ``teachers`` (data sets, teachers) or ``students``."""
    return Path(STUDY_DIR.format(study=study)) / part


def study_part_of(path: str) -> str | None:
    """Which of a study's parts links a shared result (a path under ``results/``): ``teachers`` for data sets and
    teachers, ``students`` for students; None for anything else."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != RESULTS or parts[1] not in ("data", "teachers", "students"):
        return None
    return "students" if parts[1] == "students" else "teachers"


def link_of(study: str, path: str) -> str:
    """Where study ``study`` links a shared result (a path under ``results/``, as a string): the same path under its
    ``teachers`` (data sets, teachers) or ``students`` folder; other paths are returned as they are."""
    part = study_part_of(path)
    if part is None:
        return path
    return (study_part_dir(study, part) / Path(*Path(path).parts[1:])).as_posix()


def aggregate_log(study: str) -> str:
    return AGGREGATE_LOG.format(study=study)


def log(kind: str, name: str) -> str:
    """A job's log file: ``logs/<kind>/<name>.log`` (``name`` may hold wildcards)."""
    return f"{LOGS}/{kind}/{name}.log"


def benchmark(kind: str, name: str) -> str:
    """A job's Snakemake benchmark file (wall time, memory): ``logs/benchmarks/<kind>/<name>.tsv``."""
    return f"{LOGS}/benchmarks/{kind}/{name}.tsv"


def with_wildcards(pattern: str, **fixed) -> str:
    """Fill some fields of a pattern, leaving the others as ``{wildcards}`` for Snakemake."""
    return pattern.format(**{key: fixed.get(key, "{" + key + "}") for key in WILDCARDS})
