from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from soteacher import config as config_mod

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
WORKFLOW_FILES = ["Snakefile", "workflow", "dvc.yaml", ".dvcignore"]


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
