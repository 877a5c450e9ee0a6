"""The tiny study through a real SLURM: munged + slurmctld + slurmd started here, the slurm workflow profile,
snakemake-executor-plugin-slurm submitting every job with sbatch. Results must equal a local run's.

Needs root and the Debian packages slurm-wlm and munge; without them the test is skipped with the reason
(set SOTEACHER_REQUIRE_SLURM=1, as CI does, to make that a failure instead).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import BIN, REPO, copy_workflow

pytestmark = pytest.mark.slow
SLURM_DIR = REPO / "tests" / "slurm"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
EXPECTED_JOBS = {"prepare_data": 1, "train_teacher": 2, "distill": 4, "aggregate": 1}  # tiny.yaml, grouped methods
GPU_RULES = {"train_teacher", "distill"}


def _env(cluster: Path | None = None) -> dict:
    """The tests' environment; with ``cluster``, its client commands (DIR/bin) and config come first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SNAKEMAKE_", "SLURM_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cluster is not None:
        env["PATH"] = f"{cluster / 'bin'}{os.pathsep}{env['PATH']}"
        env["SLURM_CONF"] = str(cluster / "etc" / "slurm.conf")
    return env


def _fail(what: str, out: subprocess.CompletedProcess | None = None, cluster: Path | None = None) -> None:
    text = [what]
    if out is not None:
        text += [out.stdout[-3000:], out.stderr[-8000:]]
    if cluster is not None:
        for log in sorted((cluster / "log").glob("*.log")):
            text.append(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
    raise AssertionError("\n".join(text))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private one-node SLURM; yields its directory. Stops exactly the daemons it started (PID files)."""
    directory = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SLURM_DIR / "start_slurm.sh"), str(directory), "2"], capture_output=True,
                           text=True, timeout=120)
    try:
        if start.returncode == 3:
            reason = start.stderr.strip()
            if os.environ.get("SOTEACHER_REQUIRE_SLURM") == "1":
                pytest.fail(f"SOTEACHER_REQUIRE_SLURM=1 but {reason}")
            pytest.skip(reason)
        if start.returncode != 0:
            _fail(f"start_slurm.sh failed ({start.returncode})", start, directory)
        yield directory
    finally:
        stop = subprocess.run(["bash", str(SLURM_DIR / "stop_slurm.sh"), str(directory)], capture_output=True,
                              text=True, timeout=120)
        print(stop.stdout, stop.stderr)


def _test_profile(dest: Path) -> Path:
    """The slurm profile as shipped, with sizes for this one small node and the settings a cluster without
    accounting needs. Everything else (executor, requeue, retries, GPU requests, log dir) is kept."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    profile["default-resources"].update(mem_mb=400, runtime=15)
    for resources in profile["set-resources"].values():
        resources.update(mem_mb=400, runtime=15)
    profile.update({
        "jobs": 4,
        "slurm-no-account": True,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "latency-wait": 5,
    })
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny study twice, each in its own copy of the workflow: through SLURM, and at the same time locally
    with `--cores 1` at the lowest CPU priority (it uses the cores the SLURM jobs leave idle)."""
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    remote = copy_workflow(tmp_path_factory.mktemp("remote"))
    profile = _test_profile(tmp_path_factory.mktemp("profile") / "slurm")
    started = time.monotonic()
    local_proc = subprocess.Popen(["nice", "-n", "19", "snakemake", "--cores", "1"], cwd=local, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        remote_out = subprocess.run(["snakemake", "--workflow-profile", str(profile)], cwd=remote,
                                    env=_env(cluster), capture_output=True, text=True, timeout=600)
        slurm_seconds = time.monotonic() - started
        local_stdout, local_stderr = local_proc.communicate(timeout=600)
    finally:
        if local_proc.poll() is None:
            local_proc.kill()
            local_proc.wait()
    if remote_out.returncode != 0:
        _fail(f"snakemake with the SLURM profile failed ({remote_out.returncode})", remote_out, cluster)
    if local_proc.returncode != 0:
        _fail("local snakemake failed", subprocess.CompletedProcess([], local_proc.returncode, local_stdout,
                                                                    local_stderr))
    # "Job 3 has been submitted with SLURM jobid 7 (log: /.../logs/slurm/rule_x/.../7.log)."
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", remote_out.stderr)
    return {"local": local, "remote": remote, "log": remote_out.stderr, "submitted": submitted,
            "cluster": cluster, "seconds": slurm_seconds}


def _scontrol_job(job_id: str, cluster: Path) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30,
                         env=_env(cluster), check=True)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout))


def test_every_job_was_a_slurm_job_with_its_resources(runs, capsys):
    ids = [job_id for job_id, _ in runs["submitted"]]
    with capsys.disabled():
        print(f"\nsbatch job ids: {', '.join(ids)}; SLURM run took {runs['seconds']:.0f} s")
    assert len(set(ids)) == sum(EXPECTED_JOBS.values()), runs["log"][-3000:]  # one per job, no resubmissions
    assert "localrule" not in runs["log"].replace("localrule all", "")  # only the target rule ran locally
    per_rule: dict[str, int] = {}
    for job_id, log in runs["submitted"]:
        job = _scontrol_job(job_id, runs["cluster"])
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_|$)", job["Comment"]).group(1)
        per_rule[rule] = per_rule.get(rule, 0) + 1
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["JobName"].startswith("soteacher_")  # slurm-jobname-prefix from the profile
        assert job["Requeue"] == "1"  # slurm-requeue from the profile
        assert (job.get("TresPerJob") == "gres:gpu:1") == (rule in GPU_RULES), (rule, job)  # sbatch --gpus=1
        assert job["MinMemoryNode"] == "400M" and job["TimeLimit"] == "00:15:00"
        log_path = Path(log)  # the profile's log dir, kept for successful jobs too
        assert log_path.is_relative_to(runs["remote"] / "logs" / "slurm"), log_path
        assert log_path.is_file() and "Finished job" in log_path.read_text()
    assert per_rule == EXPECTED_JOBS


def test_every_mlflow_run_carries_its_slurm_job_id(runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{runs['remote']}/mlflow/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    mlflow_runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(mlflow_runs) == 2 + 8  # teachers + students
    submitted = {job_id for job_id, _ in runs["submitted"]}
    teacher_jobs = {r.data.tags["slurm_job_id"] for r in mlflow_runs if r.data.tags["role"] == "teacher"}
    student_jobs = {r.data.tags["slurm_job_id"] for r in mlflow_runs if r.data.tags["role"] == "student"}
    assert all(r.info.status == "FINISHED" for r in mlflow_runs)
    assert len(teacher_jobs) == 2 and len(student_jobs) == 4  # grouped methods: two students per job
    assert teacher_jobs | student_jobs <= submitted


def _comparable(obj):
    """Metrics without what differs between two correct runs (MLflow run ids)."""
    if isinstance(obj, dict):
        return {k: _comparable(v) for k, v in obj.items() if k != "mlflow_run_id"}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def test_slurm_results_equal_the_local_run(runs):
    local, remote = runs["local"] / "results", runs["remote"] / "results"
    metrics = sorted(p.relative_to(local) for p in local.rglob("metrics.json"))
    assert len(metrics) == 2 + 8
    assert metrics == sorted(p.relative_to(remote) for p in remote.rglob("metrics.json"))
    for rel in metrics:
        assert _comparable(json.loads((remote / rel).read_text())) == _comparable(
            json.loads((local / rel).read_text())), rel
    [teacher_rel] = [rel for rel in metrics if rel.parts[0] == "teachers" and "-soteacher-s0-" in rel.parts[2]]
    teacher = json.loads((remote / teacher_rel).read_text())
    assert [h["test_acc"] for h in teacher["history"]] == [
        h["test_acc"] for h in json.loads((local / teacher_rel).read_text())["history"]]
    tables = Path("studies/tiny/tables")
    pd.testing.assert_frame_equal(pd.read_csv(remote / tables / "summary.csv"),
                                  pd.read_csv(local / tables / "summary.csv"))
    assert json.loads((remote / tables / "summary.json").read_text()) == json.loads(
        (local / tables / "summary.json").read_text())
