"""What tests share besides fixtures: paths, a runnable copy of the workflow, subprocess runs, the teacher
recipes as the schema fills them, tiny in-memory data and learners."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from soteacher.core.settings import Compute, Optim
from soteacher.data import Data, Split
from soteacher.data.synthetic import generate
from soteacher.methods import METHODS
from soteacher.models import build_model, feature_shapes
from soteacher.study import config as config_mod
from soteacher.teachers.objective import TeacherObjective
from soteacher.training.learner import Learner
from soteacher.training.optim import make_optimizer
from soteacher.training.state import seed_everything

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
WORKFLOW_FILES = ["Snakefile", "workflow", "profiles", "dvc.yaml", ".dvcignore"]
BIN = Path(sys.executable).parent

OPTIM = Optim(lr=0.05, lr_by_arch={}, momentum=0.9, weight_decay=5e-4, batch_size=16, lr_schedule="multistep",
              lr_milestones=[2], lr_gamma=0.1)


# --- the workflow and its commands, for real ------------------------------------------------------------------


def copy_workflow(dest: Path, config_file: Path = TINY_CONFIG) -> Path:
    """A runnable copy of the workflow in ``dest`` with ``config_file`` as its config/config.yaml, the one study
    its params.yaml lists for DVC (under the config's name)."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy(src, dest / name)
    (dest / "config").mkdir()
    shutil.copy(config_file, dest / "config" / "config.yaml")
    list_studies(dest, {"config/config.yaml": yaml.safe_load(config_file.read_text())["name"]})
    return dest


def list_studies(work: Path, studies: dict[str, str]) -> None:
    """Write the workflow copy's params.yaml: the studies DVC reproduces, {config file: study name}."""
    (work / "params.yaml").write_text(yaml.safe_dump({"studies": {name: {"config": path}
                                                                  for path, name in studies.items()}}))


def subprocess_env(**extra) -> dict:
    """The environment for real Snakemake/DVC/MLflow runs: this venv first, no inherited MLflow/Snakemake
    settings, a git identity for commits in temporary repositories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SNAKEMAKE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org")
    return {**env, **extra}


def run(cmd: list[str], cwd: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    return out


def python_output(code: str) -> str:
    """What ``python -c code`` prints (stripped), in a fresh interpreter of this venv; fails on a non-zero exit."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def job_stats(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs per rule from a Snakemake run's (or dry run's) "Job stats" table ({} when there was nothing to do)."""
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


def results_without_hashes(results: Path) -> dict[str, dict]:
    """Every teacher's and student's metrics.json under ``results``, keyed by its path with the folders' hashes
    dropped: settings in the hashed compute section (e.g. gpus_per_job) move a result to other folders."""
    return {re.sub(r"-[0-9a-f]{8}(?=/|$)", "", str(p.relative_to(results))): json.loads(p.read_text())
            for p in results.rglob("metrics.json") if p.relative_to(results).parts[0] in ("teachers", "students")}


def dry_run_jobs(cwd: Path) -> dict[str, int]:
    """Jobs per rule that ``snakemake -n`` would run ({} when there is nothing to do)."""
    return job_stats(run(["snakemake", "-n", "--cores", "2"], cwd))


def compute_section(**overrides) -> dict:
    """The config's ``compute`` section at the schema's defaults, ``overrides`` on top (what the rules read)."""
    return {**config_mod.defaults_at("compute"), **overrides}


def compute(**overrides) -> Compute:
    """A job's ``Compute`` at the schema's defaults, ``overrides`` on top."""
    return Compute(**compute_section(**overrides))


# --- teacher recipes: the schema's defaults, not copies --------------------------------------------------------


def tiny_raw(**changes) -> dict:
    """The tiny config as read (defaults not filled), with dotted keys (``"teacher.seeds"``) replaced."""
    from soteacher.study import config as config_mod

    raw = config_mod.read_yaml(TINY_CONFIG)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def _recipe(name: str, overrides: dict[str, dict]) -> dict:
    """Recipe ``name`` as the schema's default teacher.recipes fill it, each term of ``overrides`` merged into its
    parameters (a term the recipe lacks is added), validated (a misspelt key or an out-of-range value fails here)."""
    terms = config_mod.validate({}, deep=False)["teacher"]["recipes"][name]
    terms = {**terms, **{term: {**terms.get(term, {}), **params} for term, params in overrides.items()}}
    filled = config_mod.validate({"teacher": {"recipes": {name: terms}}}, deep=False)
    return filled["teacher"]["recipes"][name]


def soteacher_recipe(**overrides: dict) -> dict:
    """The SoTeacher recipe, ``{term: params}`` (ce, lipschitz, consistency as the schema's default ``soteacher``
    recipe); ``overrides``: term -> parameters to change, e.g. ``consistency={"weight": 2.0}``."""
    return _recipe("soteacher", overrides)


def standard_recipe(**overrides: dict) -> dict:
    """The standard recipe (cross-entropy alone), as the schema's default ``standard`` recipe."""
    return _recipe("standard", overrides)


def filter_table() -> dict:
    """``teacher.filter_table`` turned on with the schema's defaults (Filter-KD: alpha 0.05, temperature 1)."""
    return config_mod.validate({"teacher": {"filter_table": {}}}, deep=False)["teacher"]["filter_table"]


# --- tiny in-memory data and learners ---------------------------------------------------------------------------


def tiny_data(config: dict, val_size: int = 0) -> Data:
    t = generate(config["data"]["synthetic"], val_size=val_size)
    train, test = (Split(t[f"{s}_images"], t[f"{s}_labels"], t[f"{s}_pstar"]) for s in ("train", "test"))
    val = Split(t["val_images"], t["val_labels"], t["val_pstar"]) if val_size else None
    return Data("synthetic", t["train_pstar"].shape[1], train, test,
                mean=torch.full((1, 3, 1, 1), 127.0), std=torch.full((1, 3, 1, 1), 64.0), crop_padding=2, flip=True,
                val=val)


def teacher_learner(data: Data, terms: dict, seed: int, arch: str = "resnet8", epochs: int = 2,
                    optim: Optim = OPTIM, filter_table: dict | None = None) -> Learner:
    """A teacher trained on ``terms`` (a recipe, ``{term: params}`` with defaults filled); ``filter_table``: also
    record Filter-KD's table (``teacher.filter_table``)."""
    seed_everything(seed)
    model = build_model(arch, data.num_classes)
    objective = TeacherObjective(model, terms, len(data.train), data.num_classes, epochs, filter_table=filter_table)
    optimizer, scheduler = make_optimizer(model.parameters(), optim, optim.lr, epochs)
    return Learner("teacher", model, objective, optimizer, scheduler)


def student_learner(data: Data, teacher: torch.nn.Module, method: str, cfg: dict, seed: int,
                    arch: str = "resnet8", epochs: int = 2) -> Learner:
    seed_everything(seed)
    model = build_model(arch, data.num_classes)
    shape = data.image_shape
    module = METHODS[method](cfg, feature_shapes(model, shape), feature_shapes(teacher, shape), len(data.train))
    optimizer, scheduler = make_optimizer(list(model.parameters()) + list(module.parameters()), OPTIM, OPTIM.lr,
                                          epochs)
    return Learner(method, model, module, optimizer, scheduler)
