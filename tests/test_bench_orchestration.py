"""`make bench` after other Snakemake commands: the orchestration bench reads the log of the run that trained."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_orchestration import training_jobs, training_log
from tests.helpers import REPO, copy_workflow, run, subprocess_env

pytestmark = pytest.mark.slow


def _bench(work: Path) -> subprocess.CompletedProcess:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "bench.bench_orchestration"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bench_reads_the_training_run_log_after_a_dry_run_a_noop_run_and_a_report(tmp_path):
    work = copy_workflow(tmp_path)
    run(["snakemake", "--cores", "2"], work)
    log_dir = work / ".snakemake/log"
    (trained,) = log_dir.glob("*.snakemake.log")
    run(["snakemake", "-n", "--cores", "2"], work)
    run(["snakemake", "--cores", "2"], work)  # nothing to do: a log with no job
    run(["snakemake", "--report", "report.html"], work)
    newer = sorted(set(log_dir.glob("*.snakemake.log")) - {trained})
    assert len(newer) >= 2 and all(not training_jobs(p) for p in newer)
    assert {j["rule"] for j in training_jobs(trained)} == {"train_teacher", "distill"}

    assert training_log(log_dir) == (trained, len(newer))
    out = _bench(work)
    assert out.returncode == 0, out.stderr
    assert f"# Snakemake log: .snakemake/log/{trained.name} (the newest that ran training jobs; {len(newer)} newer" \
        in out.stdout
    assert "orchestration_overhead" in out.stdout

    # without the training run's log: a plain error naming what it looked for
    shutil.move(trained, tmp_path / trained.name)
    out = _bench(work)
    assert out.returncode == 1
    assert f"none of the {len(newer)} Snakemake logs under .snakemake/log/ shows a finished training job" in out.stderr
    assert "train_teacher" in out.stderr and "make run" in out.stderr
