"""Where a study's files live: the results tree, the logs and the job-state folders. Every writer, reader and rule
takes its paths from here, so each path is spelled once.

Patterns are ``str.format`` templates over the job fields of ``WILDCARDS`` (the same names are Snakemake's
wildcards). Trained things are named by what they are, so that studies sharing a workspace share them and never
collide: a *data set* folder by the data spec's hash (``data``: ``<dataset>-<hash>``), a *teacher* by
(teacher_arch, recipe, teacher_seed) and the hash of everything else that determines its weights
(``teacher_hash``: recipe values, optimiser, epochs, data, compute), a *checkpoint* adds its epoch, a *student* adds
method, the hash of its method settings, optimiser, epochs and compute (``student_hash``), its architecture and
seed; a student trained alone has no teacher fields. A study's tables and figures are its own:
``results/studies/<name>/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HASH_LENGTH = 8
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
TEACHER_METRICS = TEACHER_DIR + "/metrics.json"
# the students of one teacher checkpoint, and those trained alone (no teacher)
CHECKPOINT_STUDENTS = TEACHER + "/ep{epoch}"
ALONE_STUDENTS = "{data}/alone"
STUDENT = "{method}-{student_hash}/{student}/seed{seed}"
STUDENTS_DIR = RESULTS + "/students/"
STUDENT_DIR = STUDENTS_DIR + CHECKPOINT_STUDENTS + "/" + STUDENT
ALONE_DIR = STUDENTS_DIR + ALONE_STUDENTS + "/" + STUDENT
STUDENT_METRICS_FILE = "metrics.json"
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
# what this layout replaced (one table folder per workspace, teachers named without a hash): found, never reused
OLD_LAYOUT = (RESULTS + "/tables", RESULTS + "/figures")


def stable_hash(obj, length: int = HASH_LENGTH) -> str:
    """The first ``length`` hex digits of the sha256 of ``obj`` as sorted JSON (non-JSON values as their str): the
    one hash of specs, folder names and MLflow dataset digests."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def data_id(data_cfg: dict) -> str:
    """A data set's folder name: its name and the hash of its spec (where the files are read from is left out: the
    manifest checks what was read)."""
    spec = {k: v for k, v in data_cfg.items() if k not in ("root", "download")}
    return f"{data_cfg['dataset']}-{stable_hash(spec)}"


def data_dir(data: str) -> Path:
    """``data``: a data id (``data_id``)."""
    return Path(DATA_DIR.format(data=data))


def teacher_dir(teacher: dict) -> Path:
    """``teacher``: the job fields data, teacher_arch, recipe, teacher_seed, teacher_hash (others are ignored)."""
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


def old_layout(root: Path = Path(".")) -> list[Path]:
    """Folders of the layout before studies had their own (``results/tables``, teachers without a hash): they are
    neither read nor removed; the caller says so."""
    found = [root / p for p in OLD_LAYOUT if (root / p).is_dir()]
    teachers = root / RESULTS / "teachers"
    if teachers.is_dir():  # old teacher folders sat under the bare dataset name: results/teachers/synthetic/
        found += [d for d in sorted(teachers.iterdir()) if d.is_dir() and "-" not in d.name]
    return found


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
