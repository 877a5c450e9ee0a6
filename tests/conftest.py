"""pytest fixtures, and only fixtures: what tests share otherwise is in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from soteacher.study import config as config_mod
from tests.helpers import TINY_CONFIG, copy_workflow


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> dict:
    return config_mod.load(TINY_CONFIG)


@pytest.fixture
def work(tmp_path) -> Path:
    """A runnable copy of the workflow in the test's tmp_path, the tiny study as its config."""
    return copy_workflow(tmp_path)
