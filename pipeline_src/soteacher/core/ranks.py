"""The ranks of one training job (``compute.gpus_per_job`` × ``compute.nodes_per_job`` processes, torch.distributed).

Every rank draws the same global batch from the same seeded generator and trains on its *shard* of it: a contiguous
slice, rank 0 first, sizes differing by at most one (``World.shard``). Concatenating the shards in rank order gives
the global batch back, so ``World.gather`` is an all-gather followed by a concatenation, and whatever is per sample or
global (the consistency buffer, CRD's memory bank, the batch-relational KD losses) can be computed exactly as one
process would. A single process is ``SINGLE``: every method here is then the identity or a no-op.

Ranks are started by ``soteacher.core.launch`` (torchrun on a workstation, srun inside a SLURM allocation); this
module reads what they set: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (torchrun) or ``SLURM_PROCID``/``SLURM_NTASKS``/
``SLURM_LOCALID`` (srun), and ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from soteacher.core.settings import Compute

log = logging.getLogger(__name__)

LAUNCHED = "SOTEACHER_RANKS"  # set by soteacher.core.launch in every rank's environment: who started it
RENDEZVOUS = "SOTEACHER_RENDEZVOUS"  # a one-node SLURM job's rendezvous file (no listening socket)


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    # the global batch of the current step, set by the training loop before each step (shard sizes follow from it)
    batch_size: int = 0
    control: object = field(default=None, repr=False)  # a gloo group: CPU-side flags and objects, never a GPU sync

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard_sizes(self, n: int) -> list[int]:
        base, extra = divmod(n, self.size)
        return [base + (r < extra) for r in range(self.size)]

    def shard(self, n: int) -> slice:
        """This rank's positions in a global batch of ``n``."""
        sizes = self.shard_sizes(n)
        start = sum(sizes[:self.rank])
        return slice(start, start + sizes[self.rank])

    def batch_of(self, local_rows: int) -> int:
        """The global batch size of the current step (``local_rows`` in one process)."""
        return self.batch_size if self.distributed else local_rows

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The global batch of a per-sample tensor (rows = this rank's shard of the current step). The gradient of
        whatever is computed from the result flows back to every rank's own rows (summed over the ranks that used
        them), so a loss computed on the gathered batch on every rank gets the gradient one process would."""
        if not self.distributed:
            return local
        sizes = self.shard_sizes(self.batch_size)
        if local.shape[0] != sizes[self.rank]:
            raise RuntimeError(f"rank {self.rank}: gather of {local.shape[0]} rows, its shard of the batch of "
                               f"{self.batch_size} has {sizes[self.rank]}")
        if local.requires_grad:
            return _GatherRows.apply(local, sizes, self.rank)
        return _all_gather_rows(local.detach(), sizes)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks (in place, returned); identity for one process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, local: torch.Tensor) -> torch.Tensor:
        """The mean of every element of ``local`` over the ranks (no gradient): ``local.mean()`` in one process."""
        if not self.distributed:
            return local.mean()
        total = torch.stack([local.detach().sum().double(), local.new_tensor(local.numel(), dtype=torch.float64)])
        self.sum(total)
        return (total[0] / total[1]).to(local.dtype)

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is True on any rank (a CPU collective: no GPU sync)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def gather_objects(self, obj: object) -> list:
        """``obj`` of every rank, in rank order: what ``torch.save`` writes and ``weights_only`` loading reads
        (tensors, numbers, strings, containers), sent as bytes over the CPU group."""
        if not self.distributed:
            return [obj]
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        out: list = [None] * self.size
        dist.all_gather_object(out, buffer.getvalue(), group=self.control)
        return [torch.load(io.BytesIO(b), weights_only=True) for b in out]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.control)

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]


SINGLE = World()


def _all_gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All-gather of row blocks of (possibly) different lengths: padded to the longest, then trimmed."""
    longest = max(sizes)
    padded = local
    if local.shape[0] < longest:
        padded = torch.cat([local, local.new_zeros((longest - local.shape[0], *local.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _GatherRows(torch.autograd.Function):
    """All-gather forward; backward sums every rank's gradient of the gathered batch and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return _all_gather_rows(local.detach(), sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when this process is a rank that ``launch`` started, else None."""
    launcher = os.environ.get(LAUNCHED)
    if launcher == "torchrun":
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if launcher == "srun":
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]), int(os.environ["SLURM_LOCALID"])
    return None


def _first_node_of_step() -> str:
    """The first host of this SLURM step (where rank 0 runs): the rendezvous address of a multi-node job."""
    import subprocess

    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ["SLURM_JOB_NODELIST"]
    out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def start(compute: Compute, device: torch.device) -> World:
    """Join the job's process group (NCCL on CUDA, gloo on CPU) when this process is one of several ranks; SINGLE
    otherwise. Refuses a rank count other than the spec's: a spec of N ranks must run as N ranks."""
    per_node, nodes = compute.gpus_per_job, compute.nodes_per_job
    found = environment()
    if found is None:
        if per_node * nodes > 1:
            raise RuntimeError(f"this job is configured for {per_node * nodes} ranks (compute.gpus_per_job="
                               f"{per_node}, nodes_per_job={nodes}) but runs as one process: start it with "
                               "`python -m soteacher` (which starts the ranks), not by calling the job directly")
        return SINGLE
    rank, size, local_rank = found
    if size != per_node * nodes:
        raise RuntimeError(f"rank {rank}: {size} ranks were started, the job's spec asks for {per_node * nodes} "
                           f"(compute.gpus_per_job={per_node} x nodes_per_job={nodes})")
    init_method = "env://"
    if os.environ.get(RENDEZVOUS):
        init_method = f"file://{os.environ[RENDEZVOUS]}"
    elif os.environ.get(LAUNCHED) == "srun" and "MASTER_ADDR" not in os.environ:
        os.environ["MASTER_ADDR"] = _first_node_of_step()
    timeout = datetime.timedelta(seconds=compute.collective_timeout_s)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=size, timeout=timeout,
                            device_id=device if device.type == "cuda" else None)
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    log.info("rank %d of %d (local rank %d, %s, collective timeout %s s)", rank, size, local_rank, backend,
             int(timeout.total_seconds()))
    return World(rank=rank, size=size, local_rank=local_rank, control=control)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()



@contextlib.contextmanager
def job_ranks(compute: Compute) -> Iterator[tuple[torch.device, World]]:
    """A training job's device and ranks (``devices.setup``, then ``start``); the process group ends with the job."""
    from soteacher.core import devices

    found = environment()
    device = devices.setup(compute, None if found is None else found[2])
    world = start(compute, device)
    if not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # the job's log shows rank 0's progress once, every rank's errors
    try:
        yield device, world
    finally:
        stop(world)
