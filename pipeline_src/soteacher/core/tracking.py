"""MLflow logging through an explicit client (no global active run), imported lazily (it is slow).

The tracking URI comes from ``MLFLOW_TRACKING_URI`` when set, else the config. Jobs open a local SQLite
store one at a time (a lock file beside it): MLflow's creation of a new store's schema crashes when two
processes run it at once, as parallel jobs starting on a fresh store would.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from soteacher.core.digest import stable_hash
from soteacher.core.dvc import dvc_links
from soteacher.core.errors import TrainingInterrupted
from soteacher.core.io import read_json, write_json
from soteacher.core.layout import REPO_ROOT

log = logging.getLogger(__name__)


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def resolve_uri(configured: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if (path := _sqlite_path(uri)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return uri


def _artifact_location(uri: str) -> str | None:
    path = _sqlite_path(uri)
    return None if path is None else (path.resolve().parent / "artifacts").as_uri()


# MLflow 3 opens an experiment without this tag on its GenAI pages (traces); this value opens it on the runs.
# Newer UIs (3.17 here) follow their own GenAI / Model training switch instead: see ui_url.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client, uri: str, name: str) -> str:
    kind, value = EXPERIMENT_KIND
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri), tags={kind: value})
        except Exception:  # created by a concurrent job in the meantime
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if kind not in exp.tags:  # made by an earlier version: a kind the user chose is left alone
        client.set_experiment_tag(exp.experiment_id, kind, value)
    return exp.experiment_id


STORE_BUSY_WAIT_S = 120.0  # how long a job retries opening a SQLite store that other jobs hold (open_client)


def open_client(uri: str):
    """An ``MlflowClient`` for ``uri`` (resolved); a SQLite store is opened, and created if new, under a lock.

    Opening reads the store's table list through a connection with sqlite3's 5 s busy timeout (MLflow's own
    sessions wait 20 s), so a job opening the store while other jobs write to it on a loaded machine can be
    refused with "database is locked": it tries again for up to ``STORE_BUSY_WAIT_S`` seconds."""
    import random
    import time

    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import OperationalError

    path = _sqlite_path(uri)
    if path is None:
        return MlflowClient(uri)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        deadline = time.monotonic() + STORE_BUSY_WAIT_S  # counted from here: waiting for the lock is not retrying
        while True:
            try:
                return MlflowClient(uri)  # creates the store's tables on first use
            except OperationalError as err:
                if "database is locked" not in str(err) or time.monotonic() > deadline:
                    raise
                log.info("the MLflow store %s is busy (another job writes to it); trying again", path)
                time.sleep(0.5 + random.Random().random())  # its own generator: the job's RNG is untouched


def ui_url(base: str, exp_id: str) -> str:
    """A link to the experiment's runs in the MLflow UI. MLflow >= 3.7 opens experiments on its GenAI pages unless
    its switch says "Model training": ``workflowType`` sets it (links inside the UI drop it again)."""
    return f"{base.rstrip('/')}/#/experiments/{exp_id}?workflowType=machine_learning"


def init_store(uri: str, experiment: str) -> str:
    uri = resolve_uri(uri)
    return experiment_id(open_client(uri), uri, experiment)


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str:
    out = _git("rev-parse", "HEAD")
    return (out.stdout.strip() if out else "") or "unknown"


def git_dirty() -> str:
    """"true" when tracked files differ from the commit (the code that ran is not ``git_commit``'s)."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    if out is None or out.returncode != 0:
        return "unknown"
    return "true" if out.stdout.strip() else "false"


def runtime_tags(device) -> dict[str, str]:
    tags = {"host": socket.gethostname(), "git_commit": git_commit(), "git_dirty": git_dirty(),
            "device": str(device)}
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        tags["gpu"] = torch.cuda.get_device_name(device)
    if "SLURM_JOB_ID" in os.environ:
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


class Run:
    """One MLflow run; ``end('FAILED')`` on errors so the UI never shows a crashed job as running."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str], params: dict,
                 parent_run_id: str | None = None, dataset: tuple[dict, Path] | None = None):
        """``dataset``: the run's data section and prepared data folder, logged as its dataset inputs."""
        self.uri = resolve_uri(uri)
        self.client = open_client(self.uri)
        exp_id = experiment_id(self.client, self.uri, experiment)
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self.experiment = experiment  # the study: where its DVC outputs are (dvc_links)
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        from mlflow.entities import Param

        flat = _flatten(params)
        for i in range(0, len(flat), 100):
            batch = [Param(k, str(v)[:6000]) for k, v in list(flat.items())[i:i + 100]]
            self.client.log_batch(self.run_id, params=batch)
        if dataset is not None:
            self._log_inputs(dataset_inputs(*dataset))

    def _log_inputs(self, datasets: list, attempts: int = 5) -> None:
        """Log the run's dataset inputs. Jobs that start together on one data set race to create its MLflow dataset
        row (the store refuses the second: a unique constraint); the loser finds the row on a retry. A label for
        the UI, never worth failing a training job for: after the last attempt it is logged as a warning."""
        import random
        import time

        from mlflow.exceptions import MlflowException

        for attempt in range(attempts):
            try:
                self.client.log_inputs(self.run_id, datasets=datasets)
                return
            except MlflowException as err:
                if attempt == attempts - 1:
                    log.warning("run %s: its data set input was not logged: %s", self.run_id, err)
                    return
                time.sleep(0.2 + random.Random().random())  # its own generator: the job's RNG state is untouched

    @classmethod
    def reopen(cls, uri: str, run_id: str) -> Run:
        """Continue a run a killed job had started (its status goes back to RUNNING)."""
        run = cls.__new__(cls)
        run.uri = resolve_uri(uri)
        run.client = open_client(run.uri)
        run.run_id = run_id
        run.experiment = run.client.get_experiment(run.client.get_run(run_id).info.experiment_id).name
        run.client.update_run(run_id, status="RUNNING")
        return run

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def dataset_inputs(data_cfg: dict, data_dir: Path) -> list:
    """The run's data set as MLflow dataset inputs (the UI's Dataset column): one per split of the data manifest,
    named after the data set, its digest a hash of the split's manifest entry (array or file hashes, sizes), its
    context the split, its source the prepared data folder. Before ``prepare-data`` wrote a manifest: one input
    whose digest is the hash of the config's ``data`` section."""
    import json

    from mlflow.data import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    name = data_cfg["dataset"]
    # named outright: resolving a bare path warns that two registered source types match it
    source = get_dataset_source_from_json(json.dumps({"uri": str(data_dir.resolve())}), source_type="local")

    def entry(value: str, context: str) -> DatasetInput:
        dataset = Dataset(**MetaDataset(source, name=name, digest=value).to_dict())
        return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])

    manifest_file = data_dir / "manifest.json"
    splits = read_json(manifest_file).get("splits", {}) if manifest_file.is_file() else {}
    if splits:
        return [entry(stable_hash(info, 16), split) for split, info in splits.items()]
    return [entry(stable_hash(data_cfg, 16), "train")]


def open_runs(state_dir: Path, make_runs: Callable[[], list[Run]], uri: str) -> list[Run]:
    """New MLflow runs, or, when resuming a killed job, the runs it had opened (they continue). Their ids are
    kept in ``state_dir`` (the job's resume folder)."""
    ids_file = state_dir / "mlflow_runs.json"
    if ids_file.is_file():
        runs = [Run.reopen(uri, run_id) for run_id in read_json(ids_file)]
        log.info("resuming MLflow runs %s", ", ".join(r.run_id for r in runs))
        return runs
    runs = make_runs()
    write_json(ids_file, [r.run_id for r in runs])
    return runs


@contextlib.contextmanager
def ending(runs: list[Run]) -> Iterator[None]:
    """End ``runs`` with the job: FINISHED, KILLED when it was interrupted (it resumes), FAILED otherwise."""
    try:
        yield
    except BaseException as err:
        status = "KILLED" if isinstance(err, (TrainingInterrupted, KeyboardInterrupt)) else "FAILED"
        for run in runs:
            run.end(status)
        raise
    for run in runs:
        run.end("FINISHED")


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


# --- links from runs to the exact files (git commit, their md5, their DVC output) and small artifacts ------

def file_md5(path: Path) -> str:
    """The md5 of a file's bytes: what DVC records for it, and its name in the DVC cache and remotes
    (``files/md5/<first 2 hex>/<other 30>``)."""
    import hashlib

    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def log_links(run: Run, spec: dict, files: dict[str, Path], metrics_file: Path | None) -> None:
    """Tag ``run`` with each file's path, md5 and DVC output (``<label>.path``, ``<label>.md5``,
    ``<label>.dvc_out``, ``<label>.dvc_out_md5``), and log the small artifacts: the metrics JSON, the job spec
    as JSON (the per-epoch curves are the run's metrics, charted by the MLflow UI). Checkpoints themselves are
    not copied into MLflow: DVC holds them."""
    import tempfile

    from mlflow.entities import RunTag

    tags: dict[str, str] = {}
    for label, path in files.items():
        md5 = file_md5(path)
        try:
            shown = Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            shown = str(path)
        tags[f"{label}.path"] = shown
        tags[f"{label}.md5"] = md5
        tags.update({f"{label}.{k}": v for k, v in dvc_links(Path(path), md5, run.experiment).items()})
    run.client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    if metrics_file is not None:
        run.log_artifact(metrics_file)
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "spec.json"
        write_json(spec_file, spec)
        run.log_artifact(spec_file)
