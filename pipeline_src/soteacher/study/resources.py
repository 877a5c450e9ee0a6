"""What a training job (teacher, distill, vanilla student) asks Snakemake and SLURM for: its threads and resources,
from the config's ``compute`` section. The rules read these; nothing here imports torch.

One rank (the default) is a job exactly as before: ``gpu=1``, which Snakemake counts against ``--resources gpu=M``
on a workstation and snakemake-executor-plugin-slurm turns into ``sbatch --gpus=1``.

N ranks on one node (``compute.gpus_per_job: N``) declare ``gpu=N`` (N of the workstation's cards, or
``sbatch --gpus=N``) and, for the SLURM plugin, an MPI-style job: ``mpi`` makes the plugin's job step run the rule's
shell in the batch step itself instead of inside ``srun -n1``, so the relauncher (soteacher.core.launch) can start
the N ranks with its own ``srun``; ``tasks_per_node`` becomes ``--ntasks-per-node`` and ``cpus_per_task`` becomes
``--cpus-per-task`` (without it the plugin would give every task the job's threads, N × compute.threads).

On more than one node (``compute.nodes_per_job``) the GPUs are asked per node with ``gres="gpu:N"``
(``--gres=gpu:N``, SLURM's per-node count); ``gpu`` is left out there because the plugin turns it into a total
``--gpus``. ``nodes`` becomes ``--nodes``. Such jobs run under SLURM only.
"""

from __future__ import annotations

MPI_LAUNCHER = "srun"  # the value of the `mpi` resource: the plugin only checks that the key is there


def job_threads(compute: dict) -> int:
    """CPU threads one training job uses on its node: ``compute.threads`` per rank, ``gpus_per_job`` ranks per
    node (what Snakemake counts against ``--cores`` on a workstation)."""
    ranks_per_node = compute["gpus_per_job"]
    return compute["threads"] * ranks_per_node


def job_resources(compute: dict) -> dict[str, int | str]:
    """A training rule's ``resources``, by its ranks per node and nodes (see the module docstring)."""
    ranks_per_node, nodes = compute["gpus_per_job"], compute["nodes_per_job"]
    if ranks_per_node == 1 and nodes == 1:
        return {"gpu": 1}
    # the plugin rejects tasks_per_node=1 for an MPI job, and turns `tasks` of a GPU job into --ntasks-per-gpu unless
    # tasks_per_gpu is given: one GPU on each of several nodes is therefore `nodes` tasks, one per GPU
    tasks = {"tasks_per_node": ranks_per_node} if ranks_per_node > 1 else {"tasks": nodes, "tasks_per_gpu": 1}
    ranks = {"mpi": MPI_LAUNCHER, **tasks, "cpus_per_task": compute["threads"], "nodes": nodes}
    if nodes == 1:
        return {"gpu": ranks_per_node, **ranks}
    return {"gres": f"gpu:{ranks_per_node}", **ranks}
