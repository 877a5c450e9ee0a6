"""Device choice: a GPU when there is one (one job per card, never two), otherwise the CPU.

Snakemake limits how many GPU jobs run at once (``resources: gpu=N`` per job and ``--resources gpu=M``)
but does not say *which* GPUs a job gets. Each job therefore takes an exclusive ``flock`` on a per-GPU
lock file and keeps it for its lifetime; the kernel releases it when the process dies, so a crashed
job never leaves a card reserved. A job with N ranks locks its N cards all or nothing (``acquire_gpus``): a job
that gets only some of them gives them back and waits, so two jobs each holding part of what they need can never
block each other. Under SLURM with ``--gpus``/``--gres`` the scheduler has already given the job its own cards
(its device 0 is a different physical card in every job), so no lock is taken there.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import time
from pathlib import Path
from typing import IO

import torch

from soteacher.core.errors import DeviceError
from soteacher.core.settings import Compute

log = logging.getLogger(__name__)

_held_locks: list[IO] = []  # keep lock files open for the life of the process


def lock_dir() -> Path:
    return Path(os.environ.get("SOTEACHER_GPU_LOCK_DIR", f"/tmp/soteacher-gpu-locks-{os.getuid()}"))


def gpu_count() -> int:
    """Number of GPUs; ``SOTEACHER_NUM_GPUS`` overrides detection (used to test the assignment)."""
    override = os.environ.get("SOTEACHER_NUM_GPUS")
    return int(override) if override is not None else torch.cuda.device_count()


def card_names(num_gpus: int) -> list[str]:
    """A name per visible GPU that is the same in every job on this machine: its CUDA_VISIBLE_DEVICES entry
    (the physical index or UUID) when that is set, else its index. Lock files are named by it, so a study
    on ``CUDA_VISIBLE_DEVICES=2,3`` and one on all cards contend for card 2 and 3, not for "device 0"."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(visible) < num_gpus:
        return [str(i) for i in range(num_gpus)]
    return ["".join(c if c.isalnum() or c in "-_" else "_" for c in v) for v in visible[:num_gpus]]


def _try_lock(path: Path) -> IO | None:
    """The open, exclusively locked lock file at ``path``, or None when another process holds it."""
    # "a", not "w": opening must not truncate the holder's PID before we own the lock
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def acquire_gpus(count: int, num_gpus: int, poll_seconds: float = 2.0, timeout: float | None = None) -> list[int]:
    """Lock ``count`` free GPUs, all or none, and return their indices among the ``num_gpus`` visible ones,
    waiting while fewer than ``count`` are free. A round that gets only some releases them before it waits:
    holding part while waiting for the rest is what would deadlock two jobs."""
    if count < 1:
        raise DeviceError(f"a job needs at least one GPU, not {count}")
    if count > num_gpus:
        raise DeviceError(f"this job asks for {count} GPUs (compute.gpus_per_job) but only {num_gpus} "
                          f"{'is' if num_gpus == 1 else 'are'} visible on this machine: it could never start")
    directory = lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    names = card_names(num_gpus)
    start = time.monotonic()
    while True:
        taken: list[tuple[int, IO]] = []
        for index, name in enumerate(names):
            handle = _try_lock(directory / f"gpu{name}.lock")
            if handle is not None:
                taken.append((index, handle))
                if len(taken) == count:
                    _held_locks.extend(handle for _, handle in taken)
                    return [index for index, _ in taken]
        for _, handle in taken:  # closing the file drops its flock
            handle.close()
        if timeout is not None and time.monotonic() - start > timeout:
            wanted = "free GPU" if count == 1 else f"{count} free GPUs"
            raise TimeoutError(f"no {wanted} among {num_gpus} after {timeout:.0f} s (locks in {directory})")
        # jittered: jobs that started together would otherwise retry in lockstep and keep splitting the cards
        time.sleep(poll_seconds * random.uniform(0.5, 1.5))


def acquire_gpu(num_gpus: int, poll_seconds: float = 2.0, timeout: float | None = None) -> int:
    """Lock a free GPU and return its index among the visible ones, waiting while all are taken."""
    return acquire_gpus(1, num_gpus, poll_seconds, timeout)[0]


def visible_card_ids(indices: list[int]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value that shows a child process exactly the visible cards ``indices``: their
    entries of this process's CUDA_VISIBLE_DEVICES when that is set, else the indices themselves."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and max(indices) >= len(visible):
        raise DeviceError(f"GPU index {max(indices)} is not among the {len(visible)} cards in "
                          f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
    return ",".join(visible[i] if visible else str(i) for i in indices)


def scheduler_assigned_gpus() -> bool:
    """True inside a SLURM job or step that was allocated GPUs: they are this job's alone."""
    return bool(os.environ.get("SLURM_STEP_GPUS") or os.environ.get("SLURM_JOB_GPUS"))


def select_device(preference: str, local_rank: int | None = None) -> torch.device:
    """``local_rank``: this process is that rank (on its node) of a multi-rank job, whose launcher locked (or whose
    SLURM allocation holds) a card per rank: it takes visible card ``local_rank`` without a lock."""
    if preference == "cpu":
        log.info("device: CPU (compute.device=cpu)")
        return torch.device("cpu")
    n = gpu_count() if torch.cuda.is_available() else 0
    if n == 0:
        if preference == "cuda":
            raise DeviceError("compute.device is 'cuda' but no CUDA GPU is visible to this job "
                              "(use 'auto' to fall back to the CPU)")
        log.info("device: CPU (no GPU found)")
        return torch.device("cpu")
    if local_rank is not None:
        if local_rank >= n:
            raise DeviceError(f"local rank {local_rank} of a multi-rank job has no GPU of its own: {n} visible "
                              "(compute.gpus_per_job is more than the cards this node shows the job)")
        index = local_rank
    else:
        # lock even a single card: without --resources gpu=1 two jobs would otherwise share it
        index = 0 if scheduler_assigned_gpus() else acquire_gpu(n)
    torch.cuda.set_device(index)
    log.info("device: cuda:%d (%s) of %d visible GPU(s)", index, torch.cuda.get_device_name(index), n)
    return torch.device("cuda", index)


def use_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of ``torch._inductor``
    (1.6 s of every job's start-up); ``prepare_model`` sets inductor's own flag when a model is compiled."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:  # the private hook moved: take the slow public call
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


def setup(compute: Compute, local_rank: int | None = None) -> torch.device:
    """Threads, determinism and device for one job (or one rank of it), from the config's ``compute`` section."""
    torch.set_num_threads(compute.threads)
    if compute.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        use_deterministic_algorithms()
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = compute.cudnn_benchmark
    return select_device(compute.device, local_rank)
