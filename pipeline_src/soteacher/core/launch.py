"""Starting the ranks of a multi-rank training job (``compute.gpus_per_job`` × ``compute.nodes_per_job`` > 1).

The rules always run ``python -m soteacher train-teacher|distill --spec ...``. When the spec asks for several ranks
and this process is not one of them yet, the CLI hands the same command line to ``run_ranks``, which starts the
ranks with PyTorch's launchers and waits for them:

* inside a SLURM allocation (``SLURM_JOB_ID`` set and ``srun`` found): ``srun`` with the job's tasks, one per rank,
  ``--kill-on-bad-exit`` so one failed rank ends them all. A one-node job's ranks meet through a file in a fresh
  temporary folder (no listening socket: PyTorch's TCP store would listen on every interface); a multi-node job's
  at the first node of the step (``soteacher.core.ranks``), on a port derived from the SLURM job id.
* elsewhere (a workstation): ``torchrun --standalone`` (``python -m torch.distributed.run``) with one process per
  rank, on 127.0.0.1 and a free port; its agent stops every rank when one fails. On a machine with GPUs this
  process first locks as many free cards as the job has ranks (all or none, ``devices.acquire_gpus``), holds the
  locks while the ranks run, and shows the ranks only those cards (``CUDA_VISIBLE_DEVICES``).

SIGTERM and SIGINT are passed on to the launcher, which passes them on to the ranks (they save their training state
and stop, as a one-process job does).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from soteacher.core.errors import DeviceError
from soteacher.core.ranks import LAUNCHED, RENDEZVOUS, environment
from soteacher.core.settings import Compute

log = logging.getLogger(__name__)


def slurm_port(job_id: str) -> int:
    """The rendezvous port of a SLURM job's ranks: the same on every node, different for jobs sharing a node."""
    return 20000 + int(job_id) % 20000


def in_slurm(env: dict[str, str]) -> bool:
    return bool(env.get("SLURM_JOB_ID")) and shutil.which("srun", path=env.get("PATH")) is not None


def launch_command(argv: list[str], compute: Compute, env: dict[str, str],
                   rendezvous: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The command that starts the ranks of ``python -m soteacher <argv>``, and its environment. ``rendezvous``: the
    file a one-node SLURM job's ranks meet through (a path in a fresh folder)."""
    per_node, nodes = compute.gpus_per_job, compute.nodes_per_job
    env = dict(env)
    job = [sys.executable, "-m", "soteacher", *argv]
    if in_slurm(env):
        env[LAUNCHED] = "srun"
        if nodes == 1:
            if rendezvous is None:
                raise ValueError("a one-node SLURM job needs a rendezvous file")
            env[RENDEZVOUS] = str(rendezvous)
        else:
            env["MASTER_PORT"] = str(slurm_port(env["SLURM_JOB_ID"]))
            env.pop("MASTER_ADDR", None)  # each rank takes the step's first node (ranks.start)
        return ["srun", f"--ntasks={per_node * nodes}", f"--nodes={nodes}", f"--ntasks-per-node={per_node}",
                f"--cpus-per-task={compute.threads}", "--kill-on-bad-exit=1", "--export=ALL", *job], env
    if nodes > 1:
        raise DeviceError(f"compute.nodes_per_job is {nodes}: a job on several nodes runs only inside a SLURM "
                          "allocation (the SLURM profile, docs/cluster.md); this process is not in one")
    env[LAUNCHED] = "torchrun"
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={per_node}",
            "--max-restarts=0", "-m", "soteacher", *argv], env


def _lock_cards(compute: Compute, count: int, env: dict[str, str]) -> dict[str, str]:
    """On a machine with GPUs (and compute.device not cpu): lock ``count`` cards and show the ranks only those."""
    if compute.device == "cpu":
        return env
    import torch

    from soteacher.core import devices

    visible = devices.gpu_count() if torch.cuda.is_available() else 0
    if visible == 0:
        if compute.device == "cuda":
            raise DeviceError("compute.device is 'cuda' but no CUDA GPU is visible to this job "
                              "(use 'auto' to fall back to the CPU)")
        return env
    if devices.scheduler_assigned_gpus():
        return env  # SLURM gave this job its cards
    cards = devices.acquire_gpus(count, visible)
    log.info("locked GPU(s) %s for the job's %d ranks", devices.visible_card_ids(cards), count)
    return {**env, "CUDA_VISIBLE_DEVICES": devices.visible_card_ids(cards)}


def run_ranks(argv: list[str], compute: Compute) -> int | None:
    """Run ``python -m soteacher <argv>`` as the job's ranks and return their exit status; None when this process is
    to run the job itself (one rank, or already a rank)."""
    per_node, nodes = compute.gpus_per_job, compute.nodes_per_job
    if per_node * nodes == 1 or environment() is not None:
        return None
    with tempfile.TemporaryDirectory(prefix="soteacher-ranks-") as folder:
        command, env = launch_command(argv, compute, dict(os.environ), Path(folder) / "rendezvous")
        if env[LAUNCHED] == "torchrun":
            env = _lock_cards(compute, per_node, env)
        log.info("starting %d ranks: %s", per_node * nodes, " ".join(command[:8]))
        return _wait(subprocess.Popen(command, env=env))


def _wait(proc: subprocess.Popen) -> int:
    """The ranks' exit status; SIGTERM and SIGINT meanwhile go to their launcher."""

    def forward(signum, _frame) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0:
        log.error("the job's ranks ended with exit status %d", code)
    return code
