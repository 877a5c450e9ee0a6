from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soteacher.common import config as config_mod

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
WORKFLOW_FILES = ["Snakefile", "workflow", "profiles", "dvc.yaml", ".dvcignore"]
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> dict:
    return config_mod.load(TINY_CONFIG)


def copy_workflow(dest: Path, config_file: Path = TINY_CONFIG) -> Path:
    """A runnable copy of the workflow in ``dest`` with ``config_file`` as its config/config.yaml."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy(src, dest / name)
    (dest / "config").mkdir()
    shutil.copy(config_file, dest / "config" / "config.yaml")
    return dest


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


def dry_run_jobs(cwd: Path) -> dict[str, int]:
    """Jobs per rule that ``snakemake -n`` would run ({} when there is nothing to do)."""
    out = run(["snakemake", "-n", "--cores", "2"], cwd)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}
