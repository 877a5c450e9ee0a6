"""Loud failures and concurrent logging: NaN jobs fail visibly; parallel writers lose no MLflow data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_CONFIG, run

WRITER = """
import sys
from soteacher.core.tracking import Run
run = Run(sys.argv[1], "concurrent", f"writer{sys.argv[2]}", tags={"writer": sys.argv[2]}, params={"i": sys.argv[2]})
for step in range(20):
    run.log_metrics({"a": step * 1.0, "b": -step * 1.0}, step=step)
run.end()
"""


@pytest.mark.slow
def test_eight_concurrent_writers_on_a_new_store_lose_nothing(tmp_path):
    # no store yet: the first writers race to create it (MLflow's schema set-up is not safe concurrently)
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, str(i)]) for i in range(8)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrent").experiment_id])
    assert sorted(r.data.tags["writer"] for r in runs) == [str(i) for i in range(8)]
    for r in runs:
        assert r.info.status == "FINISHED"
        for key in ("a", "b"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, key)] == list(range(20))


@pytest.mark.slow
def test_nan_loss_fails_the_job_leaves_no_output_and_marks_the_run_failed(work):
    cfg = yaml.safe_load(TINY_CONFIG.read_text())
    cfg["teacher"]["optim"]["lr"] = 1.0e30  # diverges to a non-finite loss in the first epoch
    cfg["teacher"]["recipes"] = {"standard": {"ce": {}}}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    out = run(["snakemake", "--cores", "1", "teachers"], work, check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Error in rule train_teacher" in text
    log = next(Path(work, "logs/teachers").rglob("*.log")).read_text()
    assert "non-finite loss in epoch 1" in log and "train_ce=" in log
    assert not list(work.glob("results/teachers/*/*/metrics.json"))
    assert not list(work.glob("results/teachers/*/*/ep*.pt"))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
