"""A training job's threads and resources (soteacher.study.resources): what they are for 1 rank, N ranks on one
node and N ranks on several nodes; the sbatch line the installed SLURM plugin builds from them; and what a real
`snakemake --dry-run` of the tiny study gives its jobs with compute.gpus_per_job: 2."""

from __future__ import annotations

import re

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from soteacher.study.resources import job_resources, job_threads
from tests.helpers import compute_section, copy_workflow, run, tiny_raw


def test_one_rank_is_one_gpu_as_before():
    assert job_resources(compute_section(threads=3)) == {"gpu": 1}
    assert job_threads(compute_section(threads=3)) == 3


def test_two_ranks_on_one_node_are_two_gpus_and_two_tasks_with_their_own_threads():
    compute = compute_section(threads=3, gpus_per_job=2)
    assert job_resources(compute) == {"gpu": 2, "mpi": "srun", "tasks_per_node": 2, "cpus_per_task": 3, "nodes": 1}
    assert job_threads(compute) == 6  # both ranks' threads on this node, for --cores


def test_eight_ranks_on_each_of_two_nodes_ask_per_node_gpus():
    compute = compute_section(threads=4, gpus_per_job=8, nodes_per_job=2)
    assert job_resources(compute) == {"gres": "gpu:8", "mpi": "srun", "tasks_per_node": 8, "cpus_per_task": 4,
                                      "nodes": 2}
    assert job_threads(compute) == 32  # per node


class _Resources(dict):
    """Snakemake's job resources as the plugin reads them: ``.get`` and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Job:
    def __init__(self, compute: dict):
        self.resources = _Resources(job_resources(compute), runtime=10, mem_mb=100)
        self.threads = job_threads(compute)


def _sbatch(compute: dict) -> str:
    """The sbatch line the installed snakemake-executor-plugin-slurm builds for a training job (its own code)."""
    params = {"run_uuid": "u", "slurm_logfile": "x.log", "comment_str": "c", "account": "", "partition": "",
              "workdir": ""}
    job = _Job(compute)
    return get_submit_command(job, params) + set_gres_string(job)


def _flags(line: str) -> set[str]:
    return {f for f in line.split() if f.startswith(("--gpus", "--gres", "--nodes", "--ntasks", "--cpus"))}


def test_the_slurm_plugin_turns_them_into_the_intended_sbatch_flags():
    assert _flags(_sbatch(compute_section(threads=2))) == {"--cpus-per-task=2", "--gpus=1"}
    assert _flags(_sbatch(compute_section(threads=2, gpus_per_job=2))) == {
        "--gpus=2", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=2"}
    assert _flags(_sbatch(compute_section(threads=4, gpus_per_job=8, nodes_per_job=2))) == {
        "--gres=gpu:8", "--nodes=2", "--ntasks-per-node=8", "--cpus-per-task=4"}
    # one GPU on each of two nodes: the plugin refuses tasks_per_node=1, so it is two tasks, one per GPU
    assert _flags(_sbatch(compute_section(threads=3, nodes_per_job=2))) == {
        "--gres=gpu:1", "--nodes=2", "--ntasks=2", "--ntasks-per-gpu=1", "--cpus-per-task=3"}


def _dry_run_jobs(text: str) -> list[dict]:
    """Each job block of `snakemake -n` output: its rule, threads (1 when not printed) and resources."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        if not (m := re.match(r"(?:local)?rule (\w+):", block)):
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        resources = re.search(r"^\s+resources: (.+)$", block, re.M)
        jobs.append({"rule": m[1], "threads": int(threads[1]) if threads else 1,
                     "resources": dict(kv.split("=", 1) for kv in resources[1].split(", ")) if resources else {}})
    return jobs


@pytest.mark.slow
def test_a_dry_run_with_two_ranks_gives_the_training_jobs_two_gpus_and_both_ranks_threads(tmp_path):
    raw = tiny_raw(**{"compute.gpus_per_job": 2, "compute.threads": 1,
                      "distill.methods": {"kd": {}, "vanilla": {}},  # vanilla: a train_vanilla job too
                      "teacher.imports": {"ref": {"arch": "resnet8", "path": "ref.pt"}}})
    config = tmp_path / "two-ranks.yaml"
    config.write_text(yaml.safe_dump(raw))
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work", config)
    (work / "ref.pt").write_bytes(b"")  # a dry run only checks that the import's source exists
    out = run(["snakemake", "-n", "--cores", "2"], work)
    jobs = _dry_run_jobs(out.stdout + out.stderr)
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert {"train_teacher", "distill", "train_vanilla", "import_teacher_ref"} <= set(by_rule), sorted(by_rule)
    ranks = {"gpu": "2", "mpi": "srun", "tasks_per_node": "2", "cpus_per_task": "1", "nodes": "1"}
    for rule in ("train_teacher", "distill", "train_vanilla"):
        for job in by_rule[rule]:
            assert job["threads"] == 2, job
            assert {k: v for k, v in job["resources"].items() if k != "tmpdir"} == ranks, job
    [imported] = by_rule["import_teacher_ref"]  # an evaluation pass: one device, as before
    assert imported["threads"] == 1
    assert imported["resources"]["gpu"] == "1" and not {"mpi", "tasks_per_node", "nodes"} & set(
        imported["resources"]), imported
    assert all("gpu" not in job["resources"] for rule in ("prepare_data", "aggregate") for job in by_rule[rule])


def test_the_dry_run_parser_reads_a_job_block():
    text = ("rule distill:\n    input: a\n    threads: 4\n    resources: tmpdir=/tmp, gpu=2, mpi=srun\n\n"
            "localrule all:\n    input: b\n")
    assert _dry_run_jobs(text) == [{"rule": "distill", "threads": 4, "resources": {"tmpdir": "/tmp", "gpu": "2",
                                                                                     "mpi": "srun"}},
                                   {"rule": "all", "threads": 1, "resources": {}}]
