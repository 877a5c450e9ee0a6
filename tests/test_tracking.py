"""MLflow as the UI shows it: the experiment opens on its training runs, each run lists its data set."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from soteacher import data
from soteacher.core import layout, tracking
from soteacher.core.tracking import EXPERIMENT_KIND
from soteacher.study.identity import data_id
from tests.helpers import copy_workflow, run

KIND, MODEL_TRAINING = EXPERIMENT_KIND


def _inputs(client: MlflowClient, run_id: str) -> dict[str, tuple[str, str]]:
    """{context: (data set name, digest)} of a run's dataset inputs."""
    out = {}
    for entry in client.get_run(run_id).inputs.dataset_inputs:
        (context,) = [t.value for t in entry.tags if t.key == "mlflow.data.context"]
        out[context] = (entry.dataset.name, entry.dataset.digest)
    return out


def test_runs_log_the_prepared_data_set_and_the_experiment_opens_on_training_runs(tmp_path, monkeypatch,
                                                                                  tiny_config):
    monkeypatch.chdir(tmp_path)  # jobs run in the workflow folder: results/data/<data id> is read from there
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    data_cfg = tiny_config["data"]
    data_dir = layout.data_dir(data_id(tiny_config))
    manifest = data.prepare(data_cfg, data_dir)
    run_ = tracking.Run(uri, "tiny", "a-teacher", tags={"role": "teacher"}, params={"data": data_cfg, "seed": 0},
                        dataset=(data_cfg, data_dir))
    run_.end()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags[KIND] == MODEL_TRAINING
    inputs = _inputs(client, run_.run_id)
    assert set(inputs) == set(manifest["splits"]) == {"train", "test"}
    assert {name for name, _ in inputs.values()} == {"synthetic"}
    assert inputs["train"][1] != inputs["test"][1]
    # the digest is the data's: a second run on the same prepared data shows the same one
    again = tracking.Run(uri, "tiny", "a-student", tags={"role": "student"}, params={"data": data_cfg},
                         dataset=(data_cfg, data_dir))
    assert _inputs(client, again.run_id) == inputs
    # a run without a prepared data set still names it, with the hash of the config's data section
    other = {**data_cfg, "dataset": "cifar100"}
    early = tracking.Run(uri, "tiny", "early", tags={}, params={"data": other}, dataset=(other, tmp_path / "none"))
    (entry,) = client.get_run(early.run_id).inputs.dataset_inputs
    assert entry.dataset.name == "cifar100" and len(entry.dataset.digest) == 16


def test_experiments_made_before_get_the_kind_and_a_chosen_kind_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    old = client.create_experiment("old")
    chosen = client.create_experiment("chosen", tags={KIND: "genai_development"})
    assert tracking.init_store(uri, "old") == old
    assert client.get_experiment(old).tags[KIND] == MODEL_TRAINING
    assert tracking.init_store(uri, "chosen") == chosen
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"
    assert tracking.ui_url("http://127.0.0.1:5000/", old) == \
        f"http://127.0.0.1:5000/#/experiments/{old}?workflowType=machine_learning"


@pytest.mark.slow
def test_every_run_of_a_real_study_lists_its_data_set(tmp_path):
    work = copy_workflow(tmp_path)
    run(["snakemake", "--cores", "2"], work)
    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags[KIND] == MODEL_TRAINING
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert {r.data.tags["role"] for r in runs} == {"teacher", "student"} and len(runs) == 2 + 8
    seen = {tuple(sorted(_inputs(client, r.info.run_id).items())) for r in runs}
    assert len(seen) == 1  # every teacher and student run: the same data set, split by split
    inputs = dict(next(iter(seen)))
    assert set(inputs) == {"train", "test"} and {n for n, _ in inputs.values()} == {"synthetic"}
    assert len(list(work.glob("results/data/synthetic-*/manifest.json"))) == 1
    out = run(["python", "-m", "soteacher", "init-tracking", "--config", "config/config.yaml", "--ui",
               "http://127.0.0.1:5000"], work)
    assert f"#/experiments/{exp.experiment_id}?workflowType=machine_learning" in out.stdout


def test_a_job_opening_the_store_while_another_holds_it_waits_for_it(tmp_path, monkeypatch):
    # MLflow reads a store's table list with sqlite3's default 5 s busy timeout; a writer holding the file for
    # longer (a loaded machine, many jobs) refused the opening job in CI. Held here for 7 s: opening waits.
    import sqlite3
    import threading
    import time

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # what a committing writer holds: no one else may read
    released = []

    def release():
        time.sleep(7)
        released.append(time.monotonic())
        holder.rollback()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        client = tracking.open_client(f"sqlite:///{db}")
        opened = time.monotonic()
    finally:
        thread.join()
        holder.close()
    assert released and opened >= released[0]
    assert client.get_experiment_by_name("Default") is not None  # the fresh store's tables were made
