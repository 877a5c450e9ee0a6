"""Nothing lost: killed or preempted training resumes to bit-identical results on CPU."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soteacher.core import layout
from soteacher.core.errors import CheckpointError
from soteacher.core.specs import to_json
from soteacher.study import config, teacher_jobs
from soteacher.training.loop import train
from soteacher.training.state import Resume
from tests.helpers import REPO, TINY_CONFIG, soteacher_recipe, teacher_learner, tiny_data
from tests.resume_driver import identical

pytestmark = pytest.mark.slow  # every test trains in processes it kills and restarts
STEPS = 3 * 4  # 3 epochs x 4 batches of the tiny data


def drive(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.resume_driver", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert drive(out).returncode == 0
    objective = torch.load(out / "final.pt", weights_only=True)["objective"]
    # both prediction tables are in the compared state, filled (bit-identical resume covers Filter-KD's table too)
    assert all(objective[k].abs().sum() > 0 for k in ("terms.consistency.average.table", "filter_table.table"))
    return out / "final.pt"


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, reference, trial):
    step = random.Random(trial).randint(1, STEPS)
    killed = drive(tmp_path, str(step), "SIGKILL")
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "final.pt").exists()
    resumed = drive(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    if step > 4:  # past the first epoch boundary, the saved state was used
        assert "resuming from" in resumed.stderr
    assert identical(reference, tmp_path / "final.pt"), f"killed at step {step}"


def test_sigterm_mid_epoch_saves_state_and_rerun_resumes(tmp_path, reference):
    stopped = drive(tmp_path, "6", "SIGTERM")  # step 6 = second batch of epoch 2
    assert stopped.returncode == 143, stopped.stderr
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (state["epoch"], state["batches_done"]) == (2, 2)
    resumed = drive(tmp_path)
    assert "resuming from" in resumed.stderr and "epoch 2, batch 2" in resumed.stderr
    assert identical(reference, tmp_path / "final.pt")


def test_teacher_job_killed_by_sigterm_resumes_into_the_same_mlflow_run(tmp_path):
    cfg = config.load(TINY_CONFIG)
    cfg["teacher"]["epochs"], cfg["teacher"]["checkpoint_every"] = 6, 3
    spec = teacher_jobs.teacher_spec(cfg, "resnet8", "soteacher", 0)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    cli = [sys.executable, "-m", "soteacher"]
    subprocess.run([*cli, "prepare-data", "--spec", json.dumps({"data": cfg["data"]})], cwd=tmp_path, check=True,
                   env=env, capture_output=True)
    subprocess.run([*cli, "init-tracking", "--experiment", "tiny", "--tracking-uri", env["MLFLOW_TRACKING_URI"]],
                   cwd=tmp_path, check=True, env=env, capture_output=True)
    job = subprocess.Popen([*cli, "train-teacher", "--spec", to_json(spec)], cwd=tmp_path, env=env,
                           stderr=subprocess.PIPE, text=True)
    for line in job.stderr:  # stop it once epoch 2 has finished
        if "epoch 2/6" in line:
            job.send_signal(signal.SIGTERM)
            break
    rest = job.stderr.read()
    assert job.wait(timeout=120) == 143, rest
    out = tmp_path / spec.dir
    assert not (out / "metrics.json").exists() and not (out / "ep3.pt").exists()  # nothing final yet
    assert (out / layout.RESUME_DIR / layout.RESUME_STATE).is_file()
    done = subprocess.run([*cli, "train-teacher", "--spec", to_json(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    assert set(metrics["checkpoints"]) == {"3", "6"} and (out / "ep3.pt").is_file() and (out / "ep6.pt").is_file()
    assert not (out / layout.RESUME_DIR).exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")][-1] == 6


def test_a_state_of_an_older_layout_is_refused_in_plain_words(tmp_path):
    # saved before multi-rank jobs (sums and RNG states at the top level) and per-learner seeds (one "generator")
    data = tiny_data(config.load(TINY_CONFIG))
    learner = teacher_learner(data, soteacher_recipe(), seed=0)
    torch.save({"epoch": 2, "batches_done": 0, "generator": torch.Generator().get_state(), "seen": 0, "extra": {},
                "sums": [{}], "correct": [torch.zeros(())], "rng": {}, "learners": [{"name": learner.name}]},
               tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match=r"older version \(it has no generators, ranks\); delete it"):
        train([learner], data, epochs=2, batch_size=16, seed=0, resume=Resume(tmp_path / "state.pt"))
