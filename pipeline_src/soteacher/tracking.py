"""MLflow logging through an explicit client (no global active run), imported lazily (it is slow).

The tracking URI comes from ``MLFLOW_TRACKING_URI`` when set, else the config. A local SQLite store
must be created once before parallel jobs open it (concurrent first use crashes MLflow's schema
migration): ``python -m soteacher init-tracking`` does that, and Snakemake calls it in ``onstart``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path

from soteacher.config import REPO_ROOT

log = logging.getLogger(__name__)


def resolve_uri(configured: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
    return uri


def _artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts").as_uri()
    return None


def experiment_id(client, uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    except Exception:  # created by a concurrent job in the meantime
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def init_store(uri: str, experiment: str) -> str:
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(uri)
    return experiment_id(MlflowClient(uri), uri, experiment)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def runtime_tags(device) -> dict[str, str]:
    tags = {"host": socket.gethostname(), "git_commit": git_commit(), "device": str(device)}
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        tags["gpu"] = torch.cuda.get_device_name(device)
    if "SLURM_JOB_ID" in os.environ:
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


class Run:
    """One MLflow run; ``end('FAILED')`` on errors so the UI never shows a crashed job as running."""

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str], params: dict,
                 parent_run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        self.client = MlflowClient(self.uri)
        exp_id = experiment_id(self.client, self.uri, experiment)
        tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        from mlflow.entities import Param

        flat = _flatten(params)
        for i in range(0, len(flat), 100):
            batch = [Param(k, str(v)[:6000]) for k, v in list(flat.items())[i:i + 100]]
            self.client.log_batch(self.run_id, params=batch)

    @classmethod
    def reopen(cls, uri: str, run_id: str) -> Run:
        """Continue a run a killed job had started (its status goes back to RUNNING)."""
        from mlflow.tracking import MlflowClient

        run = cls.__new__(cls)
        run.uri = resolve_uri(uri)
        run.client = MlflowClient(run.uri)
        run.run_id = run_id
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


def _flatten(obj: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
