"""A run killed with SIGKILL (a power cut) leaves Snakemake's lock; `make run` removes it and finishes the study."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, REPO, copy_workflow, run, subprocess_env

pytestmark = pytest.mark.slow

LOCKED = "Directory cannot be locked"


def _with_makefile(work: Path) -> Path:
    """``work`` runnable with ``make``: the Makefile and this venv as .venv (its install stamp taken as done)."""
    shutil.copy(REPO / "Makefile", work / "Makefile")
    (work / ".venv").symlink_to(BIN.parent)
    return work


def make_run(work: Path, check: bool = True) -> subprocess.CompletedProcess:
    # -o: never reinstall the venv (the copy has no pyproject.toml; the stamp is this venv's)
    return run(["make", "-o", ".venv/.installed", "run", "CORES=2"], work, check=check)


def _wait_for(predicate, what: str, timeout: float = 300) -> None:  # returns once true: generous for loaded machines
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _training_started(work: Path) -> bool:
    logs = list((work / ".snakemake/log").glob("*.snakemake.log"))
    return any("rule train_teacher:" in p.read_text() for p in logs)


def test_make_run_after_sigkill_removes_the_stale_lock_and_finishes_as_an_uninterrupted_run(tmp_path):
    reference = copy_workflow(_mkdir(tmp_path / "reference"))
    run(["snakemake", "--cores", "2"], reference)

    work = _with_makefile(copy_workflow(_mkdir(tmp_path / "killed")))
    proc = subprocess.Popen(["snakemake", "--cores", "2"], cwd=work, env=subprocess_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _training_started(work), "the first training job")
        # while Snakemake runs, its lock stays: the recovery step sees the live process
        live = run(["python", "-m", "soteacher", "unlock-if-stale"], work)
        assert "not unlocking" in live.stderr and f"pid {proc.pid}" in live.stderr, live.stderr
        assert list((work / ".snakemake/locks").glob("*.lock"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its jobs at once, as a power cut would
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list((work / ".snakemake/locks").glob("*.lock")), "SIGKILL should leave Snakemake's lock"

    plain = run(["snakemake", "--cores", "2"], work, check=False)
    assert plain.returncode != 0 and LOCKED in plain.stdout + plain.stderr

    recovered = make_run(work)
    assert "removing a stale Snakemake lock" in recovered.stderr, recovered.stderr
    assert not list((work / ".snakemake/locks").glob("*.lock"))
    summary = "results/studies/tiny/tables/summary.csv"
    assert (work / summary).read_bytes() == (reference / summary).read_bytes()
    # nothing left to remove: the next `make run` says nothing about locks and has nothing to do
    again = make_run(work)
    assert "lock" not in again.stderr.lower() and "Nothing to be done" in again.stdout + again.stderr


def test_unlock_if_stale_without_a_lock_does_nothing(tmp_path):
    work = copy_workflow(tmp_path)
    out = run(["python", "-m", "soteacher", "unlock-if-stale", "--", "--configfile", "config/config.yaml"], work)
    assert out.stdout == "" and out.stderr == ""
    assert not (work / ".snakemake").exists()


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path
